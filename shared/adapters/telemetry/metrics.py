"""The ``handoff`` meter's instruments → Application Insights ``customMetrics``.

Dimensions are routing names and outcomes only (queue, action, rule, error kind), never a value.
"""

from __future__ import annotations

from typing import Any

from shared.adapters.telemetry.names import (
    METRIC_CALLBACK_REJECTIONS,
    METRIC_CALLBACKS,
    METRIC_CALLS,
    METRIC_DECODE_FAILURES,
    METRIC_DUPLICATE_EVENTS,
    METRIC_FALLBACK_ROUTES,
    METRIC_STALE_EVENTS,
    METRIC_STORE_RECORDS_LOST,
    METRIC_STORE_WRITE_TIME,
    METRIC_TIME_TO_ACTION,
    METRIC_TRANSIENT_RETRIES,
)
from shared.core.decision import FALLBACK_RULES, ActionResult, Decision, Outcome


def _dim(value: str | None) -> str:
    """A metric dimension value: never empty, so a missing queue is a visible 'none'."""
    return value or "none"


class Instruments:
    def __init__(self) -> None:
        from opentelemetry import metrics

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
        self.callback_rejections = meter.create_counter(
            METRIC_CALLBACK_REJECTIONS,
            unit="{request}",
            description="Callback requests refused before any event was read, by reason (keys_unavailable: alert)",
        )
        self.records_lost = meter.create_counter(
            METRIC_STORE_RECORDS_LOST,
            unit="{record}",
            description="Call records the store never took after every retry (a lookup will not find the call)",
        )
        self.store_write_time = meter.create_histogram(
            METRIC_STORE_WRITE_TIME, unit="ms", description="A call record's time from queued to written"
        )

    def call(self, decision: Decision, result: ActionResult, to_answer_s: float | None) -> None:
        """The metrics of one handled IncomingCall."""
        outcome = result.outcome
        workstream, queue = _dim(decision.workstream), _dim(decision.queue)
        self.calls.add(
            1,
            {
                "workstream": workstream,
                "queue": queue,
                "action": str(decision.action),
                "rule": decision.rule,
                "outcome": str(outcome),
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
        if outcome == Outcome.STALE:
            self.stale.add(1, {"action": str(decision.action), "workstream": workstream})
        elif outcome in (Outcome.DUPLICATE, Outcome.ALREADY_HANDLED):
            source = "this-instance" if outcome == Outcome.DUPLICATE else "call-automation"
            self.duplicates.add(1, {"event": "incoming_call", "source": source})
        if to_answer_s is not None:
            self.time_to_action.record(
                max(0.0, to_answer_s * 1000), {"action": str(decision.action), "queue": queue, "outcome": str(outcome)}
            )

    def callback(self, kind: str, result: str, duplicate: bool) -> None:
        """The metrics of one callback event."""
        self.callbacks.add(1, {"type": kind or "none", "result": result})
        if duplicate:
            self.duplicates.add(1, {"event": "callback", "source": "this-instance"})

    def retry(self, operation: str, after: Any) -> None:
        self.retries.add(1, {"operation": operation, "after": str(after)})

    def callback_rejected(self, reason: str) -> None:
        self.callback_rejections.add(1, {"reason": reason})

    def store_record_lost(self, queue: str | None) -> None:
        self.records_lost.add(1, {"queue": _dim(queue)})

    def store_record_written(self, seconds: float) -> None:
        self.store_write_time.record(seconds * 1000)
