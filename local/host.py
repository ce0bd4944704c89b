"""A local stand-in for the Azure Functions host: serves the app's own triggers over HTTP on loopback.

The real host (Core Tools, ``func start``) cannot run on a machine without internet, so this one
does the part we need, the way the host does it:

- ``POST /runtime/webhooks/eventgrid?functionName=NAME`` with ``aeg-event-type: Notification``: the
  body is a JSON array of events; each is decoded by azure-functions' own Event Grid converter
  (the worker's code path, giving ``func.EventGridEvent`` or ``func.CloudEvent``) and the function
  is invoked once per event. Any invocation raising → 500, so Event Grid redelivers; else 202.
- ``aeg-event-type: SubscriptionValidation``: answers ``{"validationResponse": code}`` with 200.
- ``OPTIONS`` with ``WebHook-Request-Origin`` (CloudEvents handshake): ``WebHook-Allowed-Origin``.
- ``/api/<route>``: HTTP triggers, given a real ``func.HttpRequest`` with its route parameters
  (``calls/{correlation_id}``). A function whose auth level is not anonymous asks for the host's
  function key, as the Functions host does: ``x-functions-key`` header or ``code`` query parameter,
  401 without it. The key is random per host unless given (``LocalHost.function_key``).
- Timer triggers: :meth:`LocalHost.run_timer` invokes one now, and :meth:`start_timers` every
  ``interval`` seconds (``make run``: once a minute, as the schedule says).

It dispatches to the function objects registered on the ``FunctionApp`` (``app.get_functions()``),
never to a copy of their logic. Development only: excluded from the deployed package.

Observers (``host.observers``) hear of every delivery as it happens: each event right after its
invocation, on the thread that invoked it (so what the app logged there belongs to it), each HTTP
trigger invoked, each validation handshake, and each request the host answered without invoking
anything (the CloudEvents ``OPTIONS`` handshake aside). ``make run`` prints its lines from them.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import azure.functions as func
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

_MAX_BODY = 1 << 20  # Event Grid batches are at most 1 MB


@dataclass(frozen=True)
class Delivery:
    """What the host did with one delivered event or one request, as an observer hears of it.

    ``kind``: ``event`` (one event of a Notification, after its invocation), ``validation`` (a
    SubscriptionValidation handshake answered), ``refused`` (a request answered without invoking a
    function), ``http`` (an HTTP trigger invoked) or ``timer`` (a timer function run on schedule).
    """

    kind: str
    function: str
    #: ``time.monotonic()`` when the host began this delivery: what the emulator recorded after it belongs to it.
    started: float
    #: The event as posted (kind ``event``).
    item: object = None
    #: The HTTP status the host answered (0 for an event: the batch's status is not known yet).
    status: int = 0
    #: The invocation's exception, or why the request was refused.
    error: str | None = None


@dataclass(frozen=True)
class HttpFunction:
    route: str
    pattern: re.Pattern[str]
    methods: set[str]
    user: Callable[..., Any]
    needs_key: bool


def _route_pattern(route: str) -> re.Pattern[str]:
    """``calls/{correlation_id}`` → a pattern whose groups are the route parameters."""
    parts = re.split(r"(\{[A-Za-z_][A-Za-z0-9_]*\})", route.strip("/"))
    regex = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"api/{regex}")


class LocalHost:
    def __init__(self, app: func.FunctionApp, host: str = "127.0.0.1", port: int = 0, function_key: str | None = None):
        self.event_grid: dict[str, Callable[..., Any]] = {}
        self.http: list[HttpFunction] = []
        self.timers: dict[str, Callable[..., Any]] = {}
        #: What a non-anonymous HTTP function asks for (x-functions-key or ?code=).
        self.function_key = function_key or secrets.token_urlsafe(24)
        # The worker indexes the app once; azure-functions refuses a second get_functions().
        self.functions = app.get_functions()
        for fn in self.functions:
            trigger = fn.get_trigger()
            name = fn.get_function_name()
            # Both are Optional in azure-functions' types; get_functions() has already refused a triggerless one.
            if trigger is None or name is None:
                raise ValueError(f"function {name!r} has no trigger or no name")
            user = fn.get_user_function()
            kind = trigger.get_binding_name()
            if kind == "eventGridTrigger":
                self.event_grid[name] = user
            elif kind == "httpTrigger":
                route = (getattr(trigger, "route", None) or name).strip("/")
                methods = {str(getattr(m, "value", m)).upper() for m in (getattr(trigger, "methods", None) or [])}
                level = str(getattr(getattr(trigger, "auth_level", None), "value", "anonymous")).lower()
                pattern = _route_pattern(route)
                self.http.append(HttpFunction(route, pattern, methods or {"GET", "POST"}, user, level != "anonymous"))
            elif kind == "timerTrigger":
                self.timers[name] = user
        self.errors: list[str] = []
        self.observers: list[Callable[[Delivery], None]] = []
        handler = _handler_for(self)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._timers_stop = threading.Event()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        if not isinstance(host, str):  # typeshed allows the bytes bind() accepts; getsockname() gives str
            host = host.decode("ascii")
        return f"http://{host}:{port}"

    def event_grid_url(self, function_name: str = "incoming_call") -> str:
        return f"{self.url}/runtime/webhooks/eventgrid?functionName={function_name}"

    def start(self) -> LocalHost:
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-host", daemon=True)
        self._thread.start()
        return self

    def run_timer(self, name: str = "timer_trigger") -> None:
        """Invoke a timer function now, as the host does on its schedule."""
        from azure.functions.timer import TimerRequest

        self.timers[name](TimerRequest(past_due=False))

    def start_timers(self, interval: float = 60.0) -> None:
        """Invoke every timer function each ``interval`` seconds until the host stops."""

        def loop() -> None:
            while not self._timers_stop.wait(interval):
                for name in self.timers:
                    started = time.monotonic()
                    try:
                        self.run_timer(name)
                    except Exception as exc:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
                        self.notify(Delivery("timer", name, started, error=f"{type(exc).__name__}: {exc}"))
                    else:
                        self.notify(Delivery("timer", name, started))

        threading.Thread(target=loop, name="local-host-timers", daemon=True).start()

    def stop(self) -> None:
        self._timers_stop.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def notify(self, delivery: Delivery) -> None:
        """Tell every observer; an observer's failure never changes what the host answers."""
        for observer in list(self.observers):
            try:
                observer(delivery)
            except Exception as exc:
                self.errors.append(f"observer {type(exc).__name__}: {exc}")


def _handler_for(host: LocalHost) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # without it every keep-alive response stalls ~40 ms on delayed ACKs

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if body and not (headers and any(h.lower() == "content-type" for h in headers)):
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_BODY:
                raise ValueError("body too large")
            return self.rfile.read(length) if length else b""

        def do_OPTIONS(self) -> None:
            origin = self.headers.get("WebHook-Request-Origin")
            if urlsplit(self.path).path == "/runtime/webhooks/eventgrid" and origin:
                self._reply(200, headers={"WebHook-Allowed-Origin": origin, "Allow": "POST"})
            else:
                self._reply(404)

        def do_GET(self) -> None:
            self._http_trigger("GET")

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/runtime/webhooks/eventgrid":
                self._event_grid(parse_qs(parts.query))
            else:
                self._http_trigger("POST")

        def _refuse(self, name: str, started: float, status: int, error: str) -> None:
            host.notify(Delivery("refused", name, started, status=status, error=error))
            self._reply(status, json.dumps({"error": error}).encode())

        def _event_grid(self, query: dict[str, list[str]]) -> None:
            started = time.monotonic()
            name = (query.get("functionName") or [""])[0]
            user = host.event_grid.get(name)
            body = self._body()
            if user is None:
                self._refuse(name, started, 404, f"no Event Grid function named {name!r}")
                return
            kind = self.headers.get("aeg-event-type", "")
            try:
                items = json.loads(body)
            except (ValueError, RecursionError):
                self._refuse(name, started, 400, "body is not JSON")
                return
            items = items if isinstance(items, list) else [items]
            if kind == "SubscriptionValidation":
                code = items[0].get("data", {}).get("validationCode") if items and isinstance(items[0], dict) else None
                if not code:
                    self._refuse(name, started, 400, "no validationCode")
                    return
                host.notify(Delivery("validation", name, started, status=200))
                self._reply(200, json.dumps({"validationResponse": code}).encode())
                return
            if kind != "Notification":
                self._refuse(name, started, 400, "aeg-event-type must be Notification or SubscriptionValidation")
                return
            failed = []
            for item in items:
                item_started = time.monotonic()
                error = None
                try:
                    event = EventGridEventInConverter.decode(
                        meta.Datum(type="json", value=json.dumps(item)), trigger_metadata=None
                    )
                    user(event)
                except Exception as exc:  # the host reports a failed invocation as 500
                    error = f"{type(exc).__name__}: {exc}"
                    failed.append(error)
                host.notify(Delivery("event", name, item_started, item=item, error=error))
            if failed:
                host.errors.extend(failed)
                self._reply(500, json.dumps({"errors": failed}).encode())
            else:
                self._reply(202)

        def _http_trigger(self, method: str) -> None:
            started = time.monotonic()
            parts = urlsplit(self.path)
            body = self._body()
            path = parts.path
            for fn in host.http:
                match = fn.pattern.fullmatch(path.strip("/"))
                if match and method in fn.methods:
                    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                    if fn.needs_key:
                        given = self.headers.get("x-functions-key") or query.get("code") or ""
                        if not hmac.compare_digest(given.encode(), host.function_key.encode()):
                            # The Functions host answers 401 with an empty body, before the function runs.
                            host.notify(Delivery("refused", fn.route, started, status=401, error="no function key"))
                            self._reply(401)
                            return
                    request = func.HttpRequest(
                        method=method,
                        url=f"{host.url}{self.path}",
                        headers=dict(self.headers.items()),
                        params=query,
                        # Decoded, as the Functions host's routing hands them over.
                        route_params={k: unquote(v) for k, v in match.groupdict().items()},
                        body=body,
                    )
                    try:
                        response = fn.user(request)
                    except Exception as exc:
                        host.errors.append(f"{type(exc).__name__}: {exc}")
                        error = f"{type(exc).__name__}: {exc}"
                        host.notify(Delivery("http", fn.route, started, status=500, error=error))
                        self._reply(500)
                        return
                    host.notify(Delivery("http", fn.route, started, status=response.status_code))
                    headers = dict(response.headers.items())
                    if response.mimetype:
                        headers.setdefault("Content-Type", response.mimetype)
                    self._reply(response.status_code, response.get_body(), headers)
                    return
            host.notify(Delivery("refused", path, started, status=404, error=f"no function serves {method} {path}"))
            self._reply(404)

    return Handler
