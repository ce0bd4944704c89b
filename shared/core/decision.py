"""What the app decided for a call, what became of it, and what it tells Call Automation to echo back.

- :class:`Decision`: the pure pipeline's answer for one IncomingCall (``routing.route``): the
  queue, its action and the action's parameters, the typed context and its text as received.
- :class:`Outcome` / :class:`ActionResult`: what became of a Call Automation request, as the
  adapter classifies it; logs, telemetry and the local run report these names.
- :class:`OperationContext`: the JSON this app puts in ``operationContext`` when it answers or
  transfers. ACS echoes it in every callback of that request (handbook acs.md, "Mid-call
  callbacks"), so the callback flow knows the call's queue, workstream, context and transfer
  attempt without any state of this process.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from shared.core.acs import RETRY_CAN_HELP_BEFORE_AGE_S
from shared.core.context import Issue
from shared.core.uui import AVAYA_SHARED, DecodedUUI, UUIError
from shared.core.values import Value

#: ``Decision.rule`` when no rule of the workstream decided.
RULE_FALLBACK = "fallback"
RULE_INVALID_CONTEXT = "invalid-context"
RULE_UNKNOWN_NUMBER = "unknown-number"
#: Rules that are not a match of the workstream's own rules.
FALLBACK_RULES = frozenset({RULE_FALLBACK, RULE_INVALID_CONTEXT, RULE_UNKNOWN_NUMBER})


class Action(StrEnum):
    """What Call Automation does with a ringing call (a queue's ``action``)."""

    ANSWER = "answer"
    REDIRECT = "redirect"
    TRANSFER = "transfer"  # answered by this app, then transferred on CallConnected
    REJECT = "reject"


class Outcome(StrEnum):
    """What became of a call's action (or of a delivery that needed none)."""

    DONE = "done"
    DUPLICATE = "duplicate"  # this process already handled (or is handling) the call
    ALREADY_HANDLED = "already-handled"  # Call Automation says someone already acted on it
    STALE = "stale"  # the incomingCallContext expired: the call stopped ringing
    TRANSIENT = "transient-failure"
    PERMANENT = "permanent-failure"


#: Outcomes that mean the call did not get its action.
FAILED_OUTCOMES = frozenset({Outcome.PERMANENT, Outcome.TRANSIENT, Outcome.STALE})


class TransferAttempt(StrEnum):
    PRIMARY = "primary"  # to the queue the rules chose
    FALLBACK = "fallback"  # to the workstream's fallback queue, after the primary failed


_ATTEMPTS = {attempt.value: attempt for attempt in TransferAttempt}


@dataclass(frozen=True)
class Decision:
    action: Action
    queue: str | None
    rule: str
    workstream: str | None
    target: str | None = None
    callback_url: str | None = None
    uui_format: str | None = None
    reject_reason: str | None = None
    #: Each context variable's typed value (what rules compared).
    context: Mapping[str, Value] = field(default_factory=dict)
    #: Each context variable's text exactly as received (what leaves the app).
    context_text: Mapping[str, str] = field(default_factory=dict)
    sensitive: frozenset[str] = frozenset()
    #: The workstream's uui.positional names, to label (and redact) positional values.
    positional_names: tuple[str, ...] = ()
    uui: DecodedUUI | None = None
    uui_error: UUIError | None = None
    warnings: tuple[Issue, ...] = ()
    errors: tuple[Issue, ...] = ()

    @property
    def uui_form(self) -> str:
        """How the UUI arrived: none, plain, hex, hex;pd=N, avaya-shared, or invalid (for logs and telemetry)."""
        if self.uui is not None:
            if self.uui.items is not None:
                return AVAYA_SHARED
            return (
                f"hex;pd={self.uui.pd}" if self.uui.encoding == "hex" and self.uui.pd is not None else self.uui.encoding
            )
        return "invalid" if self.uui_error is not None else "none"

    @property
    def decode(self) -> str:
        """ok | error | none: whether a User-to-User value arrived and decoded."""
        return "ok" if self.uui is not None else ("error" if self.uui_error is not None else "none")


@dataclass(frozen=True)
class ActionResult:
    """What became of one Call Automation request (or of a delivery that needed none)."""

    outcome: Outcome
    action: str  # answer | redirect | reject | transfer | hangup | none
    detail: str = ""
    call_connection_id: str | None = None
    elapsed_ms: float = 0.0
    #: True when a redelivery of the same event could still succeed (Event Grid should retry).
    retryable: bool = False

    @property
    def failed(self) -> bool:
        return self.outcome in FAILED_OUTCOMES


@dataclass(frozen=True)
class OperationContext:
    """The ``operationContext`` of a request this app made, as ACS echoes it in callbacks.

    On the wire it is compact JSON ``{queue, workstream, correlationId, context[, target,
    attempt]}``; ``context`` maps each context variable to its text as received.
    """

    queue: str | None
    workstream: str | None
    correlation_id: str | None
    context: Mapping[str, str] = field(default_factory=dict)
    #: Set on a transfer's operation context: where the transfer went and which attempt it was.
    target: str | None = None
    attempt: TransferAttempt | None = None

    @classmethod
    def for_call(cls, correlation_id: str | None, decision: Decision) -> OperationContext:
        return cls(decision.queue, decision.workstream, correlation_id, dict(decision.context_text))

    def to_json(self) -> str:
        body: dict[str, Any] = {
            "queue": self.queue,
            "workstream": self.workstream,
            "correlationId": self.correlation_id,
            "context": dict(self.context),
        }
        if self.target is not None:
            body["target"] = self.target
        if self.attempt is not None:
            body["attempt"] = str(self.attempt)
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: Any) -> OperationContext | None:
        """The operation context a callback echoes: empty when the callback carries none (a hang-up's
        CallDisconnected) or unreadable JSON, None when it is JSON but not an object (not ours)."""
        body: Any = {}
        if isinstance(text, str) and text:
            try:
                body = json.loads(text)
            except ValueError:
                body = {}
        if not isinstance(body, dict):
            return None
        strings = {k: body.get(k) if isinstance(body.get(k), str) else None for k in ("queue", "workstream")}
        correlation = body.get("correlationId")
        context = body.get("context")
        attempt = body.get("attempt")
        target = body.get("target")
        return cls(
            queue=strings["queue"],
            workstream=strings["workstream"],
            correlation_id=correlation if isinstance(correlation, str) else None,
            context={k: v for k, v in context.items() if isinstance(v, str)} if isinstance(context, dict) else {},
            target=target if isinstance(target, str) else None,
            attempt=_ATTEMPTS.get(attempt) if isinstance(attempt, str) else None,
        )


def after_transient(result: ActionResult, event_age_s: float | None) -> ActionResult:
    """A request that failed transiently (after azure-core's retries) asks Event Grid to redeliver the
    event only while a redelivery can still reach the ringing call; an old event is given up, logged."""
    can_help = event_age_s is None or event_age_s < RETRY_CAN_HELP_BEFORE_AGE_S
    if can_help:
        return replace(result, retryable=True)
    return replace(
        result,
        detail=f"{result.detail}; the event is {event_age_s:.0f}s old, a redelivery cannot help",
        retryable=False,
    )
