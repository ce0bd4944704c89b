"""Telemetry: OpenTelemetry → Application Insights. The only module that imports either.

Off unless ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set; then :func:`configure` (called by
``service.start()`` at the worker's start-up) calls azure-monitor-opentelemetry's
``configure_azure_monitor()`` once per process. This app configures the exporter itself, so the
worker's ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY`` must stay unset (never both), and host.json
says ``"telemetryMode": "OpenTelemetry"``. Off, nothing here imports OpenTelemetry and each hook is a
single ``if``: azure.monitor costs ~300 ms of import time, paid only when telemetry is on.

What is emitted (docs/operate.md has the dimensions and the KQL):

- one span per IncomingCall (``handoff.incoming_call``) and per Call Automation callback event
  (``handoff.callback``), kind CONSUMER → the ``requests`` table, correlated by the ACS correlation
  id and server call id;
- one CLIENT span per Call Automation HTTP attempt, from an azure-core per-retry policy
  (:class:`CallAutomationAttempts`) → ``dependencies``; retries are counted there too;
- metrics from the meter ``handoff`` → ``customMetrics``;
- the ``handoff`` logger's records → ``traces``, their ``extra={"handoff": {...}}`` fields flattened
  into string custom dimensions (``handoff.queue``, ``handoff.context.Intent``...), and every record
  logged during a call carries that call's correlation fields.

Redaction by construction: the spans and metrics are built from names, counts, lengths, ids and the
routing outcome, never from a context value or the raw User-to-User text (only its form and length);
log fields arrive already masked by shared/redaction.py. No exception text is recorded: spans carry the
exception's type only, and ``exception.message``/``exception.stacktrace`` are dropped from log records.
The distro's auto-instrumentations (azure-core tracing, requests, urllib3...) are off, so no span is
made by code that does not follow these rules.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

from azure.core.pipeline.policies import HTTPPolicy

from shared import calls
from shared.events import IncomingCall
from shared.routing import RULE_FALLBACK, RULE_INVALID_CONTEXT, RULE_UNKNOWN_NUMBER, Decision
from shared.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = logging.getLogger("handoff.telemetry")

# ---- names (docs/operate.md lists them; the workbook and the alerts query them) ---------------

LOGGER_NAME = "handoff"
SPAN_INCOMING_CALL = "handoff.incoming_call"
SPAN_CALLBACK = "handoff.callback"

METRIC_CALLS = "handoff.calls"
METRIC_DECODE_FAILURES = "handoff.decode_failures"
METRIC_FALLBACK_ROUTES = "handoff.fallback_routes"
METRIC_TRANSIENT_RETRIES = "handoff.transient_retries"
METRIC_STALE_EVENTS = "handoff.stale_events"
METRIC_DUPLICATE_EVENTS = "handoff.duplicate_events"
METRIC_TIME_TO_ACTION = "handoff.time_to_action"
METRIC_CALLBACKS = "handoff.callbacks"

# Span attributes and log dimensions share these names: one query language for both tables.
EVENT_ID = "handoff.event_id"
CORRELATION_ID = "handoff.correlation_id"
SERVER_CALL_ID = "handoff.server_call_id"
CALL_CONNECTION_ID = "handoff.call_connection_id"
CALLED = "handoff.called"
WORKSTREAM = "handoff.workstream"
QUEUE = "handoff.queue"
ACTION = "handoff.action"
RULE = "handoff.rule"
UUI_FORM = "handoff.uui_form"
UUI_LENGTH = "handoff.uui_length"
DECODE = "handoff.decode"  # ok | error | none
DECODE_ERROR = "handoff.decode_error"  # the UUIError kind
CONTEXT_COUNT = "handoff.context_count"
WARNING_COUNT = "handoff.warning_count"
ERROR_COUNT = "handoff.error_count"
ISSUES = "handoff.issues"  # the error codes, comma-separated (type_mismatch, uui_non_hex_characters...)
OUTCOME = "handoff.outcome"
RETRYABLE = "handoff.retryable"
ELAPSED_MS = "handoff.elapsed_ms"  # Call Automation request time, every attempt included
TIME_TO_ANSWER_MS = "handoff.time_to_answer_ms"  # eventTime → Call Automation's answer
DELIVERY_DELAY_MS = "handoff.delivery_delay_ms"  # eventTime → this process starts on the event
CA_RETRIES = "handoff.ca_retries"
CA_OPERATION = "handoff.ca_operation"
CA_ATTEMPT = "handoff.ca_attempt"
CALLBACK_TYPE = "handoff.callback_type"
CALLBACK_RESULT = "handoff.callback_result"
RESULT_CODE = "handoff.result_code"  # resultInformation code/subCode of a callback
TRANSFER_ATTEMPT = "handoff.transfer_attempt"  # primary | fallback

#: Outcomes that mean the call did not get its action (the span is marked failed).
FAILED_OUTCOMES = frozenset({calls.PERMANENT, calls.TRANSIENT, calls.STALE})
#: Rules that are not a match of the workstream's own rules.
FALLBACK_RULES = frozenset({RULE_FALLBACK, RULE_INVALID_CONTEXT, RULE_UNKNOWN_NUMBER})

#: The distro's instrumentations, all off: every span this app emits is built here.
_INSTRUMENTATIONS: tuple[str, ...] = (
    "azure_sdk",
    "django",
    "fastapi",
    "flask",
    "httpx",
    "httpx2",
    "psycopg2",
    "requests",
    "urllib",
    "urllib3",
)
#: Exception text may quote input; records keep the exception's type only.
_EXCEPTION_TEXT = ("exception.message", "exception.stacktrace")
_CONNECTION_PATH = re.compile(r"/callConnections/([^/:]+)")
_OPERATIONS = {"transferToParticipant": "transfer", "terminate": "hangup"}


# ---- per-call scope: what the log processor and the Call Automation policy add to -----------------


@dataclass
class _Scope:
    """The call being handled on this thread: its correlation fields, and its Call Automation attempts."""

    correlation: dict[str, str]
    retries: int = 0
    answered_at: float | None = None  # wall clock when Call Automation last answered (any status)


_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("handoff_telemetry_scope", default=None)


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def _dim(value: str | None) -> str:
    """A metric dimension value: never empty, so a missing queue is a visible 'none'."""
    return value or "none"


def flatten(prefix: str, fields: Mapping[str, Any]) -> dict[str, str]:
    """``{"queue": "agents", "context": {"Intent": "x"}, "errors": []}`` → ``{"handoff.queue": "agents",
    "handoff.context.Intent": "x"}``: one string dimension per field; None and empty lists are left out."""
    out: dict[str, str] = {}
    for key, value in fields.items():
        if type(value) is str:  # most fields: no isinstance walk over the ABCs
            out[f"{prefix}.{key}"] = value
        elif value is None:
            continue
        elif isinstance(value, dict):  # what OpenTelemetry's attribute cleaning turns mappings into
            out.update(flatten(f"{prefix}.{key}", value))
        elif isinstance(value, list | tuple):
            if value:
                out[f"{prefix}.{key}"] = " | ".join(_text(v) for v in value)
        else:
            out[f"{prefix}.{key}"] = _text(value)
    return out


# ---- the runtime, present only when telemetry is configured ------------------------------------


class _HandledLike(Protocol):
    @property
    def decision(self) -> Decision | None: ...

    @property
    def outcome(self) -> calls.Outcome: ...


_S = TypeVar("_S")
_H = TypeVar("_H", bound=_HandledLike)
_T = TypeVar("_T")
EventAge = Callable[[str | None, float], float | None]


class _Runtime:
    """Tracer, instruments and the OpenTelemetry names this module needs, imported once."""

    def __init__(self) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.Status = Status
        self.ERROR = StatusCode.ERROR
        self.CONSUMER = SpanKind.CONSUMER
        self.CLIENT = SpanKind.CLIENT
        self.tracer = trace.get_tracer("handoff")
        meter = metrics.get_meter("handoff")
        self.calls = meter.create_counter(
            METRIC_CALLS, unit="{call}", description="IncomingCall events handled, by queue, action, rule, outcome"
        )
        self.decode_failures = meter.create_counter(
            METRIC_DECODE_FAILURES, unit="{call}", description="User-to-User values that could not be decoded, by kind"
        )
        self.fallback_routes = meter.create_counter(
            METRIC_FALLBACK_ROUTES,
            unit="{call}",
            description="Calls routed by fallback, invalid-context or unknown-number instead of a rule",
        )
        self.retries = meter.create_counter(
            METRIC_TRANSIENT_RETRIES, unit="{retry}", description="Call Automation requests retried by azure-core"
        )
        self.stale = meter.create_counter(
            METRIC_STALE_EVENTS, unit="{call}", description="Calls whose incomingCallContext had expired (IDX23010)"
        )
        self.duplicates = meter.create_counter(
            METRIC_DUPLICATE_EVENTS, unit="{event}", description="Deliveries of a call or callback already handled"
        )
        self.time_to_action = meter.create_histogram(
            METRIC_TIME_TO_ACTION, unit="ms", description="eventTime to Call Automation's answer to our action"
        )
        self.callbacks = meter.create_counter(
            METRIC_CALLBACKS, unit="{event}", description="Call Automation callback events, by type and result"
        )

    # -- IncomingCall ------------------------------------------------------------------------

    def incoming_call(self, fn: Callable[[_S, IncomingCall], _H], svc: _S, call: IncomingCall, age: EventAge) -> _H:
        ids = {
            EVENT_ID: call.event_id,
            CORRELATION_ID: call.correlation_id or "",
            SERVER_CALL_ID: call.server_call_id or "",
        }
        scope = _Scope(correlation=ids)
        started = time.time()
        return self._in_span(
            SPAN_INCOMING_CALL,
            ids,
            scope,
            lambda: fn(svc, call),
            lambda span, handled: self._record_call(span, call, handled, scope, age, started),
            f"IncomingCall {call.event_id}",
        )

    def _record_call(
        self, span: Span, call: IncomingCall, handled: _HandledLike, scope: _Scope, age: EventAge, started: float
    ) -> None:
        decision, outcome = handled.decision, handled.outcome
        if decision is None:  # pragma: no cover - handle_call always decides
            return
        status = outcome.status
        acted = status != calls.DUPLICATE  # a duplicate never reached Call Automation
        issues = ",".join(e.code for e in decision.errors)
        attributes: dict[str, str | int | float | bool] = {
            CALLED: call.called.address,
            WORKSTREAM: decision.workstream or "",
            QUEUE: decision.queue or "",
            ACTION: decision.action,
            RULE: decision.rule,
            UUI_FORM: decision.uui_form,
            UUI_LENGTH: len(call.uui) if call.uui is not None else 0,
            DECODE: "ok" if decision.uui is not None else ("error" if decision.uui_error is not None else "none"),
            CONTEXT_COUNT: len(decision.context),
            WARNING_COUNT: len(decision.warnings),
            ERROR_COUNT: len(decision.errors),
            OUTCOME: status,
            RETRYABLE: _text(outcome.retryable),
            ELAPSED_MS: round(outcome.elapsed_ms, 2),
            CA_RETRIES: scope.retries,
        }
        if issues:
            attributes[ISSUES] = issues
        if decision.uui_error is not None:
            attributes[DECODE_ERROR] = decision.uui_error.kind
        if outcome.call_connection_id:
            attributes[CALL_CONNECTION_ID] = outcome.call_connection_id
        delay = age(call.event_time, started)
        if delay is not None:
            attributes[DELIVERY_DELAY_MS] = round(delay * 1000, 1)
        to_answer = age(call.event_time, scope.answered_at or time.time()) if acted else None
        if to_answer is not None:
            attributes[TIME_TO_ANSWER_MS] = round(to_answer * 1000, 1)
        span.set_attributes(attributes)
        if status in FAILED_OUTCOMES:
            span.set_status(self.Status(self.ERROR, status))

        workstream, queue = _dim(decision.workstream), _dim(decision.queue)
        self.calls.add(
            1,
            {
                "workstream": workstream,
                "queue": queue,
                "action": decision.action,
                "rule": decision.rule,
                "outcome": status,
                "uui_form": decision.uui_form,
            },
        )
        if decision.uui_error is not None:
            self.decode_failures.add(1, {"kind": decision.uui_error.kind, "workstream": workstream})
        if decision.rule in FALLBACK_RULES:
            reason = (
                decision.errors[0].code
                if decision.errors
                else ("unknown_number" if decision.workstream is None else "no_rule_matched")
            )
            self.fallback_routes.add(
                1, {"rule": decision.rule, "reason": reason, "queue": queue, "workstream": workstream}
            )
        if status == calls.STALE:
            self.stale.add(1, {"action": decision.action, "workstream": workstream})
        elif status in (calls.DUPLICATE, calls.ALREADY_HANDLED):
            source = "this-instance" if status == calls.DUPLICATE else "call-automation"
            self.duplicates.add(1, {"event": "incoming_call", "source": source})
        if to_answer is not None:
            self.time_to_action.record(
                max(0.0, to_answer * 1000), {"action": decision.action, "queue": queue, "outcome": status}
            )

    # -- callbacks ---------------------------------------------------------------------------

    def callback(self, fn: Callable[[_S, dict[str, Any]], str], svc: _S, event: dict[str, Any]) -> str:
        kind = str(event.get("type", "")).rsplit(".", 1)[-1]
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        assert isinstance(data, dict)
        try:
            op = json.loads(data.get("operationContext") or "{}")
        except (TypeError, ValueError):
            op = {}
        op = op if isinstance(op, dict) else {}
        # Ids and routing names only: the operation context also carries the typed context values.
        picked = {
            EVENT_ID: event.get("id"),
            CORRELATION_ID: op.get("correlationId") or data.get("correlationId"),
            SERVER_CALL_ID: data.get("serverCallId"),
            CALL_CONNECTION_ID: data.get("callConnectionId"),
        }
        ids = {k: v for k, v in picked.items() if isinstance(v, str) and v}
        attributes: dict[str, str] = {**ids, CALLBACK_TYPE: kind}
        for key, name in ((QUEUE, "queue"), (WORKSTREAM, "workstream"), (TRANSFER_ATTEMPT, "attempt")):
            if isinstance(op.get(name), str):
                attributes[key] = op[name]
        info = data.get("resultInformation")
        if isinstance(info, dict) and (info.get("code") is not None or info.get("subCode") is not None):
            attributes[RESULT_CODE] = f"{info.get('code')}/{info.get('subCode')}"
        return self._in_span(
            SPAN_CALLBACK,
            attributes,
            _Scope(correlation=ids),
            lambda: fn(svc, event),
            lambda span, result: self._record_callback(span, kind, result),
            f"callback {kind}",
        )

    def _in_span(
        self,
        name: str,
        attributes: dict[str, str],
        scope: _Scope,
        run: Callable[[], _T],
        record: Callable[[Span, _T], None],
        what: str,
    ) -> _T:
        """Run the handler in a CONSUMER span with the call's correlation scope; record its result.

        Exceptions are recorded by type only (their text may carry values); telemetry that fails
        is logged and never breaks the call.
        """
        token = _scope.set(scope)
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
            _scope.reset(token)

    def _record_callback(self, span: Span, kind: str, result: str) -> None:
        # "CallConnected: transfer (primary): done" → "transfer (primary): done"
        what = result.split(": ", 1)[1] if result.startswith(f"{kind}: ") else result
        span.set_attribute(CALLBACK_RESULT, what)
        if "hung up" in what or any(status in what for status in FAILED_OUTCOMES):
            span.set_status(self.Status(self.ERROR, what))
        self.callbacks.add(1, {"type": kind or "none", "result": what})
        if what == "duplicate":
            self.duplicates.add(1, {"event": "callback", "source": "this-instance"})

    # -- Call Automation attempts ------------------------------------------------------------

    def attempt(self, next_policy: Any, request: Any) -> Any:
        context = request.context
        number = int(context.get("handoff.attempt", 0)) + 1
        context["handoff.attempt"] = number
        http = request.http_request
        method = str(http.method).upper()
        parts = urlsplit(http.url)
        operation = _operation(method, parts.path)
        scope = _scope.get()
        if number > 1:
            self.retries.add(1, {"operation": operation, "after": str(context.get("handoff.last_result", "unknown"))})
            if scope is not None:
                scope.retries += 1
        # The connection id is templated out of the name (one dependency name per operation).
        path = _CONNECTION_PATH.sub("/callConnections/{callConnectionId}", parts.path)
        default_port = 443 if parts.scheme == "https" else 80
        attributes: dict[str, str | int] = {
            "http.request.method": method,
            "url.full": f"{parts.scheme}://{parts.netloc}{path}",
            "server.address": parts.hostname or "",
            "server.port": parts.port or default_port,
            CA_OPERATION: operation,
            CA_ATTEMPT: number,
        }
        found = _CONNECTION_PATH.search(parts.path)
        if found:
            attributes[CALL_CONNECTION_ID] = found.group(1)
        with self.tracer.start_as_current_span(
            f"{method} {path}",
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
            span.set_attribute("http.response.status_code", code)
            if code >= 400:
                span.set_attribute("error.type", str(code))
                span.set_status(self.Status(self.ERROR, f"HTTP {code}"))
            if scope is not None:
                scope.answered_at = time.time()
            return response

    def _failed(self, span: Span, exc: BaseException) -> None:
        """The exception's type only: its message may quote what it failed on."""
        name = type(exc).__name__
        span.set_attribute("error.type", name)
        span.set_status(self.Status(self.ERROR, name))


def _operation(method: str, path: str) -> str:
    """Call Automation operation of a request path: answer, redirect, reject, transfer, hangup, get."""
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        name = last.rsplit(":", 1)[1]
        return _OPERATIONS.get(name, name)
    return {"DELETE": "hangup", "GET": "get"}.get(method, method.lower())


_rt: _Runtime | None = None


def enabled() -> bool:
    return _rt is not None


# ---- hooks used by the service and the Call Automation client -----------------------------------


def traced_incoming_call(
    event_age_s: EventAge,
) -> Callable[[Callable[[_S, IncomingCall], _H]], Callable[[_S, IncomingCall], _H]]:
    """Decorate ``Service.handle_call``: one ``handoff.incoming_call`` span and the call metrics.

    ``event_age_s(event_time, at)`` gives seconds from the event's eventTime to ``at`` (None if unknown).
    """

    def decorate(fn: Callable[[_S, IncomingCall], _H]) -> Callable[[_S, IncomingCall], _H]:
        @functools.wraps(fn)
        def handle_call(svc: _S, call: IncomingCall) -> _H:
            rt = _rt
            if rt is None:
                return fn(svc, call)
            return rt.incoming_call(fn, svc, call, event_age_s)

        return handle_call

    return decorate


def traced_callback(fn: Callable[[_S, dict[str, Any]], str]) -> Callable[[_S, dict[str, Any]], str]:
    """Decorate ``Service.handle_callback_event``: one ``handoff.callback`` span and the callback metrics."""

    @functools.wraps(fn)
    def handle_callback_event(svc: _S, event: dict[str, Any]) -> str:
        rt = _rt
        if rt is None:
            return fn(svc, event)
        return rt.callback(fn, svc, event)

    return handle_callback_event


class CallAutomationAttempts(HTTPPolicy):  # type: ignore[type-arg]
    """azure-core per-retry policy: a dependency span per Call Automation attempt, and the retry count."""

    def send(self, request: Any) -> Any:
        rt = _rt
        if rt is None:
            return self.next.send(request)
        return rt.attempt(self.next, request)


def call_automation_policies() -> list[HTTPPolicy]:  # type: ignore[type-arg]
    """``per_retry_policies`` for the Call Automation client: none when telemetry is off."""
    return [CallAutomationAttempts()] if _rt is not None else []


# ---- configuration -----------------------------------------------------------------------------


def _log_processor() -> Any:
    """A LogRecordProcessor (defined once OpenTelemetry is imported) that flattens the fields."""
    from opentelemetry.sdk._logs import LogRecordProcessor

    class HandoffFields(LogRecordProcessor):
        """Runs before the exporter's batch processor: rewrites each record's attributes in place."""

        def on_emit(self, log_record: Any) -> None:
            record = log_record.log_record
            attributes = dict(record.attributes or {})
            fields = attributes.pop("handoff", None)
            for key in _EXCEPTION_TEXT:
                attributes.pop(key, None)
            scope = _scope.get()
            if scope is not None:
                for key, value in scope.correlation.items():
                    if value:
                        attributes.setdefault(key, value)
            if isinstance(fields, dict):
                attributes.update(flatten("handoff", fields))
            record.attributes = attributes

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    return HandoffFields()


def _entra_client_id(authentication_string: str) -> str | None:
    """``ClientId=<id>;Authorization=AAD`` → the client id (None for a system-assigned identity)."""
    pairs = dict(part.split("=", 1) for part in authentication_string.split(";") if "=" in part)
    lowered = {k.strip().lower(): v.strip() for k, v in pairs.items()}
    return lowered.get("clientid") or None


def exporter_options(cfg: Settings) -> dict[str, Any]:
    """Our arguments to ``configure_azure_monitor``: the connection string, the ``handoff`` logger, no
    live metrics, no performance counters, no auto-instrumentation, the log field processor, and the
    managed identity when Entra ID authentication is asked for. Imports no OpenTelemetry exporter."""
    options: dict[str, Any] = {
        "connection_string": cfg.appinsights_connection_string,
        "logger_name": LOGGER_NAME,
        "enable_live_metrics": False,
        "enable_performance_counters": False,  # the platform reports the instance's CPU and memory
        "instrumentation_options": {name: {"enabled": False} for name in _INSTRUMENTATIONS},
        "log_record_processors": [_log_processor()],
    }
    if cfg.appinsights_authentication_string:
        # Entra ID ingestion (local auth is off on the component): the app's managed identity.
        # Imported here: azure.identity costs ~170 ms of import time that key-based runs never need.
        from azure.identity import ManagedIdentityCredential

        client_id = _entra_client_id(cfg.appinsights_authentication_string) or cfg.azure_client_id
        options["credential"] = ManagedIdentityCredential(client_id=client_id)
    return options


def configure(cfg: Settings, **overrides: Any) -> bool:
    """Set up the exporter once per process when a connection string is set. True when telemetry is on.

    ``overrides`` go to ``configure_azure_monitor`` on top of :func:`exporter_options` (the tests
    pass ``disable_offline_storage=True``). A failure here logs and leaves telemetry off: a call must
    not go unanswered because telemetry could not start.
    """
    global _rt
    if _rt is not None:
        return True
    if not cfg.appinsights_connection_string:
        return False
    # The distro's default detectors include azure_vm, which probes the VM metadata endpoint over
    # the network at start-up; on Functions the azure_functions detector says all there is.
    os.environ.setdefault("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "azure_functions")
    # cloud_RoleName in Application Insights: the function app's name in Azure.
    os.environ.setdefault("OTEL_SERVICE_NAME", os.environ.get("WEBSITE_SITE_NAME") or "handoff")
    try:
        # Imported here: ~300 ms of imports, paid only when telemetry is on.
        from azure.monitor.opentelemetry import configure_azure_monitor

        configure_azure_monitor(**{**exporter_options(cfg), **overrides})
        runtime = _Runtime()
    except Exception as exc:
        # About the connection string or the platform, never about a call.
        log.error("telemetry is off: Azure Monitor could not be configured: %s: %s", type(exc).__name__, exc)
        return False
    handoff = logging.getLogger(LOGGER_NAME)
    if handoff.level == logging.NOTSET:
        handoff.setLevel(logging.INFO)  # one record per call: what operators read first
    _rt = runtime
    return True


def flush(timeout_s: float = 10.0) -> bool:
    """Export everything recorded so far (spans and logs, then metrics). True when all providers flushed."""
    if _rt is None:
        return True
    from opentelemetry import _logs, metrics, trace

    millis = int(timeout_s * 1000)
    ok = True
    providers: Iterable[Any] = (trace.get_tracer_provider(), _logs.get_logger_provider(), metrics.get_meter_provider())
    for provider in providers:
        force_flush = getattr(provider, "force_flush", None)
        if callable(force_flush):
            ok = bool(force_flush(millis)) and ok
    return ok


__all__ = [
    "METRIC_CALLBACKS",
    "METRIC_CALLS",
    "METRIC_DECODE_FAILURES",
    "METRIC_DUPLICATE_EVENTS",
    "METRIC_FALLBACK_ROUTES",
    "METRIC_STALE_EVENTS",
    "METRIC_TIME_TO_ACTION",
    "METRIC_TRANSIENT_RETRIES",
    "SPAN_CALLBACK",
    "SPAN_INCOMING_CALL",
    "CallAutomationAttempts",
    "call_automation_policies",
    "configure",
    "enabled",
    "exporter_options",
    "flatten",
    "flush",
    "traced_callback",
    "traced_incoming_call",
]
