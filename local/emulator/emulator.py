"""The facade: :class:`CallAutomationEmulator` starts the server and the callback thread, runs each request
through routing, authentication, fault injection and repeatability to the call operations, and records it.

A request that passes authentication is recorded as a :class:`RecordedAction` (injected faults included;
replays of a Repeatability-Request-ID are not recorded again, only listed in
:attr:`CallAutomationEmulator.replayed`).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from local.emulator import repeatability
from local.emulator.auth import DeniedRequest, authenticate
from local.emulator.callbacks import (
    JWKS_PATH,
    OPENID_CONFIG_PATH,
    CallbackDelivery,
    Callbacks,
    openid_document,
)
from local.emulator.calls import ALREADY_HANDLED_STATUS, ALREADY_HANDLED_SUB_CODE, Calls
from local.emulator.faults import Faults
from local.emulator.model import RequestError, Response, phone_of, raw_id
from local.emulator.server import Server, route

_T = TypeVar("_T")


@dataclass(frozen=True)
class RecordedAction:
    """One Call Automation request that passed authentication (injected faults included)."""

    operation: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int
    request_id: str | None
    call_connection_id: str | None
    at: float
    method: str = "POST"
    #: True when the response came from :meth:`CallAutomationEmulator.inject` rather than handling.
    fault: bool = False
    #: The JSON the emulator answered with (None for an empty body).
    response: Any = None

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status < 300


class CallAutomationEmulator:
    """In-process Call Automation emulator bound to 127.0.0.1 on an ephemeral port.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.

    :param access_key: base64 access key for HMAC (random 32 bytes when omitted).
    :param resource_id: immutable ACS resource id (GUID), the ``aud`` of callback JWTs (random when
        omitted).
    :param bearer_token: when set, ``Authorization: Bearer <bearer_token>`` is accepted too (stands in
        for an Entra token).
    :param callback_timeout: connect/read timeout of one callback POST, seconds.
    :param require_https_callbacks: refuse http callback URIs on non-loopback hosts with 400
        ("The field CallbackUri is invalid."), as Azure does; loopback http is allowed so local
        receivers work.
    :param context_lifetime: seconds after which contexts issued by :meth:`incoming_call` expire (a
        call rings 30 s in Azure); None means never.
    :param send_participants_updated: also POST a ParticipantsUpdated callback after CallConnected.
    :param disconnect_after_transfer: after CallTransferAccepted, POST CallDisconnected to the call's
        callback URI and drop the connection (the app's leg leaves the call).
    :param max_clock_skew: requests whose ``x-ms-date`` is further than this from now are denied.
    """

    def __init__(
        self,
        *,
        access_key: str | None = None,
        resource_id: str | None = None,
        bearer_token: str | None = None,
        callback_timeout: float = 2.0,
        require_https_callbacks: bool = True,
        context_lifetime: float | None = None,
        send_participants_updated: bool = False,
        disconnect_after_transfer: bool = False,
        already_handled: tuple[int, int] = (ALREADY_HANDLED_STATUS, ALREADY_HANDLED_SUB_CODE),
        max_clock_skew: float = 900.0,
        verbose: bool = False,
    ) -> None:
        self.access_key = access_key or base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        try:
            base64.b64decode(self.access_key, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("access_key must be base64") from exc
        self.resource_id = str(uuid.UUID(resource_id)) if resource_id else str(uuid.uuid4())
        self.bearer_token = bearer_token
        self.callback_timeout = float(callback_timeout)
        self.require_https_callbacks = require_https_callbacks
        self.context_lifetime = context_lifetime
        self.send_participants_updated = send_participants_updated
        self.disconnect_after_transfer = disconnect_after_transfer
        #: (status, sub-code) of the answer to a second action on one incoming call (calls.py: unverified).
        self.already_handled = already_handled
        self.max_clock_skew = float(max_clock_skew)
        self.verbose = verbose
        #: Callback types (e.g. ``{"CallConnected"}``) the emulator loses instead of sending, as a
        #: failed delivery would: recorded in :attr:`callbacks_recorded` with error "lost (emulator)".
        self.lost_callbacks: set[str] = set()

        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._execute_lock = threading.Lock()
        self._stopping = threading.Event()
        self._actions: list[RecordedAction] = []
        self._denied: list[DeniedRequest] = []
        self._replayed: list[str] = []
        self._callbacks = Callbacks(self, self._changed, self._stopping)
        self._signing_key = self._callbacks.signing_key  # tests sign tokens of their own with the real key
        self.key_id = self._callbacks.key_id
        self._faults = Faults(self._lock)
        self._repeatability = repeatability.Repeatability(self._lock)
        self._calls = Calls(self, self._lock, self._callbacks)

        self._server: Server | None = None
        self._server_thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> CallAutomationEmulator:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = Server(self._handle, self._stopping, lambda: self.verbose)
        self._server_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="call-automation-emulator",
            daemon=True,
        )
        self._server_thread.start()
        self._callbacks.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving and delivering, bounded by about ``timeout`` seconds. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        deadline = time.monotonic() + timeout
        if self._server_thread is not None:
            self._server_thread.join(max(0.0, deadline - time.monotonic()))
        self._server_thread = None
        self._callbacks.stop(deadline)
        with self._changed:
            self._changed.notify_all()

    def __enter__(self) -> CallAutomationEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running: call start() or use it as a context manager")
        return self._server.server_port

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openid_config_url(self) -> str:
        return self.endpoint + OPENID_CONFIG_PATH

    @property
    def jwks_url(self) -> str:
        return self.endpoint + JWKS_PATH

    # ---------------------------------------------------------------- records

    @property
    def actions(self) -> list[RecordedAction]:
        """Snapshot of every authenticated Call Automation request, in arrival order."""
        with self._lock:
            return list(self._actions)

    @property
    def denied(self) -> list[DeniedRequest]:
        """Snapshot of requests refused with 401."""
        with self._lock:
            return list(self._denied)

    @property
    def replayed(self) -> list[str]:
        """Repeatability-Request-IDs answered from the stored response (not executed again)."""
        with self._lock:
            return list(self._replayed)

    @property
    def callbacks_sent(self) -> list[CallbackDelivery]:
        """Snapshot of callbacks POSTed to loopback receivers (status or error recorded)."""
        with self._lock:
            return list(self._callbacks.sent)

    @property
    def callbacks_recorded(self) -> list[CallbackDelivery]:
        """Snapshot of callbacks for non-loopback hosts: recorded, never sent."""
        with self._lock:
            return list(self._callbacks.recorded)

    def executed(self, operation: str | None = None) -> list[RecordedAction]:
        """Actions that succeeded (2xx), optionally of one operation."""
        with self._lock:
            return [a for a in self._actions if a.succeeded and (operation is None or a.operation == operation)]

    def wait_for(self, predicate: Callable[[RecordedAction], bool], timeout: float = 5.0) -> RecordedAction:
        """The first recorded action matching ``predicate``, waiting up to ``timeout`` seconds.

        Raises TimeoutError when none arrives in time.
        """
        return self._wait(lambda: self._actions, predicate, timeout, "action")

    def wait_for_callback(
        self, predicate: Callable[[CallbackDelivery], bool] | None = None, timeout: float = 5.0
    ) -> CallbackDelivery:
        """The first callback (sent or recorded) matching ``predicate``, waiting up to ``timeout``."""
        return self._wait(
            lambda: self._callbacks.sent + self._callbacks.recorded,
            predicate or (lambda _c: True),
            timeout,
            "callback",
        )

    def _wait(self, source: Callable[[], list[_T]], predicate: Callable[[_T], bool], timeout: float, what: str) -> _T:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._changed:
            while True:
                for item in source():
                    if predicate(item):
                        return item
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching {what} within {timeout} s")
                self._changed.wait(min(remaining, 0.25))

    # ---------------------------------------------------------------- test controls

    def inject(
        self,
        operation: str,
        status: int | None = None,
        retry_after: float | None = None,
        delay: float = 0.0,
        times: int = 1,
        body: Any = None,
        target: str | None = None,
    ) -> None:
        """Make the next ``times`` requests of ``operation`` (or ``"*"``) fail or stall.

        ``status``: answer with it (body ``body`` or an ACS-shaped error; a ``Retry-After`` header when
        ``retry_after`` is given). ``delay``: sleep that long first; with ``status=None`` the request is
        then handled normally. ``target``: only transfers to this participant (``+1...`` or a raw id).
        Faulted requests are recorded with their status and never executed.
        """
        self._faults.add(operation, status, retry_after, delay, times, body, target)

    def fail_transfer_to(
        self,
        target: str,
        *,
        code: int = 500,
        sub_code: int = 9999,
        message: str = "Transfer to the target failed. (emulated)",
    ) -> None:
        """Transfers to ``target`` (a raw id like ``4:+1800...``/``8:acs:...`` or a phone number) are
        accepted with 202 and then produce ``CallTransferFailed`` with this resultInformation."""
        self._calls.fail_transfer_to(target, code, sub_code, message)

    def expire_context(self, incoming_call_context: str) -> None:
        """Later requests with this incomingCallContext get 400 IDX23010 (the ring is over)."""
        self._calls.expire_context(incoming_call_context)

    def clear(self, *, state: bool = False) -> None:
        """Forget recorded actions, callbacks, denials, replays, faults and failing transfer targets.

        With ``state=True`` also forget calls, handled/expired contexts and stored repeatable responses.
        """
        with self._lock:
            self._actions.clear()
            self._denied.clear()
            self._replayed.clear()
            self._callbacks.clear()
            self._faults.clear()
            self._calls.clear(state=state)
            self.lost_callbacks = set()
            if state:
                self._repeatability.clear()

    def incoming_call(
        self,
        *,
        caller: str | Mapping[str, Any] = "+14255550123",
        callee: str | Mapping[str, Any] = "+18005550100",
        caller_display_name: str = "",
        sip_headers: Mapping[str, str] | None = None,
        voip_headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> dict[str, Any]:
        """A ``Microsoft.Communication.IncomingCall`` event (Event Grid schema) whose
        incomingCallContext this emulator knows: answering it returns these parties and ids."""
        return self._calls.incoming_call(caller, callee, caller_display_name, sip_headers, voip_headers, correlation_id)

    def callback_token(self, now: float | None = None) -> str:
        """A callback JWT exactly as attached to every callback."""
        return self._callbacks.token(now)

    def openid_configuration(self) -> dict[str, Any]:
        return openid_document(self.jwks_url)

    def jwks(self) -> dict[str, Any]:
        return self._callbacks.jwks()

    # ---------------------------------------------------------------- request handling

    def _handle(
        self, method: str, target: str, headers: Message[str, str], body: bytes
    ) -> tuple[Response, list[Callable[[], None]]]:
        split = urlsplit(target)
        path = split.path
        query = parse_qs(split.query, keep_blank_values=True)

        if method == "GET" and path == OPENID_CONFIG_PATH:
            return Response(200, self.openid_configuration()), []
        if method == "GET" and path == JWKS_PATH:
            return Response(200, self.jwks()), []

        operation_route = route(method, path)
        if operation_route is None:
            message = f"No HTTP resource was found that matches the request URI '{self._safe_endpoint()}{target}'."
            return RequestError(404, message, "NotFound").response(), []
        operation, call_connection_id = operation_route

        denial = authenticate(
            method,
            target,
            headers,
            body,
            access_key=self.access_key,
            bearer_token=self.bearer_token,
            max_clock_skew=self.max_clock_skew,
        )
        if denial is not None:
            with self._changed:
                self._denied.append(DeniedRequest(method, path, denial, time.monotonic()))
                self._changed.notify_all()
            return RequestError(401, f"Denied: {denial} (emulated)", "Denied").response(), []

        try:
            parsed: Any = json.loads(body) if body else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            parsed = body.decode("utf-8", "replace")
        request_id = headers.get("Repeatability-Request-ID")
        header_dict = {k: v for k, v in headers.items()}

        def record(response: Response, connection_id: str | None, fault: bool) -> None:
            with self._changed:
                self._actions.append(
                    RecordedAction(
                        operation=operation,
                        path=path,
                        query=query,
                        headers=header_dict,
                        body=parsed,
                        status=response.status,
                        request_id=request_id,
                        call_connection_id=connection_id,
                        at=time.monotonic(),
                        method=method,
                        fault=fault,
                        response=response.body,
                    )
                )
                self._changed.notify_all()

        participant = parsed.get("targetParticipant") if isinstance(parsed, dict) else None
        fault = self._faults.take(operation, _participant(participant))
        if fault is not None:
            if fault.delay > 0:
                self._stopping.wait(fault.delay)
            if fault.status is not None:
                response = fault.response()
                record(response, call_connection_id, True)
                return response, []

        fingerprint = repeatability.fingerprint(method, path, body)
        with self._execute_lock:
            if request_id and (replay := self._repeatability.replay(request_id, fingerprint)) is not None:
                with self._changed:
                    self._replayed.append(request_id)
                    self._changed.notify_all()
                return replay, []
            after: list[Callable[[], None]] = []
            connection_id = call_connection_id
            try:
                response, connection_id = self._calls.execute(operation, call_connection_id, parsed, query, after)
            except RequestError as err:
                response = err.response()
            if request_id:
                self._repeatability.remember(request_id, fingerprint, response)
            record(response, connection_id, False)
        return response, after

    def _safe_endpoint(self) -> str:
        server = self._server
        return f"http://127.0.0.1:{server.server_port}" if server is not None else ""


def _participant(model: Any) -> str | None:
    """A transfer's target as ``inject(target=...)`` names it: the phone number, else the raw id."""
    if not isinstance(model, dict):
        return None
    return phone_of(model) or raw_id(model) or None
