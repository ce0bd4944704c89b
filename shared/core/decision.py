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

from shared.core.acs import (
    ALREADY_HANDLED_SHAPES,
    CONFLICT_STATUS,
    RETRY_CAN_HELP_BEFORE_AGE_S,
    RINGING_CALL_OPERATIONS,
)
from shared.core.context import Issue
from shared.core.sealing import Sealer
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

    On the wire it is compact JSON ``{queue, workstream, correlationId, context[, sealed][, target,
    attempt][, leg], mac}``: ``context`` maps each context variable to its text as received, ``sealed``
    holds the ``sealed`` ones (the workstream's sensitive variables) encrypted, and ``mac``
    authenticates the rest (shared/core/sealing.py), so only a context this app wrote is acted on.
    """

    queue: str | None
    workstream: str | None
    correlation_id: str | None
    context: Mapping[str, str] = field(default_factory=dict)
    #: Set on a transfer's operation context: where the transfer went and which attempt it was.
    target: str | None = None
    attempt: TransferAttempt | None = None
    #: The variables of ``context`` that travel sealed, not in clear.
    sealed: frozenset[str] = frozenset()
    #: The call's leg (events.IncomingCall.leg): with the correlation id, the key of its record, so a
    #: callback reaching any instance finds the call's shared transfer-flow state.
    leg: str | None = None

    @classmethod
    def for_call(cls, correlation_id: str | None, decision: Decision, leg: str | None = None) -> OperationContext:
        """What the answer request carries. A transfer queue's call comes back to this app, which needs
        the whole context for the transfer: the sensitive variables travel sealed. An answer queue's
        call goes to another app, which cannot open them: it gets the non-sensitive variables only."""
        if decision.action == Action.TRANSFER:
            sealed = frozenset(decision.sensitive & decision.context_text.keys())
            context = dict(decision.context_text)
            return cls(decision.queue, decision.workstream, correlation_id, context, sealed=sealed, leg=leg)
        shown = {k: v for k, v in decision.context_text.items() if k not in decision.sensitive}
        return cls(decision.queue, decision.workstream, correlation_id, shown, leg=leg)

    def to_json(self, sealer: Sealer | None, deterministic: bool = False) -> str:
        """The wire form; unsigned only when no ``HANDOFF_CONTEXT_KEY`` is configured (no transfer queue).
        ``deterministic``: the same context gives the same text (sealer.seal's synthetic nonce)."""
        body: dict[str, Any] = {
            "queue": self.queue,
            "workstream": self.workstream,
            "correlationId": self.correlation_id,
            "context": {k: v for k, v in self.context.items() if k not in self.sealed},
        }
        sealed = {k: v for k, v in self.context.items() if k in self.sealed}
        if sealed:
            if sealer is None:
                raise ValueError("sensitive context variables can only travel sealed: HANDOFF_CONTEXT_KEY is not set")
            body["sealed"] = sealer.seal(sealed, deterministic=deterministic)
        if self.target is not None:
            body["target"] = self.target
        if self.attempt is not None:
            body["attempt"] = str(self.attempt)
        if self.leg is not None:
            body["leg"] = self.leg
        if sealer is not None:
            body["mac"] = sealer.sign(body)
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: Any, sealer: Sealer | None) -> OperationContext | None:
        """The operation context a callback echoes, or None unless this app wrote it (its mac verifies)."""
        if sealer is None or not isinstance(text, str) or not text:
            return None
        try:
            body = json.loads(text)
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        key = sealer.verify({k: v for k, v in body.items() if k != "mac"}, body.get("mac"))
        if key is None:
            return None
        context = body.get("context")
        texts = {k: v for k, v in context.items() if isinstance(v, str)} if isinstance(context, dict) else {}
        opened: dict[str, str] = {}
        if "sealed" in body:
            unsealed = sealer.unseal(body["sealed"], key)
            if unsealed is None:  # signed by us but not openable: corrupt, so not to be acted on
                return None
            opened = unsealed

        def text_of(name: str) -> str | None:
            value = body.get(name)
            return value if isinstance(value, str) else None

        attempt = text_of("attempt")
        return cls(
            queue=text_of("queue"),
            workstream=text_of("workstream"),
            correlation_id=text_of("correlationId"),
            context={**texts, **opened},
            target=text_of("target"),
            attempt=_ATTEMPTS.get(attempt) if attempt is not None else None,
            sealed=frozenset(opened),
            leg=text_of("leg"),
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


def refusal(operation: str, status: int | None, sub_code: int | None, stale: bool) -> tuple[Outcome, bool]:
    """What Call Automation's refusal of ``operation`` means, by HTTP status and sub-code (never by
    message text, except the documented IDX23010 of an expired context): (outcome, retryable)."""
    if operation in RINGING_CALL_OPERATIONS:
        if status == 400 and stale:
            return Outcome.STALE, False  # the call stopped ringing: a retry cannot help
        if status == CONFLICT_STATUS or (status, sub_code) in ALREADY_HANDLED_SHAPES:
            return Outcome.ALREADY_HANDLED, False  # someone already acted on the call: done
    elif operation == "hangup" and status == 404:
        return Outcome.ALREADY_HANDLED, False  # the call had already ended
    if status is not None and (status == 429 or status >= 500 or status == CONFLICT_STATUS):
        return Outcome.TRANSIENT, True
    return Outcome.PERMANENT, False
