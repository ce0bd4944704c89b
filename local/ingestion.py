"""A loopback stand-in for the Application Insights ingestion endpoint, for tests and benchmarks.

The Azure Monitor exporter POSTs telemetry to ``<IngestionEndpoint>/v2.1/track``: a JSON array of
envelopes, possibly gzip-compressed (``Content-Encoding: gzip``). This server answers the way the
service does (``{"itemsReceived": n, "itemsAccepted": n, "errors": []}``) and keeps every body,
decompressed, so a test can read the envelopes and search every byte that left the process::

    with IngestionEndpoint() as sink:
        env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = sink.connection_string
        ...
        sink.envelopes("Microsoft.ApplicationInsights.Request")

Bounded: 127.0.0.1 only, bodies up to 16 MB, at most ``max_bodies`` kept, and the server stops
itself after ``lifetime`` seconds if nobody stops it. Standard library only. Development only.
"""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TRACK_PATHS = ("/v2.1/track", "/v2/track")
MAX_BODY_BYTES = 16 << 20
#: The instrumentation key of an offline test: no Application Insights resource has it.
TEST_IKEY = "00000000-0000-0000-0000-000000000000"


def decode_body(raw: bytes, encoding: str | None) -> bytes:
    """The body as sent before compression (gzip or deflate by header, or gzip by magic bytes)."""
    encoding = (encoding or "").lower()
    if encoding == "gzip" or raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    if encoding == "deflate":
        return zlib.decompress(raw)
    return raw


def parse_envelopes(body: bytes) -> list[dict[str, Any]]:
    """A JSON array of envelopes, or one envelope per line (the older newline-delimited form)."""
    text = body.decode("utf-8").strip()
    if not text:
        return []
    if text.startswith("["):
        items = json.loads(text)
        return [i for i in items if isinstance(i, dict)]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class IngestionEndpoint:
    def __init__(self, *, lifetime: float = 300.0, max_bodies: int = 10_000, ikey: str = TEST_IKEY) -> None:
        self.lifetime = lifetime
        self.max_bodies = max_bodies
        self.ikey = ikey
        self._lock = threading.Lock()
        self._bodies: list[bytes] = []
        self._envelopes: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    @property
    def connection_string(self) -> str:
        return f"InstrumentationKey={self.ikey};IngestionEndpoint={self.url}"

    def start(self) -> IngestionEndpoint:
        self._thread = threading.Thread(target=self._server.serve_forever, name="ingestion-endpoint", daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        """Stop serving. Idempotent; also called by the lifetime timer."""
        with self._lock:
            thread, self._thread = self._thread, None
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()  # a no-op when the timer is what called stop()
        if thread is not None:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)

    def __enter__(self) -> IngestionEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _keep(self, body: bytes, envelopes: list[dict[str, Any]]) -> None:
        with self._lock:
            if len(self._bodies) < self.max_bodies:
                self._bodies.append(body)
                self._envelopes.extend(envelopes)

    @property
    def bodies(self) -> list[bytes]:
        """Every body received, decompressed, in arrival order."""
        with self._lock:
            return list(self._bodies)

    def envelopes(self, name: str | None = None) -> list[dict[str, Any]]:
        """Envelopes received, optionally only those of one type (``Microsoft.ApplicationInsights.Request``)."""
        with self._lock:
            return [e for e in self._envelopes if name is None or e.get("name") == name]


def _handler_for(sink: IngestionEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            sink.requests.append((self.command, self.path, status))

        def do_GET(self) -> None:
            self._reply(404, {"error": "not an ingestion path"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                self._reply(413, {"error": "body too large"})
                return
            raw = self.rfile.read(length) if length else b""
            if self.path.split("?", 1)[0] not in TRACK_PATHS:
                self._reply(404, {"error": "not an ingestion path"})
                return
            try:
                body = decode_body(raw, self.headers.get("Content-Encoding"))
                envelopes = parse_envelopes(body)
            except (OSError, ValueError, zlib.error) as exc:
                self._reply(400, {"error": f"unreadable body: {type(exc).__name__}"})
                return
            sink._keep(body, envelopes)
            n = len(envelopes)
            self._reply(200, {"itemsReceived": n, "itemsAccepted": n, "errors": []})

    return Handler
