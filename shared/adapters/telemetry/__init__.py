"""Telemetry: OpenTelemetry → Application Insights. The only package that imports either.

- ``configure``: turns it on at start-up when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set.
- ``spans``: one ``handoff.incoming_call`` span per IncomingCall and one ``handoff.callback`` span per
  callback event (``requests``), a CLIENT span per Call Automation attempt (``dependencies``).
- ``metrics``: the ``handoff`` meter (``customMetrics``), the call records' writes and losses among them.
- ``logs``: the ``handoff`` logger's records (``traces``) with flat dimensions and the call's ids.
- ``names``: every name the above emit (docs/operate.md lists them).

The app calls the hooks below; each is a single ``if`` while telemetry is off. Redaction by
construction: spans and metrics are built from names, counts, lengths, ids and the routing outcome,
never from a context value or the raw User-to-User text; log fields arrive already masked by
shared/core/redaction.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from azure.core.pipeline.policies import HTTPPolicy

from shared.adapters.telemetry.configure import configure, entra_client_id, exporter_options, flush, state
from shared.adapters.telemetry.logs import current_scope, flatten
from shared.adapters.telemetry.spans import HandledCall, call_ids, callback_attributes
from shared.core.call_record import CallRecord
from shared.core.callback_flow import CallbackEvent, CallbackResult
from shared.core.events import IncomingCall

_H = TypeVar("_H", bound=HandledCall)


def enabled() -> bool:
    """True when telemetry is on: configured, or about to be (deferred.py)."""
    return state.runtime is not None or state.deferred is not None


def incoming_call(call: IncomingCall, run: Callable[[], _H]) -> _H:
    """``run()`` handles the call: one ``handoff.incoming_call`` span around it, and the call metrics."""
    runtime = state.runtime
    if runtime is not None:
        return runtime.incoming_call(call, run)
    deferred = state.deferred
    return run() if deferred is None else deferred.run(call, call_ids(call), run)


def callback(event: CallbackEvent, run: Callable[[], CallbackResult]) -> CallbackResult:
    """``run()`` handles the callback event: one ``handoff.callback`` span around it, and its metrics."""
    runtime = state.runtime
    if runtime is not None:
        return runtime.callback(event, run)
    deferred = state.deferred
    return run() if deferred is None else deferred.run(event, callback_attributes(event)[0], run)


def callback_rejected(reason: str) -> None:
    """Count a callback request refused before any event was read (no span: nothing was handled)."""
    runtime = state.runtime
    if runtime is not None:
        runtime.metrics.callback_rejected(reason)
    elif state.deferred is not None:
        state.deferred.rejections[reason] += 1


def store_record_lost(record: CallRecord, reason: str) -> None:
    """Count a call record the store never took (the writer has logged why)."""
    runtime = state.runtime
    if runtime is not None:
        runtime.metrics.store_record_lost(record.queue)
    elif state.deferred is not None:
        state.deferred.records_lost[record.queue] += 1


def store_record_written(record: CallRecord, seconds: float) -> None:
    """A call record's time from queued to written (not kept before the exporter is ready)."""
    runtime = state.runtime
    if runtime is not None:
        runtime.metrics.store_record_written(seconds)


class CallAutomationAttempts(HTTPPolicy):  # type: ignore[type-arg]
    """azure-core per-retry policy: a dependency span per Call Automation attempt, and the retry count."""

    def send(self, request: Any) -> Any:
        deferred = state.deferred
        scope = current_scope.get()
        if deferred is not None and scope is not None and scope.recorded is not None:
            # A call that began before the exporter was ready: all of its attempts are recorded
            # with it, even those sent after the switch, so its export is whole.
            return deferred.attempt(self.next, request)
        runtime = state.runtime
        if runtime is not None:
            return runtime.attempt(self.next, request)
        return self.next.send(request) if deferred is None else deferred.attempt(self.next, request)


def call_automation_policies() -> list[HTTPPolicy]:  # type: ignore[type-arg]
    """``per_retry_policies`` for the Call Automation client: none when telemetry is off."""
    return [CallAutomationAttempts()] if enabled() else []


__all__ = [
    "CallAutomationAttempts",
    "call_automation_policies",
    "callback",
    "callback_rejected",
    "configure",
    "enabled",
    "entra_client_id",
    "exporter_options",
    "flatten",
    "flush",
    "incoming_call",
    "store_record_lost",
    "store_record_written",
]
