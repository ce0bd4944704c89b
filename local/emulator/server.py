"""The HTTP side: a threading HTTP/1.1 server on 127.0.0.1 and the routing of Call Automation paths.

:func:`route` maps a request to one of :data:`~local.emulator.model.OPERATIONS`:

* ``POST /calling/callConnections:answer``, ``:redirect``, ``:reject``;
* ``POST /calling/callConnections/{id}:transferToParticipant`` (``transfer``);
* ``DELETE /calling/callConnections/{id}`` and ``POST /calling/callConnections/{id}:terminate`` (``hangup``);
* ``GET /calling/callConnections/{id}`` (``get``).

The server resolves no name, keeps connections alive, reads bodies up to :data:`MAX_BODY_BYTES` with a
Content-Length (never chunked), and on stop shuts down every open connection.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import sys
import threading
from collections.abc import Callable
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import unquote

from local.emulator.model import RequestError, Response

#: Largest request body read; anything larger gets 413 and the connection is closed.
MAX_BODY_BYTES = 1 << 20


class Respond(Protocol):
    """Answers one request: the response, and jobs to run once it is sent."""

    def __call__(
        self, method: str, target: str, headers: Message[str, str], body: bytes
    ) -> tuple[Response, list[Callable[[], None]]]: ...


def route(method: str, path: str) -> tuple[str, str | None] | None:
    """The operation and call connection id a request is for, None when no operation matches."""
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


class Server(ThreadingHTTPServer):
    """Serves ``respond`` on 127.0.0.1, an ephemeral port.

    :param stopping: set while the emulator stops; errors of connections it cuts are not reported.
    :param verbose: read at each request: whether to log it to stderr.
    """

    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, respond: Respond, stopping: threading.Event, verbose: Callable[[], bool]) -> None:
        self.respond = respond
        self.stopping = stopping
        self.verbose = verbose
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
        if isinstance(sys.exc_info()[1], OSError) or self.stopping.is_set():
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
    server: Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose():
            sys.stderr.write(f"emulator: {self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            self._send(RequestError(411, "Content-Length is required.", "LengthRequired").response(), close=True)
            return None
        text = self.headers.get("Content-Length")
        if text is None:
            return b""
        try:
            length = int(text)
        except ValueError:
            length = -1
        if length < 0:
            self._send(RequestError(400, "Invalid Content-Length.").response(), close=True)
            return None
        if length > MAX_BODY_BYTES:
            self._send(
                RequestError(413, "Request entity too large.", "RequestEntityTooLarge").response(),
                close=True,
            )
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        try:
            response, after = self.server.respond(self.command, self.path, self.headers, body)
        except Exception as exc:  # never leave the client hanging on an emulator bug
            response, after = (
                RequestError(500, f"emulator error: {exc!r}", "InternalServerError").response(),
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

    def _send(self, response: Response, close: bool = False) -> None:
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
