"""The call's record: what Handoff decided for one leg of a call and what became of it, kept so that
whoever receives the call can look its context up, and so that every instance sees the same
transfer flow.

A redirect cannot carry headers (ACS), so a call redirected to a Teams call queue, an ACS user or
a number reaches its agent with no context; an answer queue served by another app gets only the
operation context. The record fills that gap: ACS keeps one ``correlationId`` across the legs of a
call (handbook acs.md, "After the call leaves the app"), so a record keyed by it can be found by
whoever receives the call.

- Key: ``correlationId`` (the partition) and the **leg**: the hash of the ringing call's
  ``incomingCallContext`` (the same one deliveries are deduplicated on, shared/core/events.py), so
  two deliveries of one call write one record, and a call that comes back to another of our
  numbers under the same correlation id gets a record of its own. The leg travels in the operation
  context, so a callback finds its record on any instance.
- Context: every context variable with its text **as received**, its type and whether it is
  sensitive. Sensitive values are stored only sealed (AES-256-GCM, ``HANDOFF_CONTEXT_KEY``, bound
  to the record's purpose), or not at all without a key; a lookup shows them masked unless the
  caller may see them.
- The transfer flow's state (``flow_state``, ``flow_version``): updated by the callbacks with
  optimistic concurrency (shared/adapters/store.py), so two instances never both act.

Pure: this module builds records and converts them to and from the stored entity; the store
adapter does the I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.core.decision import Action, ActionResult, Decision, Outcome
from shared.core.events import IncomingCall
from shared.core.redaction import MASK
from shared.core.routing_table import ContextVariable
from shared.core.sealing import RECORD_AAD, Sealer

#: Outcomes that leave no record of their own: the delivery that acted writes it.
UNRECORDED_OUTCOMES = frozenset({Outcome.DUPLICATE, Outcome.ALREADY_HANDLED})
#: The fields ``handoff calls show --json`` prints, in order.
VIEW_FIELDS = (
    "correlation_id",
    "called",
    "caller",
    "workstream",
    "queue",
    "rule",
    "action",
    "target",
    "outcome",
    "context",
)


@dataclass(frozen=True)
class RecordedVariable:
    name: str
    #: The text exactly as received; None for a sensitive value that was not stored (no context
    #: key) or is not shown (read without the key).
    text: str | None
    type: str = "text"
    sensitive: bool = False


@dataclass(frozen=True)
class CallRecord:
    correlation_id: str
    leg: str
    called: str | None
    caller: str | None
    workstream: str | None
    queue: str | None
    rule: str
    action: str
    #: Where the call went: the redirect or transfer target, or the answering app's callback URL.
    target: str | None
    outcome: str
    received_at: datetime
    acted_at: datetime
    expires_at: datetime
    context: tuple[RecordedVariable, ...] = ()
    uui_form: str = "none"
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    call_connection_id: str | None = None
    #: True from the answer of a transfer queue's call until its transfer flow moves on: what the
    #: stranded-call sweep looks for.
    awaiting_transfer: bool = False
    #: The transfer flow (shared/core/callback_flow.py's CallState) and its version; set by callbacks.
    flow_state: str | None = None
    flow_version: int = 0
    updated_at: datetime | None = None
    #: Set on read: the stored entity's version, for conditional updates.
    etag: str | None = field(default=None, compare=False)

    def context_text(self) -> dict[str, str]:
        """Each variable's text as received (sensitive ones only when they were read with the key)."""
        return {v.name: v.text for v in self.context if v.text is not None}


def valid_correlation_id(text: str) -> bool:
    """A correlation id a lookup may ask for: ACS's are GUIDs; anything printable up to 128
    characters is accepted (Table Storage keys exclude / \\ # ? and control characters)."""
    return 0 < len(text) <= 128 and text.isprintable() and not any(c in text for c in "/\\#?")


def for_call(
    call: IncomingCall,
    decision: Decision,
    result: ActionResult,
    variables: Mapping[str, ContextVariable] | None,
    now: datetime,
    ttl: timedelta,
) -> CallRecord | None:
    """The record of a call this delivery acted on, or None (no correlation id to find it by, or a
    duplicate whose first delivery keeps the record)."""
    if not call.correlation_id or not valid_correlation_id(call.correlation_id):
        return None
    if result.outcome in UNRECORDED_OUTCOMES:
        return None
    declared = variables or {}
    context = tuple(
        RecordedVariable(
            name,
            text,
            declared[name].type if name in declared else "text",
            name in decision.sensitive,
        )
        for name, text in decision.context_text.items()
    )
    received = call.event_time.astimezone(UTC) if call.event_time is not None else now
    target = decision.target if decision.action != Action.ANSWER else decision.callback_url
    return CallRecord(
        correlation_id=call.correlation_id,
        leg=call.leg,
        called=call.called_address,
        caller=call.caller.address if call.caller is not None else None,
        workstream=decision.workstream,
        queue=decision.queue,
        rule=decision.rule,
        action=str(decision.action),
        target=target,
        outcome=str(result.outcome),
        received_at=received,
        acted_at=now,
        expires_at=now + ttl,
        context=context,
        uui_form=decision.uui_form,
        warnings=tuple(w.code for w in decision.warnings) + tuple(f"event_{w}" for w in call.warnings),
        errors=tuple(e.code for e in decision.errors),
        call_connection_id=result.call_connection_id,
        awaiting_transfer=decision.action == Action.TRANSFER and result.outcome == Outcome.DONE,
    )


# ---- the stored entity (Azure Table Storage properties) -------------------------------------

#: Properties only the transfer flow writes; the record's own write never sets them, so a record
#: written after a callback moved the flow on does not move it back.
FLOW_PROPERTIES = ("FlowState", "FlowVersion", "UpdatedAt")


def to_entity(record: CallRecord, sealer: Sealer | None) -> dict[str, Any]:
    """The entity to store. Sensitive values go only sealed, and only with a key."""
    sensitive = {v.name: v.text for v in record.context if v.sensitive and v.text is not None}
    entity: dict[str, Any] = {
        "PartitionKey": record.correlation_id,
        "RowKey": record.leg,
        "Called": record.called or "",
        "Caller": record.caller or "",
        "Workstream": record.workstream or "",
        "Queue": record.queue or "",
        "Rule": record.rule,
        "Action": record.action,
        "Target": record.target or "",
        "Outcome": record.outcome,
        "UuiForm": record.uui_form,
        "Context": json.dumps(
            [
                {"name": v.name, "type": v.type, "sensitive": v.sensitive}
                | ({} if v.sensitive or v.text is None else {"text": v.text})
                for v in record.context
            ],
            separators=(",", ":"),
            ensure_ascii=False,
        ),
        "Warnings": ",".join(record.warnings),
        "Errors": ",".join(record.errors),
        "CallConnectionId": record.call_connection_id or "",
        "ReceivedAt": record.received_at,
        "ActedAt": record.acted_at,
        "ExpiresAt": record.expires_at,
        "AwaitingTransfer": record.awaiting_transfer,
    }
    if sensitive and sealer is not None:
        entity["Sealed"] = sealer.seal(sensitive, RECORD_AAD)
    return entity


def from_entity(entity: Mapping[str, Any], sealer: Sealer | None = None, etag: str | None = None) -> CallRecord:
    """A stored entity as a record. Sensitive values are opened only when ``sealer`` is given."""

    def text(name: str) -> str | None:
        value = entity.get(name)
        return value if isinstance(value, str) and value else None

    def when(name: str) -> datetime | None:
        value = entity.get(name)
        return value.astimezone(UTC) if isinstance(value, datetime) else None

    opened = sealer.unseal_any(entity.get("Sealed"), RECORD_AAD) if sealer is not None else None
    context: list[RecordedVariable] = []
    try:
        items = json.loads(entity.get("Context") or "[]")
    except ValueError:
        items = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        name, sensitive = item["name"], bool(item.get("sensitive"))
        value = (opened or {}).get(name) if sensitive else item.get("text")
        context.append(
            RecordedVariable(name, value if isinstance(value, str) else None, str(item.get("type", "text")), sensitive)
        )
    epoch = datetime.fromtimestamp(0, UTC)
    version = entity.get("FlowVersion")
    return CallRecord(
        correlation_id=str(entity.get("PartitionKey", "")),
        leg=str(entity.get("RowKey", "")),
        called=text("Called"),
        caller=text("Caller"),
        workstream=text("Workstream"),
        queue=text("Queue"),
        rule=text("Rule") or "",
        action=text("Action") or "",
        target=text("Target"),
        outcome=text("Outcome") or "",
        received_at=when("ReceivedAt") or epoch,
        acted_at=when("ActedAt") or epoch,
        expires_at=when("ExpiresAt") or epoch,
        context=tuple(context),
        uui_form=text("UuiForm") or "none",
        warnings=tuple(w for w in (text("Warnings") or "").split(",") if w),
        errors=tuple(e for e in (text("Errors") or "").split(",") if e),
        call_connection_id=text("CallConnectionId"),
        awaiting_transfer=entity.get("AwaitingTransfer") is True,
        flow_state=text("FlowState"),
        flow_version=version if isinstance(version, int) and not isinstance(version, bool) else 0,
        updated_at=when("UpdatedAt"),
        etag=etag,
    )


# ---- what a lookup shows ----------------------------------------------------------------------


def view(record: CallRecord, reveal: bool = False) -> dict[str, Any]:
    """The record as a lookup shows it: ``VIEW_FIELDS``, each context variable's text as received,
    a sensitive one masked (``***``) unless ``reveal`` (and then null when it was not stored)."""
    context = {v.name: (v.text if reveal else MASK) if v.sensitive else v.text for v in record.context}
    return {
        "correlation_id": record.correlation_id,
        "called": record.called,
        "caller": record.caller,
        "workstream": record.workstream,
        "queue": record.queue,
        "rule": record.rule,
        "action": record.action,
        "target": record.target,
        "outcome": record.outcome,
        "context": context,
    }


def detail(record: CallRecord, reveal: bool = False) -> dict[str, Any]:
    """:func:`view` with the leg, its times, the transfer flow's state and the context's types."""
    return {
        **view(record, reveal),
        "leg": record.leg,
        "state": record.flow_state or ("answered" if record.awaiting_transfer else None),
        "received_at": record.received_at.isoformat(),
        "acted_at": record.acted_at.isoformat(),
        "expires_at": record.expires_at.isoformat(),
        "types": {v.name: v.type for v in record.context},
        "sensitive": sorted(v.name for v in record.context if v.sensitive),
        "uui_form": record.uui_form,
        "warnings": list(record.warnings),
        "errors": list(record.errors),
    }


def with_flow(record: CallRecord, state: str, version: int, now: datetime) -> CallRecord:
    return replace(record, flow_state=state, flow_version=version, updated_at=now, awaiting_transfer=False)
