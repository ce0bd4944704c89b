"""A fault-injecting reverse proxy for the call records' store, for tests and benchmarks.

It sits on loopback between the app and Azurite and relays every request, until a test tells it to
fail the way Azure Table Storage can fail::

    with Azurite() as store, FaultProxy(store.port) as proxy:
        env["HANDOFF_STORE"] = proxy.connection_string()   # the app talks to the proxy
        proxy.mode = "stopped"      # the store is down: connections are refused
        proxy.mode = "slow"         # every request waits proxy.slow_seconds, then goes through
        proxy.mode = "forbidden"    # every request gets Azure's 403 for a missing role
        proxy.mode = "pass"         # back to normal, on the same port

The modes, and why each looks the way it does:

* ``pass``: the request (method, path and query, headers, body) goes to Azurite and its response
  (status, reason, headers, body) comes back. The client's connection is kept alive between
  requests as the client asks (azure-data-tables pools connections); upstream, each request gets a
  connection of its own, so a connection Azurite closed while idle can never swallow a request.
  Bodies are read whole: a chunked request body is sent on with a Content-Length, a chunked
  response body is relayed with one (same bytes, other framing). Hop-by-hop headers
  (``Connection``, ``Keep-Alive``, ``Transfer-Encoding``...) belong to each connection and are
  not copied; ``Host`` is, so Azurite's ``odata.metadata`` URLs name the proxy the client used.
* ``stopped``: a store that is down, as the client sees it. The listening socket is closed, so a
  new connection is refused (ECONNREFUSED, what a stopped process leaves behind), and every open
  connection is closed without a response, so a pooled keep-alive connection fails too. Back to
  another mode, the proxy listens again on the same port (``port`` never changes). A refused
  connection rather than a hang: a hang is what ``slow`` with a long ``slow_seconds`` gives.
  A request held by ``slow`` when the store stops is dropped the same way. Note that azure-core's
  default retry policy tries a refused connection three more times with backoff (about 4.8 s in
  all, measured against this proxy) before raising ServiceRequestError: a caller that must give
  up sooner sets its own (``retry_total=0`` fails at once).
* ``slow``: each request waits ``slow_seconds`` (read when the request arrives), then is relayed.
* ``forbidden``: each request gets the 403 Azure Table Storage answers when the identity lacks a
  data role (or, with ``forbidden_code = "AuthorizationFailure"``, when a network rule refuses it),
  without reaching Azurite. See :func:`forbidden_body` for the shape and its source.

Bounded: 127.0.0.1 only, on both sides (the upstream is a port on 127.0.0.1, nothing else);
request bodies up to 8 MiB (an entity group transaction is at most 4 MiB); daemon threads; and the
proxy stops itself after ``lifetime`` seconds if nobody stops it. Standard library only.
Development only.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, get_args

from local.azurite import connection_string

Mode = Literal["pass", "stopped", "slow", "forbidden"]
MODES: tuple[Mode, ...] = get_args(Mode)
ForbiddenCode = Literal["AuthorizationPermissionMismatch", "AuthorizationFailure"]

HOST = "127.0.0.1"
#: An entity group transaction is at most 4 MiB (Microsoft Learn, "Scalability and performance
#: targets for Table storage"); twice that leaves room for framing and still bounds memory.
MAX_BODY_BYTES = 8 << 20
#: Seconds the proxy waits for Azurite's answer to one request.
UPSTREAM_TIMEOUT = 30.0

#: Headers of one connection, not of the message (RFC 9110, section 7.6.1), plus the framing the
#: proxy redoes itself (Content-Length) and Expect (the proxy has read the whole body already).
_NOT_RELAYED = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Content-Length",
        "Expect",
    )
)

#: The messages Azure Storage gives with these codes (Microsoft Learn, "Shared access signature error
#: codes"; the same code and text come back from a table endpoint when the Entra ID identity lacks
#: the data role: microsoft/AzureStorageExplorer issue 5553, labelled rbac and tables).
_FORBIDDEN_MESSAGES: dict[str, str] = {
    "AuthorizationPermissionMismatch": (
        "This request is not authorized to perform this operation using this permission."
    ),
    "AuthorizationFailure": "This request is not authorized to perform this operation.",
}


def forbidden_body(code: ForbiddenCode, request_id: str, now: datetime) -> bytes:
    """The JSON body of Azure Table Storage's 403, as its Table endpoint sends it.

    The shape is the OData JSON error of the Table service: ``{"odata.error": {"code": ...,
    "message": {"lang": "en-US", "value": "<message>\\nRequestId:<id>\\nTime:<ISO 8601>"}}}``, as
    quoted from real 403 responses of ``<account>.table.core.windows.net`` in
    microsoft/AzureStorageExplorer issues 5553 and 5891 (AuthorizationPermissionMismatch, 2022)
    and 8869 (AuthorizationFailure, 2025). azure-data-tables reads the code from the
    ``x-ms-error-code`` header first and from ``odata.error.code`` otherwise
    (azure/data/tables/_error.py, ``_decode_error``): the proxy sends both, as the service does.
    """
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"  # the service writes seven decimals
    value = f"{_FORBIDDEN_MESSAGES[code]}\nRequestId:{request_id}\nTime:{stamp}"
    return json.dumps({"odata.error": {"code": code, "message": {"lang": "en-US", "value": value}}}).encode()


class FaultProxy:
    """A reverse proxy on 127.0.0.1 (a free port) to ``http://127.0.0.1:<upstream_port>``.

    ``mode`` may be set at any time from any thread; the counters say what the proxy did.
    """

    def __init__(self, upstream_port: int, *, slow_seconds: float = 2.0, lifetime: float = 600.0) -> None:
        self.upstream_port = upstream_port
        #: How long ``slow`` holds each request, in seconds; read when a request arrives.
        self.slow_seconds = slow_seconds
        #: The code ``forbidden`` answers with.
        self.forbidden_code: ForbiddenCode = "AuthorizationPermissionMismatch"
        self.lifetime = lifetime
        self.port = 0
        #: Counters, for tests: requests received (whatever became of them), relayed to Azurite,
        #: held by ``slow``, answered 403 by ``forbidden``, connections accepted, and connections
        #: closed unanswered by ``stopped``.
        self.requests = 0
        self.forwarded = 0
        self.delayed = 0
        self.forbidden = 0
        self.connections = 0
        self.dropped = 0
        self._mode: Mode = "pass"
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._open: set[socket.socket] = set()
        self._interrupt = threading.Event()  # wakes requests held by ``slow`` when the store stops
        self._started = False
        self._closed = False

    # --- where it is --------------------------------------------------------------------------

    def connection_string(self) -> str:
        """Azurite's development-account connection string, with the table endpoint on the proxy."""
        return connection_string(self.port, HOST)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}/devstoreaccount1"

    # --- the mode -----------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        with self._lock:
            previous, self._mode = self._mode, mode
            if not self._started or self._closed:
                return  # start() applies the mode; after stop() there is nothing to apply it to
            if mode == "stopped" and previous != "stopped":
                self._stop_listening()
                self._drop_open_connections()
            elif previous == "stopped" and mode != "stopped":
                self._listen(self.port)

    # --- start and stop -----------------------------------------------------------------------

    def start(self) -> FaultProxy:
        with self._lock:
            if self._started:
                raise RuntimeError("a FaultProxy is started once; make another")
            self._started = True
            self._listen(0)
            if self._mode == "stopped":  # the port is taken; refuse from the start
                self._stop_listening()
            self._timer = threading.Timer(self.lifetime, self.stop)
            self._timer.daemon = True
            self._timer.start()
        return self

    def stop(self) -> None:
        """Stop for good: close the listener and every connection. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            timer, self._timer = self._timer, None
            self._stop_listening()
            self._drop_open_connections(count=False)
        if timer is not None:
            timer.cancel()  # a no-op when the timer is what called stop()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _listen(self, port: int) -> None:
        """Listen on 127.0.0.1:port (0: a free one, kept as ``self.port``) and serve in a thread."""
        self._interrupt = threading.Event()
        try:
            server = _Server((HOST, port), self)
        except OSError as exc:
            raise RuntimeError(f"the fault proxy cannot listen again on {HOST}:{port}: {exc}") from exc
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fault-proxy-{self.port}", daemon=True
        )
        self._thread.start()

    def _stop_listening(self) -> None:
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        self._interrupt.set()
        if server is not None:
            server.shutdown()  # returns once serve_forever has: no accept() after this
            server.server_close()  # the listening socket: new connections are refused
        if thread is not None:
            thread.join(timeout=5)

    def _drop_open_connections(self, count: bool = True) -> None:
        for sock in list(self._open):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the handler's blocked read returns at once
            if count:
                self.dropped += 1
        self._open.clear()

    # --- bookkeeping for the handler ----------------------------------------------------------

    def _opened(self, sock: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            self._open.add(sock)

    def _closed_connection(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # server_close() must not wait for a connection a client keeps open

    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a connection the proxy (stopped) or the client closed mid-request: nothing to report


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client asks
    # A response goes out as headers, then body: with Nagle on, the body waits for the client's
    # delayed ACK of the headers, about 40 ms per request with a body (local/host.py does the same).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.proxy._opened(self.connection)

    def finish(self) -> None:
        self.server.proxy._closed_connection(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    # http.server calls do_<METHOD>; the Table service's are these (MERGE: older clients' update).
    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_MERGE = do_OPTIONS = do_GET

    def _handle(self) -> None:
        proxy = self.server.proxy
        proxy._count("requests")
        body = self._read_body()
        if body is None:
            return
        mode = proxy.mode
        if mode == "slow":
            proxy._count("delayed")
            interrupt = proxy._interrupt
            interrupt.wait(proxy.slow_seconds)
            mode = "stopped" if interrupt.is_set() else proxy.mode
        if mode == "stopped":
            self._hang_up()
        elif mode == "forbidden":
            self._forbid()
        else:
            self._relay(body)

    def _read_body(self) -> bytes | None:
        """The request body, whole (Content-Length or chunked); None if the request was refused."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            size = 0
            while True:  # ends at the last chunk, at EOF, or past MAX_BODY_BYTES
                line = self.rfile.readline(1024)
                try:
                    length = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self._refuse(400, "malformed chunked body")
                    return None
                if length == 0:
                    for _ in range(100):  # the trailer section, up to its blank line
                        if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                            break
                    return b"".join(parts)
                size += length
                if size > MAX_BODY_BYTES:
                    self._refuse(413, "body too large")
                    return None
                parts.append(self.rfile.read(length))
                self.rfile.readline(8)  # the CRLF after the chunk
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._refuse(413, "body too large")
            return None
        return self.rfile.read(length) if length else b""

    def _refuse(self, status: int, why: str) -> None:
        data = why.encode()
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _hang_up(self) -> None:
        """What a stopped store gives a request: the connection closes, nothing is answered."""
        self.server.proxy._count("dropped")
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _forbid(self) -> None:
        proxy = self.server.proxy
        proxy._count("forbidden")
        request_id = str(uuid.uuid4())
        data = forbidden_body(proxy.forbidden_code, request_id, datetime.now(UTC))
        # The service puts the error's message in the reason phrase ("Status: 403 (This request is
        # not authorized to perform this operation using this permission.)", Azure/kusto-copy
        # issue 79) and names itself in Server.
        self.send_response_only(403, _FORBIDDEN_MESSAGES[proxy.forbidden_code])
        self.send_header("Server", "Windows-Azure-Table/1.0 Microsoft-HTTPAPI/2.0")
        self.send_header("Date", self.date_time_string())
        self.send_header("Content-Type", "application/json;odata=minimalmetadata;streaming=true;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-error-code", proxy.forbidden_code)
        self.send_header("x-ms-request-id", request_id)
        self.send_header("x-ms-version", self.headers.get("x-ms-version", "2019-02-02"))
        client_request_id = self.headers.get("x-ms-client-request-id")
        if client_request_id:
            self.send_header("x-ms-client-request-id", client_request_id)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _relay(self, body: bytes) -> None:
        proxy = self.server.proxy
        upstream = http.client.HTTPConnection(HOST, proxy.upstream_port, timeout=UPSTREAM_TIMEOUT)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _NOT_RELAYED:
                    upstream.putheader(name, value)
            if body or self.command in ("POST", "PUT", "PATCH", "MERGE"):
                upstream.putheader("Content-Length", str(len(body)))
            upstream.putheader("Connection", "close")
            upstream.endheaders(body or None)
            response = upstream.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._refuse(502, f"the store behind the fault proxy did not answer: {type(exc).__name__}")
            return
        finally:
            upstream.close()
        proxy._count("forwarded")
        self.send_response_only(response.status, response.reason)  # no Date or Server of our own
        bodiless = self.command == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
        for name, value in response.getheaders():
            if name.lower() not in _NOT_RELAYED:
                self.send_header(name, value)
        if bodiless:
            length = response.getheader("Content-Length")
            if length is not None:
                self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not bodiless:
            self.wfile.write(data)
