"""A local Azure Communication Services Call Automation emulator on 127.0.0.1.

The real ``azure-communication-callautomation`` SDK (1.6.0) talks to it exactly as it talks to ACS::

    with CallAutomationEmulator() as emu:
        client = CallAutomationClient(emu.endpoint, AzureKeyCredential(emu.access_key))
        props = client.answer_call(context, "http://127.0.0.1:7071/api/callbacks")

Construct the client directly: ``CallAutomationClient.from_connection_string`` silently switches an
``http://`` endpoint to https.

What it emulates (wire format recorded from SDK 1.6.0):

* ``POST /calling/callConnections:answer`` -> 200 ``CallConnectionProperties``, then a ``CallConnected``
  callback; ``:redirect`` and ``:reject`` -> 204.
* ``POST /calling/callConnections/{id}:transferToParticipant`` -> 202, then ``CallTransferAccepted`` (or
  ``CallTransferFailed`` for a target given to :meth:`CallAutomationEmulator.fail_transfer_to`).
* ``CallConnectionClient.hang_up(is_for_everyone=False)`` sends ``DELETE /calling/callConnections/{id}``
  (no body, no repeatability headers); ``hang_up(is_for_everyone=True)`` sends
  ``POST /calling/callConnections/{id}:terminate`` (empty body, with repeatability headers). Both -> 204,
  then ``CallDisconnected``; the connection is gone afterwards (404).
* ``GET /calling/callConnections/{id}`` -> 200 with the connection's properties.
* HMAC-SHA256 request authentication exactly as ACS checks it (401 ``Denied`` otherwise), optionally a
  fixed Bearer token.
* ``Repeatability-Request-ID``: a repeated id gets the stored response and is not executed again.
* Callbacks: CloudEvents arrays POSTed with ``Authorization: Bearer <JWT>`` (RS256, signed by a key the
  emulator generates at start and publishes at ``/calling/.well-known/acsopenidconfiguration`` and
  ``/calling/keys``). Callbacks are delivered only to loopback URLs given by a literal host
  (127.0.0.1, ::1, localhost); any other host is recorded and never contacted. No name is resolved.
* Fault injection (:meth:`CallAutomationEmulator.inject`), expired incoming-call contexts
  (:meth:`CallAutomationEmulator.expire_context`) and second actions on an already handled call
  (:data:`ALREADY_HANDLED_STATUS`, :data:`ALREADY_HANDLED_MARKER`).

Only the standard library, ``cryptography`` and ``PyJWT`` are used. Run standalone with
``python -m local.emulator``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import hmac
import http.client
import json
import queue
import secrets
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "ALREADY_HANDLED_MARKER",
    "ALREADY_HANDLED_STATUS",
    "CALLBACK_ISSUER",
    "EXPIRED_CONTEXT_MESSAGE",
    "OPERATIONS",
    "CallAutomationEmulator",
    "CallbackDelivery",
    "DeniedRequest",
    "RecordedAction",
    "identifier_model",
    "main",
]

#: ``iss`` of every callback JWT, as in Azure (handbook acs.md, "Mid-call callbacks").
CALLBACK_ISSUER = "https://acscallautomation.communication.azure.com"
OPENID_CONFIG_PATH = "/calling/.well-known/acsopenidconfiguration"
JWKS_PATH = "/calling/keys"
#: Lifetime of a callback JWT (iat/nbf .. exp).
CALLBACK_TOKEN_LIFETIME = 300

#: What ACS answers for a stale incomingCallContext (the ring is over), byte for byte the message the
#: wire capture shows the SDK rendering; the app recognises ``IDX23010``.
EXPIRED_CONTEXT_STATUS = 400
EXPIRED_CONTEXT_MESSAGE = "IDX23010: Lifetime validation of the signed http request failed. (emulated)"

#: Answer/redirect/reject of an incomingCallContext that an earlier, different request already
#: answered, redirected or rejected.
#: ASSUMPTION: no public source (Azure docs, the troubleshooting code tables in MicrosoftDocs/azure-docs
#: ``.../troubleshooting/voice-video-calling/includes/codes/call-automation-sdk.md``, SDK issues) states
#: what ACS returns for this case. The published generic codes are 400/8501 "Call Not Established",
#: 400/8585 "Action Not Valid In Current Call State" and 409/8519 "Conflict" (parallel actions). We emulate
#: HTTP 400 with a message naming the call as already answered/redirected/rejected; the app should match
#: on the status plus the marker and treat the event as done (not retry).
ALREADY_HANDLED_STATUS = 400
ALREADY_HANDLED_MARKER = "Incoming call already handled"

#: Operation names used by :meth:`CallAutomationEmulator.inject` and :class:`RecordedAction`.
#: ``hangup`` covers both ``DELETE {id}`` and ``POST {id}:terminate``; ``get`` is GET of a connection.
OPERATIONS = ("answer", "redirect", "reject", "transfer", "hangup", "get")

#: Largest request body read; anything larger gets 413 and the connection is closed.
MAX_BODY_BYTES = 1 << 20
#: Largest callback response body read from a receiver.
MAX_CALLBACK_RESPONSE_BYTES = 64 * 1024
#: Hosts callbacks may be sent to: literal loopback only, never resolved.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
#: ``version`` in callback data when the request carried no api-version.
DEFAULT_EVENT_VERSION = "2024-09-01-preview"

_SIGNED_HEADERS_REQUIRED = ("x-ms-date", "host", "x-ms-content-sha256")
_REJECT_REASONS = ("none", "busy", "forbidden")
_DEFAULT_ERROR_CODES = {
    400: "BadRequest",
    401: "Denied",
    403: "Forbidden",
    404: "NotFound",
    408: "RequestTimeout",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


# --------------------------------------------------------------------------------------------------
# Records


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


@dataclass(frozen=True)
class DeniedRequest:
    """A request refused with 401: it never reached the Call Automation handlers."""

    method: str
    path: str
    reason: str
    at: float


@dataclass(frozen=True)
class CallbackDelivery:
    """One callback POST: delivered (``sent``) to a loopback receiver, or only recorded."""

    url: str
    events: list[dict[str, Any]]
    token: str
    sent: bool
    status: int | None
    error: str | None
    at: float

    @property
    def types(self) -> list[str]:
        return [str(e.get("type", "")) for e in self.events]


@dataclass
class _Fault:
    operation: str
    status: int | None
    retry_after: float | None
    delay: float
    remaining: int
    body: Any


@dataclass
class _Call:
    call_connection_id: str
    server_call_id: str
    correlation_id: str
    callback_uri: str
    source: dict[str, Any]
    target: dict[str, Any]
    answered_by: dict[str, Any]
    api_version: str
    source_display_name: str | None = None
    state: str = "connecting"


@dataclass
class _IncomingCall:
    source: dict[str, Any]
    target: dict[str, Any]
    server_call_id: str
    correlation_id: str
    display_name: str
    expires_at: float | None = None


@dataclass
class _Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None

    def encoded(self) -> bytes:
        if self.raw is not None:
            return self.raw
        if self.body is None:
            return b""
        return json.dumps(self.body, separators=(",", ":")).encode("utf-8")


class _RequestError(Exception):
    """Raised inside handlers to answer with an ACS-shaped error."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code

    def response(self) -> _Response:
        error: dict[str, Any] = {}
        if self.code is not None:
            error["code"] = self.code
        error["message"] = self.message
        return _Response(self.status, {"error": error})


# --------------------------------------------------------------------------------------------------
# Helpers


def identifier_model(raw: str | Mapping[str, Any]) -> dict[str, Any]:
    """The wire model of an identifier given a raw id or phone number (``+1425...``, ``4:+1...``,
    ``8:acs:...``), or pass a model through (adding ``rawId`` when missing)."""
    if isinstance(raw, Mapping):
        model = dict(raw)
        if "rawId" not in model:
            model["rawId"] = _raw_id(model)
        return model
    text = str(raw)
    if text.startswith("+"):
        return {"kind": "phoneNumber", "rawId": f"4:{text}", "phoneNumber": {"value": text}}
    if text.startswith("4:"):
        return {"kind": "phoneNumber", "rawId": text, "phoneNumber": {"value": text[2:]}}
    if text.startswith("8:acs:") or text.startswith("8:spool:"):
        return {"kind": "communicationUser", "rawId": text, "communicationUser": {"id": text}}
    if text.startswith("8:orgid:"):
        return {
            "kind": "microsoftTeamsUser",
            "rawId": text,
            "microsoftTeamsUser": {"userId": text[len("8:orgid:") :], "cloud": "public"},
        }
    return {"kind": "unknown", "rawId": text}


def _raw_id(model: Mapping[str, Any]) -> str:
    if model.get("rawId"):
        return str(model["rawId"])
    phone = model.get("phoneNumber")
    if isinstance(phone, Mapping) and phone.get("value"):
        return f"4:{phone['value']}"
    user = model.get("communicationUser")
    if isinstance(user, Mapping) and user.get("id"):
        return str(user["id"])
    teams = model.get("microsoftTeamsUser")
    if isinstance(teams, Mapping) and teams.get("userId"):
        return f"8:orgid:{teams['userId']}"
    return ""


def _phone_of(model: Mapping[str, Any]) -> str | None:
    phone = model.get("phoneNumber")
    if isinstance(phone, Mapping) and phone.get("value"):
        return str(phone["value"])
    raw = _raw_id(model)
    return raw[2:] if raw.startswith("4:") else None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _event_time() -> str:
    # ACS renders 7 fractional digits: 2025-03-17T05:20:36.2389607+00:00
    now = datetime.now(UTC)
    return f"{now:%Y-%m-%dT%H:%M:%S}.{now.microsecond:06d}0+00:00"


def content_hash(body: bytes) -> str:
    """``x-ms-content-sha256`` of a body: base64(sha256(body))."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def hmac_signature(access_key: str, string_to_sign: str) -> str:
    """base64(HMAC-SHA256(base64decode(access_key), string_to_sign)), as ACS and the SDK compute it."""
    digest = hmac.new(base64.b64decode(access_key), string_to_sign.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _is_loopback_url(url: str) -> bool:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return host is not None and host.lower() in LOOPBACK_HOSTS


# --------------------------------------------------------------------------------------------------
# HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, emulator: CallAutomationEmulator) -> None:
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse lookup: resolve nothing.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away (or a stop() that closed its socket) is not an emulator error.
        if isinstance(sys.exc_info()[1], OSError) or self.emulator._stopping.is_set():
            return
        super().handle_error(request, client_address)

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_connections(self) -> None:
        with self._connections_lock:
            conns = list(self._connections)
            self._connections.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, and no ~40 ms delayed-ACK stalls (handbook acs.md, TCP_NODELAY note).
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    #: Idle keep-alive connections are dropped after this many seconds.
    timeout = 30
    server_version = "CallAutomationEmulator/1.0"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.emulator.verbose:
            sys.stderr.write(f"emulator: {self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            self._send(_RequestError(411, "Content-Length is required.", "LengthRequired").response(), close=True)
            return None
        text = self.headers.get("Content-Length")
        if text is None:
            return b""
        try:
            length = int(text)
        except ValueError:
            length = -1
        if length < 0:
            self._send(_RequestError(400, "Invalid Content-Length.").response(), close=True)
            return None
        if length > MAX_BODY_BYTES:
            self._send(
                _RequestError(413, "Request entity too large.", "RequestEntityTooLarge").response(),
                close=True,
            )
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        emulator = self.server.emulator
        try:
            response, after = emulator._handle(self.command, self.path, self.headers, body)
        except Exception as exc:  # never leave the client hanging on an emulator bug
            response, after = (
                _RequestError(500, f"emulator error: {exc!r}", "InternalServerError").response(),
                [],
            )
        client_request_id = self.headers.get("x-ms-client-request-id")
        if client_request_id and "x-ms-client-request-id" not in response.headers:
            response.headers["x-ms-client-request-id"] = client_request_id
        try:
            self._send(response)
        finally:
            # The action was executed whether or not the client is still listening: its callbacks
            # go out after the response, as ACS sends them after answering.
            for job in after:
                job()

    def _send(self, response: _Response, close: bool = False) -> None:
        payload = response.encoded()
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.status != 204 and response.status >= 200:
            if payload and not any(k.lower() == "content-type" for k in response.headers):
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if payload and response.status != 204:
            self.wfile.write(payload)
        self.wfile.flush()


# --------------------------------------------------------------------------------------------------
# The emulator


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
        self.max_clock_skew = float(max_clock_skew)
        self.verbose = verbose

        self._signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._signing_key.public_key()))
        thumbprint_input = json.dumps(
            {"e": public_jwk["e"], "kty": "RSA", "n": public_jwk["n"]}, separators=(",", ":"), sort_keys=True
        )
        self.key_id = _b64url(hashlib.sha256(thumbprint_input.encode("ascii")).digest())
        self._jwk = {**public_jwk, "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.key_id}

        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._execute_lock = threading.Lock()
        self._actions: list[RecordedAction] = []
        self._denied: list[DeniedRequest] = []
        self._replayed: list[str] = []
        self._callbacks_sent: list[CallbackDelivery] = []
        self._callbacks_recorded: list[CallbackDelivery] = []
        self._faults: list[_Fault] = []
        self._failing_transfers: dict[str, tuple[int, int, str]] = {}
        self._repeatability: dict[str, tuple[str, _Response, str | None]] = {}
        self._handled_contexts: dict[str, str] = {}
        self._expired_contexts: set[str] = set()
        self._incoming: dict[str, _IncomingCall] = {}
        self._calls: dict[str, _Call] = {}

        self._server: _Server | None = None
        self._server_thread: threading.Thread | None = None
        self._callback_queue: queue.Queue[tuple[str, list[dict[str, Any]]] | None] = queue.Queue()
        self._callback_thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> CallAutomationEmulator:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(self)
        self._server_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="call-automation-emulator",
            daemon=True,
        )
        self._server_thread.start()
        self._callback_thread = threading.Thread(
            target=self._deliver_callbacks, name="call-automation-emulator-callbacks", daemon=True
        )
        self._callback_thread.start()
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
        self._callback_queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in (self._server_thread, self._callback_thread):
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        self._server_thread = self._callback_thread = None
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
            return list(self._callbacks_sent)

    @property
    def callbacks_recorded(self) -> list[CallbackDelivery]:
        """Snapshot of callbacks for non-loopback hosts: recorded, never sent."""
        with self._lock:
            return list(self._callbacks_recorded)

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
            lambda: self._callbacks_sent + self._callbacks_recorded,
            predicate or (lambda _c: True),
            timeout,
            "callback",
        )

    def _wait(
        self, source: Callable[[], list[Any]], predicate: Callable[[Any], bool], timeout: float, what: str
    ) -> Any:
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
    ) -> None:
        """Make the next ``times`` requests of ``operation`` (or ``"*"``) fail or stall.

        ``status``: answer with it (body ``body`` or an ACS-shaped error; a ``Retry-After`` header when
        ``retry_after`` is given). ``delay``: sleep that long first; with ``status=None`` the request is
        then handled normally. Faulted requests are recorded with their status and never executed.
        """
        if operation != "*" and operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; expected one of {OPERATIONS} or '*'")
        if status is None and delay <= 0:
            raise ValueError("inject needs a status, a delay, or both")
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(_Fault(operation, status, retry_after, float(delay), int(times), body))

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
        key = _raw_id(identifier_model(target))
        with self._lock:
            self._failing_transfers[key] = (code, sub_code, message)

    def expire_context(self, incoming_call_context: str) -> None:
        """Later requests with this incomingCallContext get 400 IDX23010 (the ring is over)."""
        with self._lock:
            self._expired_contexts.add(incoming_call_context)

    def clear(self, *, state: bool = False) -> None:
        """Forget recorded actions, callbacks, denials, replays, faults and failing transfer targets.

        With ``state=True`` also forget calls, handled/expired contexts and stored repeatable responses.
        """
        with self._lock:
            self._actions.clear()
            self._denied.clear()
            self._replayed.clear()
            self._callbacks_sent.clear()
            self._callbacks_recorded.clear()
            self._faults.clear()
            self._failing_transfers.clear()
            if state:
                self._repeatability.clear()
                self._handled_contexts.clear()
                self._expired_contexts.clear()
                self._incoming.clear()
                self._calls.clear()

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
        source = identifier_model(caller)
        target = identifier_model(callee)
        server_call_id = base64.b64encode(f"https://localhost/conv/{uuid.uuid4()}?i=emulated".encode("ascii")).decode(
            "ascii"
        )
        correlation = correlation_id or str(uuid.uuid4())
        header = _b64url(b'{"alg":"none","typ":"JWT"}')
        payload = _b64url(json.dumps({"cc": _b64url(secrets.token_bytes(48))}).encode("ascii"))
        context = f"{header}.{payload}."
        expires_at = time.monotonic() + self.context_lifetime if self.context_lifetime is not None else None
        with self._lock:
            self._incoming[context] = _IncomingCall(
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
            f"Microsoft.Communication/communicationServices/{self.resource_id}",
            "subject": f"/caller/{source['rawId']}/recipient/{target['rawId']}",
            "data": data,
            "eventType": "Microsoft.Communication.IncomingCall",
            "dataVersion": "1.0",
            "metadataVersion": "1",
            "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }

    def callback_token(self, now: float | None = None) -> str:
        """A callback JWT exactly as attached to every callback."""
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": CALLBACK_ISSUER,
            "aud": self.resource_id,
            "iat": issued,
            "nbf": issued,
            "exp": issued + CALLBACK_TOKEN_LIFETIME,
        }
        return jwt.encode(claims, self._signing_key, algorithm="RS256", headers={"kid": self.key_id})

    def openid_configuration(self) -> dict[str, Any]:
        return {
            "issuer": CALLBACK_ISSUER,
            "jwks_uri": self.jwks_url,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["iss", "aud", "iat", "nbf", "exp"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self._jwk)]}

    # ---------------------------------------------------------------- request handling

    def _handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[_Response, list[Callable[[], None]]]:
        split = urlsplit(target)
        path = split.path
        query = parse_qs(split.query, keep_blank_values=True)

        if method == "GET" and path == OPENID_CONFIG_PATH:
            return _Response(200, self.openid_configuration()), []
        if method == "GET" and path == JWKS_PATH:
            return _Response(200, self.jwks()), []

        route = self._route(method, path)
        if route is None:
            message = f"No HTTP resource was found that matches the request URI '{self._safe_endpoint()}{target}'."
            return _RequestError(404, message, "NotFound").response(), []
        operation, call_connection_id = route

        denial = self._authenticate(method, target, headers, body)
        if denial is not None:
            with self._changed:
                self._denied.append(DeniedRequest(method, path, denial, time.monotonic()))
                self._changed.notify_all()
            return _RequestError(401, f"Denied: {denial} (emulated)", "Denied").response(), []

        try:
            parsed: Any = json.loads(body) if body else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            parsed = body.decode("utf-8", "replace")
        request_id = headers.get("Repeatability-Request-ID")
        header_dict = {k: v for k, v in headers.items()}

        def record(response: _Response, connection_id: str | None, fault: bool) -> None:
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

        fault = self._take_fault(operation)
        if fault is not None:
            if fault.delay > 0:
                self._stopping.wait(fault.delay)
            if fault.status is not None:
                response = self._fault_response(fault)
                record(response, call_connection_id, True)
                return response, []

        fingerprint = hashlib.sha256(f"{method} {path}\n".encode() + body).hexdigest()
        with self._execute_lock:
            if request_id:
                with self._lock:
                    stored = self._repeatability.get(request_id)
                if stored is not None:
                    stored_fingerprint, stored_response, _stored_id = stored
                    with self._changed:
                        self._replayed.append(request_id)
                        self._changed.notify_all()
                    if stored_fingerprint != fingerprint:
                        message = "Repeatability-Request-ID was already used for a different request."
                        response = _RequestError(409, message, "Conflict").response()
                        response.headers["Repeatability-Result"] = "rejected"
                        return response, []
                    return _Response(stored_response.status, stored_response.body, dict(stored_response.headers)), []
            after: list[Callable[[], None]] = []
            connection_id = call_connection_id
            try:
                response, connection_id = self._execute(operation, call_connection_id, parsed, query, after)
            except _RequestError as err:
                response = err.response()
            if request_id:
                response.headers["Repeatability-Result"] = "accepted"
                with self._lock:
                    self._repeatability[request_id] = (fingerprint, response, connection_id)
            record(response, connection_id, False)
        return response, after

    def _safe_endpoint(self) -> str:
        server = self._server
        return f"http://127.0.0.1:{server.server_port}" if server is not None else ""

    @staticmethod
    def _route(method: str, path: str) -> tuple[str, str | None] | None:
        prefix = "/calling/callConnections"
        if method == "POST":
            if path == prefix + ":answer":
                return "answer", None
            if path == prefix + ":redirect":
                return "redirect", None
            if path == prefix + ":reject":
                return "reject", None
        if not path.startswith(prefix + "/"):
            return None
        rest = path[len(prefix) + 1 :]
        connection, _, action = rest.partition(":")
        connection = unquote(connection)
        if not connection or "/" in connection:
            return None
        if method == "POST" and action == "transferToParticipant":
            return "transfer", connection
        if method == "POST" and action == "terminate":
            return "hangup", connection
        if method == "DELETE" and not action:
            return "hangup", connection
        if method == "GET" and not action:
            return "get", connection
        return None

    def _authenticate(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> str | None:
        """None when the request is authentic, else what failed."""
        authorization = headers.get("Authorization") or ""
        if authorization.startswith("Bearer "):
            if self.bearer_token is None:
                return "Bearer tokens are not accepted by this emulator (no bearer_token configured)."
            if hmac.compare_digest(authorization[len("Bearer ") :].strip(), self.bearer_token):
                return None
            return "invalid Bearer token."
        if not authorization:
            return "missing Authorization header."
        scheme, _, params = authorization.partition(" ")
        if scheme != "HMAC-SHA256":
            return f"unsupported authorization scheme {scheme!r}."
        fields: dict[str, str] = {}
        for part in params.split("&"):
            key, sep, value = part.partition("=")
            if sep:
                fields[key.strip()] = value.strip()
        signed = [h.strip().lower() for h in fields.get("SignedHeaders", "").split(";") if h.strip()]
        signature = fields.get("Signature")
        if not signed or not signature:
            return "Authorization must carry SignedHeaders and Signature."
        missing = [h for h in _SIGNED_HEADERS_REQUIRED if h not in signed]
        if missing:
            required = ";".join(_SIGNED_HEADERS_REQUIRED)
            return f"SignedHeaders must include {required} (missing {';'.join(missing)})."
        sent_hash = headers.get("x-ms-content-sha256")
        if not sent_hash:
            return "missing x-ms-content-sha256 header."
        if not hmac.compare_digest(sent_hash, content_hash(body)):
            return "x-ms-content-sha256 does not match the body (content hash mismatch)."
        date_text = headers.get("x-ms-date")
        if not date_text:
            return "missing x-ms-date header."
        try:
            sent_at = parsedate_to_datetime(date_text)
        except (TypeError, ValueError):
            return f"unparseable x-ms-date {date_text!r}."
        if sent_at.tzinfo is None:
            sent_at = sent_at.replace(tzinfo=UTC)
        skew = abs((datetime.now(UTC) - sent_at).total_seconds())
        if skew > self.max_clock_skew:
            limit = self.max_clock_skew
            return f"x-ms-date is {skew:.0f} s away from the emulator's clock (limit {limit:.0f} s)."
        values = []
        for name in signed:
            value = headers.get(name)
            if value is None:
                return f"signed header {name} is missing."
            values.append(value)
        string_to_sign = f"{method.upper()}\n{target}\n{';'.join(values)}"
        try:
            expected = hmac_signature(self.access_key, string_to_sign)
        except (binascii.Error, ValueError):
            return "the emulator's access key is not base64."
        if not hmac.compare_digest(expected, signature):
            return "HMAC signature mismatch (wrong access key, or a signed part was altered)."
        return None

    def _take_fault(self, operation: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.operation in ("*", operation):
                    fault.remaining -= 1
                    taken = _Fault(fault.operation, fault.status, fault.retry_after, fault.delay, 1, fault.body)
                    self._faults = [f for f in self._faults if f.remaining > 0]
                    return taken
        return None

    @staticmethod
    def _fault_response(fault: _Fault) -> _Response:
        assert fault.status is not None
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            value = fault.retry_after
            headers["Retry-After"] = str(int(value)) if float(value).is_integer() else f"{value:g}"
        if fault.body is None:
            code = _DEFAULT_ERROR_CODES.get(fault.status, str(fault.status))
            body: Any = {"error": {"code": code, "message": f"Injected fault {fault.status}. (emulated)"}}
            return _Response(fault.status, body, headers)
        if isinstance(fault.body, bytes | str):
            raw = fault.body.encode("utf-8") if isinstance(fault.body, str) else fault.body
            return _Response(fault.status, None, headers, raw=raw)
        return _Response(fault.status, fault.body, headers)

    # ---------------------------------------------------------------- operations

    def _execute(
        self,
        operation: str,
        call_connection_id: str | None,
        body: Any,
        query: Mapping[str, list[str]],
        after: list[Callable[[], None]],
    ) -> tuple[_Response, str | None]:
        api_version = (query.get("api-version") or [DEFAULT_EVENT_VERSION])[-1]
        if operation in ("answer", "redirect", "reject"):
            if not isinstance(body, dict):
                raise _RequestError(400, "The request body must be a JSON object.")
            context = body.get("incomingCallContext")
            if not isinstance(context, str) or not context:
                raise _RequestError(400, "The IncomingCallContext field is required.")
            self._check_context(context, operation)
            if operation == "answer":
                return self._answer(context, body, api_version, after)
            if operation == "redirect":
                target = body.get("target")
                if not isinstance(target, dict) or not _raw_id(target):
                    raise _RequestError(400, "The Target field is required.")
                self._mark_handled(context, "redirected")
                return _Response(204), None
            reason = body.get("callRejectReason", "none")
            if not isinstance(reason, str) or reason.lower() not in _REJECT_REASONS:
                raise _RequestError(400, f"The CallRejectReason {reason!r} is invalid.")
            self._mark_handled(context, "rejected")
            return _Response(204), None

        assert call_connection_id is not None
        with self._lock:
            call = self._calls.get(call_connection_id)
        if call is None or call.state == "disconnected":
            raise _RequestError(
                404,
                f"Call connection {call_connection_id} was not found. (emulated, subCode 8522)",
                "NotFound",
            )
        if operation == "get":
            return _Response(200, self._properties(call)), call_connection_id
        if operation == "hangup":
            call.state = "disconnected"
            after.append(lambda: self._enqueue(call.callback_uri, [self._disconnected_event(call, None)]))
            return _Response(204), call_connection_id
        if operation == "transfer":
            return self._transfer(call, body, after), call_connection_id
        raise _RequestError(404, f"Unsupported operation {operation}.", "NotFound")

    def _check_context(self, context: str, operation: str) -> None:
        with self._lock:
            incoming = self._incoming.get(context)
            expired = context in self._expired_contexts or (
                incoming is not None and incoming.expires_at is not None and time.monotonic() > incoming.expires_at
            )
            handled = self._handled_contexts.get(context)
        if expired:
            # No "code" member: byte for byte what the wire capture recorded.
            raise _RequestError(EXPIRED_CONTEXT_STATUS, EXPIRED_CONTEXT_MESSAGE)
        if handled is not None:
            raise _RequestError(
                ALREADY_HANDLED_STATUS,
                f"{ALREADY_HANDLED_MARKER}: the call was already {handled}, cannot {operation}. (emulated)",
                "BadRequest",
            )

    def _mark_handled(self, context: str, how: str) -> None:
        with self._lock:
            self._handled_contexts[context] = how

    def _check_callback_uri(self, name: str, uri: Any, required: bool) -> str | None:
        if uri is None and not required:
            return None
        if not isinstance(uri, str) or not uri:
            raise _RequestError(400, f"The field {name} is required.")
        try:
            parts = urlsplit(uri)
            host = parts.hostname
        except ValueError:
            host = None
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not host:
            raise _RequestError(400, f"The field {name} is invalid.")
        if parts.scheme == "http" and self.require_https_callbacks and not _is_loopback_url(uri):
            raise _RequestError(
                400,
                f"The field {name} is invalid. Call Automation doesn't support HTTP endpoints. (emulated)",
            )
        return uri

    def _answer(
        self, context: str, body: dict[str, Any], api_version: str, after: list[Callable[[], None]]
    ) -> tuple[_Response, str]:
        callback_uri = self._check_callback_uri("CallbackUri", body.get("callbackUri"), required=True)
        assert callback_uri is not None
        with self._lock:
            incoming = self._incoming.get(context)
        if incoming is None:
            incoming = _IncomingCall(
                source=identifier_model("+14255550123"),
                target=identifier_model("+18005550100"),
                server_call_id=base64.b64encode(b"https://localhost/conv/servercallid").decode("ascii"),
                correlation_id=str(uuid.uuid4()),
                display_name="",
            )
        call = _Call(
            call_connection_id=str(uuid.uuid4()),
            server_call_id=incoming.server_call_id,
            correlation_id=incoming.correlation_id,
            callback_uri=callback_uri,
            source=incoming.source,
            target=incoming.target,
            answered_by={"id": f"8:acs:{self.resource_id}_{uuid.uuid4()}"},
            api_version=api_version,
            source_display_name=incoming.display_name or None,
        )
        with self._lock:
            self._calls[call.call_connection_id] = call
            self._handled_contexts[context] = "answered"
        operation_context = body.get("operationContext")
        events = [self._event("CallConnected", call, operation_context)]

        def connected() -> None:
            if call.state == "connecting":
                call.state = "connected"
            self._enqueue(callback_uri, events)
            if self.send_participants_updated:
                self._enqueue(callback_uri, [self._participants_event(call)])

        after.append(connected)
        return _Response(200, self._properties(call)), call.call_connection_id

    def _transfer(self, call: _Call, body: Any, after: list[Callable[[], None]]) -> _Response:
        if not isinstance(body, dict):
            raise _RequestError(400, "The request body must be a JSON object.")
        target = body.get("targetParticipant")
        if not isinstance(target, dict) or not _raw_id(target):
            raise _RequestError(400, "The TargetParticipant field is required.")
        callback = self._check_callback_uri("OperationCallbackUri", body.get("operationCallbackUri"), required=False)
        url = callback or call.callback_uri
        operation_context = body.get("operationContext")
        target_model = identifier_model(target)
        transferee = identifier_model(body["transferee"]) if isinstance(body.get("transferee"), dict) else call.source
        raw = _raw_id(target_model)
        with self._lock:
            failure = self._failing_transfers.get(raw)
            if failure is None and (phone := _phone_of(target_model)):
                failure = self._failing_transfers.get(f"4:{phone}")
        extra = {"transferTarget": target_model, "transferee": transferee}
        if failure is None:
            result = {"code": 202, "subCode": 0, "message": "The transfer operation completed successfully."}
            events = [self._event("CallTransferAccepted", call, operation_context, result, extra)]
        else:
            code, sub_code, message = failure
            result = {"code": code, "subCode": sub_code, "message": message}
            events = [self._event("CallTransferFailed", call, operation_context, result, extra)]

        def deliver() -> None:
            self._enqueue(url, events)
            if failure is None and self.disconnect_after_transfer:
                call.state = "disconnected"
                self._enqueue(call.callback_uri, [self._disconnected_event(call, None)])

        after.append(deliver)
        response_body: dict[str, Any] = {}
        if operation_context is not None:
            response_body["operationContext"] = operation_context
        return _Response(202, response_body)

    def _properties(self, call: _Call) -> dict[str, Any]:
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
        if (phone := _phone_of(call.source)) is not None:
            props["sourceCallerIdNumber"] = {"value": phone}
        if call.source_display_name:
            props["sourceDisplayName"] = call.source_display_name
        return props

    # ---------------------------------------------------------------- callbacks

    def _event(
        self,
        name: str,
        call: _Call,
        operation_context: Any,
        result: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        # Same members, same order as the live CallConnected in callbacks.recorded.json.
        data: dict[str, Any] = {
            "version": call.api_version,
            "resultInformation": dict(result or {"code": 200, "subCode": 0, "message": ""}),
        }
        if extra:
            data.update(extra)
        data["callConnectionId"] = call.call_connection_id
        data["serverCallId"] = call.server_call_id
        data["correlationId"] = call.correlation_id
        if operation_context is not None:
            data["operationContext"] = operation_context
        data["publicEventType"] = f"Microsoft.Communication.{name}"
        source = f"calling/callConnections/{call.call_connection_id}"
        return {
            "id": str(uuid.uuid4()),
            "source": source,
            "type": f"Microsoft.Communication.{name}",
            "data": data,
            "time": _event_time(),
            "specversion": "1.0",
            "datacontenttype": "application/json",
            "subject": source,
        }

    def _disconnected_event(self, call: _Call, operation_context: Any) -> dict[str, Any]:
        result = {"code": 200, "subCode": 7000, "message": "The conversation has ended. DiagCode: 0#7000.@"}
        return self._event("CallDisconnected", call, operation_context, result)

    def _participants_event(self, call: _Call) -> dict[str, Any]:
        participants = [
            {"identifier": identifier_model(p), "isMuted": False, "isOnHold": False}
            for p in (call.source, {"communicationUser": call.answered_by})
        ]
        event = self._event("ParticipantsUpdated", call, None)
        event["data"] = {"participants": participants, "sequenceNumber": 1, **event["data"]}
        return event

    def _enqueue(self, url: str, events: list[dict[str, Any]]) -> None:
        if not self._stopping.is_set():
            self._callback_queue.put((url, events))

    def _deliver_callbacks(self) -> None:
        while True:
            item = self._callback_queue.get()
            if item is None:
                return
            url, events = item
            token = self.callback_token()
            if self._stopping.is_set():
                self._store_callback(
                    CallbackDelivery(url, events, token, False, None, "emulator stopped", time.monotonic())
                )
                continue
            if not _is_loopback_url(url):
                # Never contact a non-loopback host; the URL is only recorded.
                self._store_callback(CallbackDelivery(url, events, token, False, None, None, time.monotonic()))
                continue
            status, error = self._post_callback(url, events, token)
            self._store_callback(CallbackDelivery(url, events, token, True, status, error, time.monotonic()))

    def _store_callback(self, delivery: CallbackDelivery) -> None:
        with self._changed:
            (self._callbacks_sent if delivery.sent else self._callbacks_recorded).append(delivery)
            self._changed.notify_all()

    def _post_callback(self, url: str, events: list[dict[str, Any]], token: str) -> tuple[int | None, str | None]:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host not in LOOPBACK_HOSTS:  # defence in depth: callers already checked
            return None, "refused: not a loopback host"
        # Connect to the literal loopback address; "localhost" is never resolved.
        address = "::1" if host == "::1" else "127.0.0.1"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            # Local receivers use self-signed certificates; this only ever talks to loopback.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(address, port, timeout=self.callback_timeout, context=context)
        else:
            conn = http.client.HTTPConnection(address, port, timeout=self.callback_timeout)
        path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~") + (f"?{parts.query}" if parts.query else "")
        payload = json.dumps(events, separators=(",", ":")).encode("utf-8")
        host_header = parts.netloc.rpartition("@")[2]
        try:
            conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host_header)
            conn.putheader("Content-Type", "application/json; charset=utf-8")
            conn.putheader("Content-Length", str(len(payload)))
            conn.putheader("Authorization", f"Bearer {token}")
            conn.putheader("User-Agent", "CallAutomationEmulator/1.0")
            conn.endheaders(payload)
            response = conn.getresponse()
            response.read(MAX_CALLBACK_RESPONSE_BYTES)
            return response.status, None
        except (OSError, http.client.HTTPException) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()


# --------------------------------------------------------------------------------------------------
# Standalone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local.emulator",
        description="Local Azure Communication Services Call Automation emulator.",
    )
    parser.add_argument("--access-key", help="base64 access key (random when omitted)")
    parser.add_argument("--resource-id", help="ACS immutable resource id, the callback JWT audience")
    parser.add_argument("--verbose", action="store_true", help="log every HTTP request to stderr")
    args = parser.parse_args(argv)
    emulator = CallAutomationEmulator(access_key=args.access_key, resource_id=args.resource_id, verbose=args.verbose)
    # SIGTERM stops it like Ctrl-C does (both may arrive at any point, even during the banner).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with emulator:
            print(f"ACS_ENDPOINT={emulator.endpoint}")
            print(f"ACS_ACCESS_KEY={emulator.access_key}")
            print(f"ACS_RESOURCE_ID={emulator.resource_id}")
            print(f"HANDOFF_OPENID_CONFIG_URL={emulator.openid_config_url}")
            print("Ctrl-C to stop.", flush=True)
            seen = 0
            while True:
                time.sleep(0.5)
                actions = emulator.actions
                for action in actions[seen:]:
                    print(f"{action.method} {action.operation} -> {action.status}", flush=True)
                seen = len(actions)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
