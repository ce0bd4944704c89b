"""Telemetry off the path of the first answer: record now, export once OpenTelemetry is ready.

Importing and configuring azure-monitor-opentelemetry takes ~300 ms (handbook azure.md, "Cold
start"), longer than the whole rest of a cold start. A call that reaches a cold instance must not
wait for it, and a background import would slow that call too (the two would share the GIL). So
``configure()`` only notes the settings; the exporter is set up after the first Call Automation
request has been sent (or after a quiet second, whichever comes first), and until then the hooks
record what they see — the call, its result, its Call Automation attempts and the log records it
wrote — with their true clock times. Once ready, each recording is exported with those times
(spans take explicit start and end times), so the first calls look in Application Insights as
they would have live.

Bounded: at most ``MAX_RECORDED`` calls, callbacks and loose log records are kept; more are
dropped and counted in the log.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from shared.adapters.telemetry.logs import Scope, current_scope

#: Calls and callbacks recorded while the exporter is not ready; more are dropped (and counted).
MAX_RECORDED = 1000
#: Without a call, the exporter is set up this long after start-up (the instance is idle).
QUIET_START_S = 1.0

_T = TypeVar("_T")


@dataclass
class Attempt:
    """One Call Automation HTTP attempt, as the per-retry policy saw it."""

    method: str
    url: str
    number: int
    start_ns: int
    end_ns: int
    status: int | None  # the response's status, or None when it raised
    error: str | None  # the exception's type when it raised
    after: str  # what the attempt before it got (for the retries metric)


@dataclass
class Recorded:
    """A call (``subject`` an IncomingCall) or a callback event handled before the exporter was ready."""

    subject: Any
    start_ns: int
    end_ns: int = 0
    result: Any = None
    error: str | None = None  # the type of the exception it raised, if it did
    attempts: list[Attempt] = field(default_factory=list)
    records: list[logging.LogRecord] = field(default_factory=list)


class Deferred:
    """What the hooks do while telemetry is on but not yet configured."""

    def __init__(self) -> None:
        self.recorded: collections.deque[Recorded] = collections.deque()
        self.loose: collections.deque[logging.LogRecord] = collections.deque(maxlen=MAX_RECORDED)
        self.dropped = 0
        #: Callback requests refused before the exporter was ready, by reason (counted when it is).
        self.rejections: collections.Counter[str] = collections.Counter()
        #: Call records lost before the exporter was ready, by queue.
        self.records_lost: collections.Counter[str | None] = collections.Counter()
        self.first_request = threading.Event()
        self.done = threading.Event()
        #: Set once the exporter is ready: what finishes from then on is exported at once.
        self.exporter: Callable[[Recorded], None] | None = None
        self._lock = threading.Lock()
        self._buffer = _Buffer(self)

    def start(self, configure: Callable[[], None]) -> None:
        """Hold the ``handoff`` logger's records; run ``configure`` after the first request or a quiet second."""
        logging.getLogger("handoff").addHandler(self._buffer)

        def when_ready() -> None:
            # The buffer stays on the logger: a call that began before the switch keeps its records
            # until it ends, even after it (its records then go out with its span, not live).
            try:
                self.first_request.wait(QUIET_START_S)
                configure()
            finally:
                self.done.set()

        threading.Thread(target=when_ready, name="handoff-telemetry", daemon=True).start()

    def run(self, subject: Any, ids: dict[str, str], run: Callable[[], _T]) -> _T:
        """``run()`` with what it does recorded: its times, its attempts, its log records."""
        recorded = Recorded(subject, time.time_ns())
        scope = Scope(correlation=ids, recorded=recorded)
        token = current_scope.set(scope)
        try:
            recorded.result = run()
            return recorded.result  # type: ignore[no-any-return]
        except BaseException as exc:
            recorded.error = type(exc).__name__
            raise
        finally:
            current_scope.reset(token)
            recorded.end_ns = time.time_ns()
            self._keep(recorded)
            if recorded.attempts:
                self.first_request.set()

    def _keep(self, recorded: Recorded) -> None:
        with self._lock:
            exporter = self.exporter
            if exporter is None:
                if len(self.recorded) >= MAX_RECORDED:
                    self.dropped += 1
                else:
                    self.recorded.append(recorded)
                return
        exporter(recorded)  # it finished after the switch: exported now, still with its own times

    def go_live(self, exporter: Callable[[Recorded], None]) -> list[Recorded]:
        """From now on export what finishes at once; returns what was kept until now."""
        with self._lock:
            self.exporter = exporter
            kept = list(self.recorded)
            self.recorded.clear()
            return kept

    def attempt(self, next_policy: Any, request: Any) -> Any:
        """Send one Call Automation attempt, noting its times and status on the call being handled."""
        scope = current_scope.get()
        context = request.context
        number = int(context.get("handoff.attempt", 0)) + 1
        context["handoff.attempt"] = number
        http = request.http_request
        started = time.time_ns()
        status: int | None = None
        error: str | None = None
        after = str(context.get("handoff.last_result", "unknown"))
        try:
            response = next_policy.send(request)
            status = int(response.http_response.status_code)
            context["handoff.last_result"] = str(status)
            return response
        except BaseException as exc:
            error = type(exc).__name__
            context["handoff.last_result"] = error
            raise
        finally:
            if scope is not None and scope.recorded is not None:
                scope.recorded.attempts.append(
                    Attempt(str(http.method), http.url, number, started, time.time_ns(), status, error, after)
                )


class _Buffer(logging.Handler):
    """Keeps the ``handoff`` logger's records for the exporter: with the call that wrote them, or loose."""

    def __init__(self, deferred: Deferred) -> None:
        super().__init__(logging.DEBUG)
        self._deferred = deferred

    def emit(self, record: logging.LogRecord) -> None:
        scope = current_scope.get()
        if scope is not None and scope.recorded is not None:
            # A call that began before the exporter was ready: its records go out with its span,
            # even if the exporter gets ready while it runs (live_only keeps them off the live path).
            if len(scope.recorded.records) < MAX_RECORDED:
                scope.recorded.records.append(record)
        elif self._deferred.exporter is None:
            self._deferred.loose.append(record)


def live_only(record: logging.LogRecord) -> bool:
    """A filter for the exporter's log handler: a record of a call recorded before the exporter was
    ready is exported with that call, not live (where it would miss the call's span)."""
    scope = current_scope.get()
    return scope is None or scope.recorded is None
