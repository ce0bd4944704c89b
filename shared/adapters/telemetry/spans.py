"""Spans: one per IncomingCall and per callback event (``requests``), one per Call Automation attempt
(``dependencies``).

Redaction by construction: attributes are names, counts, lengths, ids and the routing outcome,
never a context value or the raw User-to-User text (only its form and length). Exceptions are
recorded by type only; their text may quote what they failed on.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

from shared.adapters.telemetry import names as n
from shared.adapters.telemetry.deferred import Attempt, Recorded
from shared.adapters.telemetry.logs import Scope, current_scope, emit_to_exporter
from shared.adapters.telemetry.metrics import Instruments
from shared.core.callback_flow import CallbackEvent, CallbackResult
from shared.core.decision import ActionResult, Decision, Outcome
from shared.core.events import IncomingCall, age_s

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = logging.getLogger("handoff.telemetry")

_CONNECTION_PATH = re.compile(r"/callConnections/([^/:]+)")
_OPERATIONS = {"transferToParticipant": "transfer", "terminate": "hangup"}


class HandledCall(Protocol):
    """What the app made of one IncomingCall (shared/app.py's ``Handled``)."""

    @property
    def decision(self) -> Decision | None: ...

    @property
    def result(self) -> ActionResult: ...


_H = TypeVar("_H", bound=HandledCall)
_T = TypeVar("_T")


class Runtime:
    """Tracer, instruments and the OpenTelemetry names this module needs, imported once."""

    def __init__(self) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.Status = Status
        self.ERROR = StatusCode.ERROR
        self.CONSUMER = SpanKind.CONSUMER
        self.CLIENT = SpanKind.CLIENT
        self.tracer = trace.get_tracer("handoff")
        self.metrics = Instruments()

    # -- IncomingCall ------------------------------------------------------------------------

    def incoming_call(self, call: IncomingCall, run: Callable[[], _H]) -> _H:
        ids = call_ids(call)
        scope = Scope(correlation=ids)
        started = time.time()
        return self._in_span(
            n.SPAN_INCOMING_CALL,
            ids,
            scope,
            run,
            lambda span, handled: self._record_call(span, call, handled, scope, started),
            f"IncomingCall {call.event_id}",
        )

    def _record_call(self, span: Span, call: IncomingCall, handled: HandledCall, scope: Scope, started: float) -> None:
        decision, result = handled.decision, handled.result
        if decision is None:  # pragma: no cover - a call is always decided
            return
        outcome = result.outcome
        acted = outcome != Outcome.DUPLICATE  # a duplicate never reached Call Automation
        issues = ",".join(e.code for e in decision.errors)
        attributes: dict[str, str | int | float | bool] = {
            n.CALLED: call.called_address or "",
            n.WORKSTREAM: decision.workstream or "",
            n.QUEUE: decision.queue or "",
            n.ACTION: str(decision.action),
            n.RULE: decision.rule,
            n.UUI_FORM: decision.uui_form,
            n.UUI_LENGTH: len(call.uui) if call.uui is not None else 0,
            n.DECODE: decision.decode,
            n.CONTEXT_COUNT: len(decision.context),
            n.WARNING_COUNT: len(decision.warnings),
            n.ERROR_COUNT: len(decision.errors),
            n.OUTCOME: str(outcome),
            n.RETRYABLE: "true" if result.retryable else "false",
            n.ELAPSED_MS: round(result.elapsed_ms, 2),
            n.CA_RETRIES: scope.retries,
        }
        if issues:
            attributes[n.ISSUES] = issues
        if decision.uui_error is not None:
            attributes[n.DECODE_ERROR] = decision.uui_error.kind
        if result.call_connection_id:
            attributes[n.CALL_CONNECTION_ID] = result.call_connection_id
        delay = age_s(call.event_time, started)
        if delay is not None:
            attributes[n.DELIVERY_DELAY_MS] = round(delay * 1000, 1)
        to_answer = age_s(call.event_time, scope.answered_at or time.time()) if acted else None
        if to_answer is not None:
            attributes[n.TIME_TO_ANSWER_MS] = round(to_answer * 1000, 1)
        span.set_attributes(attributes)
        if result.failed:
            span.set_status(self.Status(self.ERROR, str(outcome)))
        self.metrics.call(decision, result, to_answer)

    # -- callbacks ---------------------------------------------------------------------------

    def callback(self, event: CallbackEvent, run: Callable[[], CallbackResult]) -> CallbackResult:
        ids, attributes = callback_attributes(event)
        return self._in_span(
            n.SPAN_CALLBACK,
            attributes,
            Scope(correlation=ids),
            run,
            self._record_callback,
            f"callback {event.kind}",
        )

    def _record_callback(self, span: Span, result: CallbackResult) -> None:
        span.set_attribute(n.CALLBACK_RESULT, result.result)
        if result.failed:
            span.set_status(self.Status(self.ERROR, result.result))
        self.metrics.callback(result.kind, result.result, duplicate=result.result == "duplicate")

    def _in_span(
        self,
        name: str,
        attributes: dict[str, str],
        scope: Scope,
        run: Callable[[], _T],
        record: Callable[[Span, _T], None],
        what: str,
    ) -> _T:
        """Run the handler in a CONSUMER span with the call's correlation scope; record its result.

        Exceptions are recorded by type only (their text may carry values); telemetry that fails
        is logged and never breaks the call.
        """
        token = current_scope.set(scope)
        try:
            with self.tracer.start_as_current_span(
                name,
                kind=self.CONSUMER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    result = run()
                except BaseException as exc:
                    self._failed(span, exc)
                    raise
                try:
                    record(span, result)
                except Exception as exc:  # telemetry never breaks a call
                    log.error("telemetry for %s failed: %s", what, type(exc).__name__)
                return result
        finally:
            current_scope.reset(token)

    # -- Call Automation attempts ------------------------------------------------------------

    def attempt(self, next_policy: Any, request: Any) -> Any:
        context = request.context
        number = int(context.get("handoff.attempt", 0)) + 1
        context["handoff.attempt"] = number
        http = request.http_request
        name, attributes, operation = attempt_attributes(str(http.method), http.url, number)
        scope = current_scope.get()
        if number > 1:
            self.metrics.retry(operation, context.get("handoff.last_result", "unknown"))
            if scope is not None:
                scope.retries += 1
        with self.tracer.start_as_current_span(
            name,
            kind=self.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                response = next_policy.send(request)
            except BaseException as exc:
                context["handoff.last_result"] = type(exc).__name__
                self._failed(span, exc)
                raise
            code = int(response.http_response.status_code)
            context["handoff.last_result"] = str(code)
            self._answered(span, code)
            if scope is not None:
                scope.answered_at = time.time()
            return response

    def _answered(self, span: Span, code: int) -> None:
        span.set_attribute("http.response.status_code", code)
        if code >= 400:
            span.set_attribute("error.type", str(code))
            span.set_status(self.Status(self.ERROR, f"HTTP {code}"))

    # -- what happened before telemetry was configured (deferred.py), with its true times ------

    def replay(self, recorded: Recorded) -> None:
        """A call or a callback handled before OpenTelemetry was ready, exported now with the times
        it really had: its span, its Call Automation attempts as child spans, its metrics and the
        log records it wrote (correlated to its span)."""
        from opentelemetry import trace

        if isinstance(recorded.subject, CallbackEvent):
            ids, attributes = callback_attributes(recorded.subject)
            name = n.SPAN_CALLBACK
        else:
            ids = attributes = call_ids(recorded.subject)
            name = n.SPAN_INCOMING_CALL
        span = self.tracer.start_span(
            name,
            kind=self.CONSUMER,
            attributes=attributes,
            start_time=recorded.start_ns,
            record_exception=False,
            set_status_on_exception=False,
        )
        scope = Scope(correlation=ids, retries=max(0, len(recorded.attempts) - 1))
        token = current_scope.set(scope)
        try:
            with trace.use_span(span, end_on_exit=False):
                for attempt in recorded.attempts:
                    self._replay_attempt(attempt)
                    scope.answered_at = attempt.end_ns / 1e9
                if recorded.error is not None:
                    span.set_attribute("error.type", recorded.error)
                    span.set_status(self.Status(self.ERROR, recorded.error))
                elif isinstance(recorded.subject, CallbackEvent):
                    self._record_callback(span, recorded.result)
                else:
                    self._record_call(span, recorded.subject, recorded.result, scope, recorded.start_ns / 1e9)
                for record in recorded.records:
                    emit_to_exporter(record)
        finally:
            current_scope.reset(token)
            span.end(end_time=recorded.end_ns)

    def _replay_attempt(self, attempt: Attempt) -> None:
        name, attributes, operation = attempt_attributes(attempt.method, attempt.url, attempt.number)
        if attempt.number > 1:
            self.metrics.retry(operation, attempt.after)
        span = self.tracer.start_span(
            name,
            kind=self.CLIENT,
            attributes=attributes,
            start_time=attempt.start_ns,
            record_exception=False,
            set_status_on_exception=False,
        )
        if attempt.status is not None:
            self._answered(span, attempt.status)
        else:
            span.set_attribute("error.type", attempt.error or "error")
            span.set_status(self.Status(self.ERROR, attempt.error or "error"))
        span.end(end_time=attempt.end_ns)

    def _failed(self, span: Span, exc: BaseException) -> None:
        """The exception's type only: its message may quote what it failed on."""
        name = type(exc).__name__
        span.set_attribute("error.type", name)
        span.set_status(self.Status(self.ERROR, name))


def call_ids(call: IncomingCall) -> dict[str, str]:
    """The ids every record of an IncomingCall carries."""
    return {
        n.EVENT_ID: call.event_id,
        n.CORRELATION_ID: call.correlation_id or "",
        n.SERVER_CALL_ID: call.server_call_id or "",
    }


def callback_attributes(event: CallbackEvent) -> tuple[dict[str, str], dict[str, str]]:
    """(the ids every record of the callback carries, the span's attributes): ids and routing names
    only, never the context values the operation context also carries."""
    op = event.operation_context
    picked = {
        n.EVENT_ID: event.event_id,
        n.CORRELATION_ID: (op.correlation_id if op else None) or event.correlation_id,
        n.SERVER_CALL_ID: event.server_call_id,
        n.CALL_CONNECTION_ID: event.call_connection_id,
    }
    ids = {k: v for k, v in picked.items() if v}
    attributes: dict[str, str] = {**ids, n.CALLBACK_TYPE: event.kind}
    if op is not None:
        for key, value in ((n.QUEUE, op.queue), (n.WORKSTREAM, op.workstream), (n.TRANSFER_ATTEMPT, op.attempt)):
            if value is not None:
                attributes[key] = str(value)
    if event.result_code is not None or event.result_sub_code is not None:
        attributes[n.RESULT_CODE] = f"{event.result_code}/{event.result_sub_code}"
    return ids, attributes


def attempt_attributes(method: str, url: str, number: int) -> tuple[str, dict[str, str | int], str]:
    """(span name, attributes, operation) of one Call Automation HTTP attempt. The connection id is
    templated out of the name: one dependency name per operation."""
    method = method.upper()
    parts = urlsplit(url)
    operation = _operation(method, parts.path)
    path = _CONNECTION_PATH.sub("/callConnections/{callConnectionId}", parts.path)
    default_port = 443 if parts.scheme == "https" else 80
    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "url.full": f"{parts.scheme}://{parts.netloc}{path}",
        "server.address": parts.hostname or "",
        "server.port": parts.port or default_port,
        n.CA_OPERATION: operation,
        n.CA_ATTEMPT: number,
    }
    found = _CONNECTION_PATH.search(parts.path)
    if found:
        attributes[n.CALL_CONNECTION_ID] = found.group(1)
    return f"{method} {path}", attributes, operation


def _operation(method: str, path: str) -> str:
    """Call Automation operation of a request path: answer, redirect, reject, transfer, hangup, get."""
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        name = last.rsplit(":", 1)[1]
        return _OPERATIONS.get(name, name)
    return {"DELETE": "hangup", "GET": "get"}.get(method, method.lower())
