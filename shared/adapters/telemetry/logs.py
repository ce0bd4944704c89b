"""Log records → Application Insights ``traces``: flat string dimensions and the call's correlation.

The ``handoff`` logger's records carry ``extra={"handoff": {...}}`` (already masked by
shared/core/redaction.py); the processor here flattens those fields into one string dimension
each (``handoff.queue``, ``handoff.context.Intent``...), adds the correlation fields of the call
being handled on this thread, and drops exception text (it may quote input).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Exception text may quote input; records keep the exception's type only.
_EXCEPTION_TEXT = ("exception.message", "exception.stacktrace")


@dataclass
class Scope:
    """The call being handled on this thread: its correlation fields, and its Call Automation attempts."""

    correlation: dict[str, str]
    retries: int = 0
    answered_at: float | None = None  # wall clock when Call Automation last answered (any status)
    #: Before the exporter is ready: where the call's attempts and log records are kept (deferred.py).
    recorded: Any = None


current_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("handoff_telemetry_scope", default=None)


def text(value: Any) -> str:
    """A dimension value as text: flags as true/false, floats with at most two decimals."""
    if type(value) is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


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
                out[f"{prefix}.{key}"] = " | ".join(text(v) for v in value)
        else:
            out[f"{prefix}.{key}"] = text(value)
    return out


def record_processor() -> Any:
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
            scope = current_scope.get()
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


def exporter_handlers() -> list[logging.Handler]:
    """The exporter's log handlers on the ``handoff`` logger (OpenTelemetry's LoggingHandler: the
    distro installs opentelemetry-instrumentation-logging's, not the SDK's, so match by origin)."""
    return [
        h
        for h in logging.getLogger("handoff").handlers
        if type(h).__name__ == "LoggingHandler" and type(h).__module__.startswith("opentelemetry")
    ]


def emit_to_exporter(record: logging.LogRecord) -> None:
    """Hand a record kept before the exporter was ready to the exporter's handler on the ``handoff``
    logger, as it would have been handed live (its own time; the current span, if any)."""
    for handler in exporter_handlers():
        handler.handle(record)
