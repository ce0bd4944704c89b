"""Call state and the Call Automation operations on it (wire format recorded from SDK 1.6.0).

* ``POST /calling/callConnections:answer`` -> 200 ``CallConnectionProperties``, then a ``CallConnected``
  callback (and ``ParticipantsUpdated`` when asked); ``:redirect`` and ``:reject`` -> 204.
* ``POST /calling/callConnections/{id}:transferToParticipant`` -> 202, then ``CallTransferAccepted`` (or
  ``CallTransferFailed`` for a target given to :meth:`CallAutomationEmulator.fail_transfer_to`); after an
  accepted transfer also ``CallDisconnected`` when the emulator was told to disconnect after transfers.
* ``CallConnectionClient.hang_up(is_for_everyone=False)`` sends ``DELETE /calling/callConnections/{id}``
  (no body, no repeatability headers); ``hang_up(is_for_everyone=True)`` sends
  ``POST /calling/callConnections/{id}:terminate`` (empty body, with repeatability headers). Both -> 204,
  then ``CallDisconnected``; the connection is gone afterwards (404).
* ``GET /calling/callConnections/{id}`` -> 200 with the connection's properties.
* An incomingCallContext is answered, redirected or rejected once: a second action gets
  :data:`ALREADY_HANDLED_STATUS` with :data:`ALREADY_HANDLED_MARKER`; an expired one (see
  :meth:`CallAutomationEmulator.expire_context`) gets 400 IDX23010. A context the emulator did not issue can
  be answered too, with made-up parties.
* Callback URIs must be http(s); plain http on a non-loopback host is refused, as Azure does, unless the
  emulator was told otherwise.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from local.emulator.callbacks import (
    Callbacks,
    call_event,
    disconnected_event,
    is_loopback_url,
    participants_event,
)
from local.emulator.model import (
    Call,
    IncomingCall,
    RequestError,
    Response,
    b64url,
    identifier_model,
    phone_of,
    raw_id,
)

#: What ACS answers for a stale incomingCallContext (the ring is over), byte for byte the message the
#: wire capture shows the SDK rendering; the app recognises ``IDX23010``.
EXPIRED_CONTEXT_STATUS = 400
EXPIRED_CONTEXT_MESSAGE = "IDX23010: Lifetime validation of the signed http request failed. (emulated)"

#: Answer/redirect/reject of an incomingCallContext that an earlier, different request already
#: answered, redirected or rejected.
#: ASSUMPTION (unverified against the live service): no public source (Azure docs, the troubleshooting
#: code tables in MicrosoftDocs/azure-docs ``.../includes/codes/call-automation-sdk.md``, SDK issues)
#: states what ACS returns for this case. Candidate shapes seen in SDK sources and docs (handbook
#: acs.md): 400/8523 (invalid argument), 404/8522 (not found), 409/8519 (conflict), 400/8501 (call not
#: established), 400/8528 (call terminated). The emulator answers one of them, 400/8523 unless told
#: otherwise (``CallAutomationEmulator(already_handled=(status, sub_code))``), with the sub-code as the
#: error's ``code``; the app classifies by status and sub-code, never by the message.
ALREADY_HANDLED_SHAPES: tuple[tuple[int, int], ...] = ((400, 8523), (404, 8522), (409, 8519), (400, 8501), (400, 8528))
ALREADY_HANDLED_STATUS, ALREADY_HANDLED_SUB_CODE = ALREADY_HANDLED_SHAPES[0]
ALREADY_HANDLED_MARKER = "Incoming call already handled"

#: ``version`` in callback data when the request carried no api-version.
DEFAULT_EVENT_VERSION = "2024-09-01-preview"

_REJECT_REASONS = ("none", "busy", "forbidden")


class CallSettings(Protocol):
    """The emulator settings the operations read, at the time they run."""

    @property
    def resource_id(self) -> str: ...

    @property
    def require_https_callbacks(self) -> bool: ...

    @property
    def context_lifetime(self) -> float | None: ...

    @property
    def send_participants_updated(self) -> bool: ...

    @property
    def disconnect_after_transfer(self) -> bool: ...

    @property
    def already_handled(self) -> tuple[int, int]: ...


class Calls:
    """Incoming calls, call connections and handled/expired contexts, guarded by the emulator's lock.

    :meth:`execute` runs one operation; what it appends to ``after`` (callbacks) runs once the response
    has been sent.
    """

    def __init__(self, settings: CallSettings, lock: threading.RLock, callbacks: Callbacks) -> None:
        self._settings = settings
        self._lock = lock
        self._callbacks = callbacks
        self._failing_transfers: dict[str, tuple[int, int, str]] = {}
        self._handled_contexts: dict[str, str] = {}
        self._expired_contexts: set[str] = set()
        self._incoming: dict[str, IncomingCall] = {}
        self._calls: dict[str, Call] = {}

    # ---------------------------------------------------------------- test controls

    def fail_transfer_to(self, target: str, code: int, sub_code: int, message: str) -> None:
        key = raw_id(identifier_model(target))
        with self._lock:
            self._failing_transfers[key] = (code, sub_code, message)

    def expire_context(self, incoming_call_context: str) -> None:
        with self._lock:
            self._expired_contexts.add(incoming_call_context)

    def clear(self, *, state: bool) -> None:
        """Forget failing transfer targets; with ``state`` also calls and handled/expired contexts."""
        with self._lock:
            self._failing_transfers.clear()
            if state:
                self._handled_contexts.clear()
                self._expired_contexts.clear()
                self._incoming.clear()
                self._calls.clear()

    def incoming_call(
        self,
        caller: str | Mapping[str, Any],
        callee: str | Mapping[str, Any],
        caller_display_name: str,
        sip_headers: Mapping[str, str] | None,
        voip_headers: Mapping[str, str] | None,
        correlation_id: str | None,
    ) -> dict[str, Any]:
        """See :meth:`CallAutomationEmulator.incoming_call`."""
        source = identifier_model(caller)
        target = identifier_model(callee)
        server_call_id = base64.b64encode(f"https://localhost/conv/{uuid.uuid4()}?i=emulated".encode("ascii")).decode(
            "ascii"
        )
        correlation = correlation_id or str(uuid.uuid4())
        header = b64url(b'{"alg":"none","typ":"JWT"}')
        payload = b64url(json.dumps({"cc": b64url(secrets.token_bytes(48))}).encode("ascii"))
        context = f"{header}.{payload}."
        lifetime = self._settings.context_lifetime
        expires_at = time.monotonic() + lifetime if lifetime is not None else None
        with self._lock:
            self._incoming[context] = IncomingCall(
                source, target, server_call_id, correlation, caller_display_name, expires_at
            )
        data: dict[str, Any] = {
            "to": target,
            "from": source,
            "serverCallId": server_call_id,
            "callerDisplayName": caller_display_name,
            "incomingCallContext": context,
            "correlationId": correlation,
        }
        if sip_headers or voip_headers:
            custom: dict[str, Any] = {}
            if sip_headers:
                custom["sipHeaders"] = dict(sip_headers)
            if voip_headers:
                custom["voipHeaders"] = dict(voip_headers)
            data["customContext"] = custom
        return {
            "id": str(uuid.uuid4()),
            "topic": f"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/emulated/providers/"
            f"Microsoft.Communication/communicationServices/{self._settings.resource_id}",
            "subject": f"/caller/{source['rawId']}/recipient/{target['rawId']}",
            "data": data,
            "eventType": "Microsoft.Communication.IncomingCall",
            "dataVersion": "1.0",
            "metadataVersion": "1",
            "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }

    # ---------------------------------------------------------------- operations

    def execute(
        self,
        operation: str,
        call_connection_id: str | None,
        body: Any,
        query: Mapping[str, list[str]],
        after: list[Callable[[], None]],
    ) -> tuple[Response, str | None]:
        """The response to ``operation`` and the call connection id it concerns; raises RequestError."""
        api_version = (query.get("api-version") or [DEFAULT_EVENT_VERSION])[-1]
        if operation in ("answer", "redirect", "reject"):
            if not isinstance(body, dict):
                raise RequestError(400, "The request body must be a JSON object.")
            context = body.get("incomingCallContext")
            if not isinstance(context, str) or not context:
                raise RequestError(400, "The IncomingCallContext field is required.")
            self._check_context(context, operation)
            if operation == "answer":
                return self._answer(context, body, api_version, after)
            if operation == "redirect":
                target = body.get("target")
                if not isinstance(target, dict) or not raw_id(target):
                    raise RequestError(400, "The Target field is required.")
                self._mark_handled(context, "redirected")
                return Response(204), None
            reason = body.get("callRejectReason", "none")
            if not isinstance(reason, str) or reason.lower() not in _REJECT_REASONS:
                raise RequestError(400, f"The CallRejectReason {reason!r} is invalid.")
            self._mark_handled(context, "rejected")
            return Response(204), None

        assert call_connection_id is not None
        with self._lock:
            call = self._calls.get(call_connection_id)
        if call is None or call.state == "disconnected":
            raise RequestError(
                404,
                f"Call connection {call_connection_id} was not found. (emulated, subCode 8522)",
                "NotFound",
            )
        if operation == "get":
            return Response(200, self._properties(call)), call_connection_id
        if operation == "hangup":
            call.state = "disconnected"
            after.append(
                lambda: self._callbacks.enqueue(call.callback_uri, [disconnected_event(call, call.operation_context)])
            )
            return Response(204), call_connection_id
        if operation == "transfer":
            return self._transfer(call, body, after), call_connection_id
        raise RequestError(404, f"Unsupported operation {operation}.", "NotFound")

    def _check_context(self, context: str, operation: str) -> None:
        with self._lock:
            incoming = self._incoming.get(context)
            expired = context in self._expired_contexts or (
                incoming is not None and incoming.expires_at is not None and time.monotonic() > incoming.expires_at
            )
            handled = self._handled_contexts.get(context)
        if expired:
            # No "code" member: byte for byte what the wire capture recorded.
            raise RequestError(EXPIRED_CONTEXT_STATUS, EXPIRED_CONTEXT_MESSAGE)
        if handled is not None:
            status, sub_code = self._settings.already_handled
            raise RequestError(
                status,
                f"{ALREADY_HANDLED_MARKER}: the call was already {handled}, cannot {operation}. (emulated)",
                str(sub_code),
            )

    def _mark_handled(self, context: str, how: str) -> None:
        with self._lock:
            self._handled_contexts[context] = how

    def _check_callback_uri(self, name: str, uri: Any, required: bool) -> str | None:
        if uri is None and not required:
            return None
        if not isinstance(uri, str) or not uri:
            raise RequestError(400, f"The field {name} is required.")
        try:
            parts = urlsplit(uri)
            host = parts.hostname
        except ValueError:
            host = None
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not host:
            raise RequestError(400, f"The field {name} is invalid.")
        if parts.scheme == "http" and self._settings.require_https_callbacks and not is_loopback_url(uri):
            raise RequestError(
                400,
                f"The field {name} is invalid. Call Automation doesn't support HTTP endpoints. (emulated)",
            )
        return uri

    def _answer(
        self, context: str, body: dict[str, Any], api_version: str, after: list[Callable[[], None]]
    ) -> tuple[Response, str]:
        callback_uri = self._check_callback_uri("CallbackUri", body.get("callbackUri"), required=True)
        assert callback_uri is not None
        with self._lock:
            incoming = self._incoming.get(context)
        if incoming is None:
            incoming = IncomingCall(
                source=identifier_model("+14255550123"),
                target=identifier_model("+18005550100"),
                server_call_id=base64.b64encode(b"https://localhost/conv/servercallid").decode("ascii"),
                correlation_id=str(uuid.uuid4()),
                display_name="",
            )
        call = Call(
            call_connection_id=str(uuid.uuid4()),
            server_call_id=incoming.server_call_id,
            correlation_id=incoming.correlation_id,
            callback_uri=callback_uri,
            source=incoming.source,
            target=incoming.target,
            answered_by={"id": f"8:acs:{self._settings.resource_id}_{uuid.uuid4()}"},
            api_version=api_version,
            source_display_name=incoming.display_name or None,
        )
        with self._lock:
            self._calls[call.call_connection_id] = call
            self._handled_contexts[context] = "answered"
        operation_context = body.get("operationContext")
        call.operation_context = operation_context
        events = [call_event("CallConnected", call, operation_context)]

        def connected() -> None:
            if call.state == "connecting":
                call.state = "connected"
            self._callbacks.enqueue(callback_uri, events)
            if self._settings.send_participants_updated:
                self._callbacks.enqueue(callback_uri, [participants_event(call)])

        after.append(connected)
        return Response(200, self._properties(call)), call.call_connection_id

    def _transfer(self, call: Call, body: Any, after: list[Callable[[], None]]) -> Response:
        if not isinstance(body, dict):
            raise RequestError(400, "The request body must be a JSON object.")
        target = body.get("targetParticipant")
        if not isinstance(target, dict) or not raw_id(target):
            raise RequestError(400, "The TargetParticipant field is required.")
        callback = self._check_callback_uri("OperationCallbackUri", body.get("operationCallbackUri"), required=False)
        url = callback or call.callback_uri
        operation_context = body.get("operationContext")
        target_model = identifier_model(target)
        transferee = identifier_model(body["transferee"]) if isinstance(body.get("transferee"), dict) else call.source
        raw = raw_id(target_model)
        with self._lock:
            failure = self._failing_transfers.get(raw)
            if failure is None and (phone := phone_of(target_model)):
                failure = self._failing_transfers.get(f"4:{phone}")
        extra = {"transferTarget": target_model, "transferee": transferee}
        if failure is None:
            result = {"code": 202, "subCode": 0, "message": "The transfer operation completed successfully."}
            events = [call_event("CallTransferAccepted", call, operation_context, result, extra)]
        else:
            code, sub_code, message = failure
            result = {"code": code, "subCode": sub_code, "message": message}
            events = [call_event("CallTransferFailed", call, operation_context, result, extra)]

        def deliver() -> None:
            self._callbacks.enqueue(url, events)
            if failure is None and self._settings.disconnect_after_transfer:
                call.state = "disconnected"
                self._callbacks.enqueue(call.callback_uri, [disconnected_event(call, call.operation_context)])

        after.append(deliver)
        response_body: dict[str, Any] = {}
        if operation_context is not None:
            response_body["operationContext"] = operation_context
        return Response(202, response_body)

    @staticmethod
    def _properties(call: Call) -> dict[str, Any]:
        props: dict[str, Any] = {
            "callConnectionId": call.call_connection_id,
            "serverCallId": call.server_call_id,
            "targets": [call.target],
            "callConnectionState": call.state,
            "callbackUri": call.callback_uri,
            "source": call.source,
            "correlationId": call.correlation_id,
            "answeredBy": call.answered_by,
        }
        if (phone := phone_of(call.source)) is not None:
            props["sourceCallerIdNumber"] = {"value": phone}
        if call.source_display_name:
            props["sourceDisplayName"] = call.source_display_name
        return props
