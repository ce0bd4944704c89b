"""One IncomingCall → one Decision: which workstream owns the call, its typed context, which queue.

The whole pure pipeline is :func:`route`. It never raises for a well-formed IncomingCall: every
failure has a defined outcome, recorded in the Decision's ``rule``, ``warnings`` and ``errors``:

- the called number belongs to no workstream, or ``data.to`` cannot be read → the top-level
  ``default_queue`` (rule ``unknown-number``), or, without one, the call is rejected with reason
  ``none`` — a call to a number nobody owns must not ring unanswered for 30 s;
- a field of the event that cannot be read (the caller, the custom context) → a warning naming it,
  and the call is routed without it;
- the User-to-User value cannot be decoded, or a value does not fit its variable's type → the
  workstream's ``invalid_context_queue`` (or its fallback queue), rule ``invalid-context``;
- no rule matches (or no context arrived) → the ``fallback_queue``, rule ``fallback``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.core import uui
from shared.core.context import Context, Issue, map_context
from shared.core.decision import RULE_FALLBACK, RULE_INVALID_CONTEXT, RULE_UNKNOWN_NUMBER, Action, Decision
from shared.core.events import IncomingCall
from shared.core.routing_table import (
    AnswerQueue,
    CompiledCondition,
    CompiledRule,
    CompiledWorkstream,
    RedirectQueue,
    RejectQueue,
    Routing,
    TransferQueue,
)
from shared.core.uui import UUIError
from shared.core.values import Value


def _holds(cond: CompiledCondition, values: Mapping[str, Value]) -> bool:
    present = cond.variable in values
    if cond.op == "exists":
        return present is cond.operand
    if not present:
        return False
    value = values[cond.variable]
    if cond.ignore_case and isinstance(value, str):
        value = value.casefold()
    op, operand = cond.op, cond.operand
    if op == "eq":
        return bool(value == operand)
    if op == "ne":
        return bool(value != operand)
    if op == "in":
        return value in operand
    if op == "not_in":
        return value not in operand
    if op == "matches":
        return isinstance(value, str) and operand.search(value) is not None
    # Ordering operators are only accepted on number variables (checked at load time).
    if op == "lt":
        return bool(value < operand)
    if op == "lte":
        return bool(value <= operand)
    if op == "gt":
        return bool(value > operand)
    return bool(value >= operand)  # gte


def first_match(rules: tuple[CompiledRule, ...], values: Mapping[str, Value]) -> CompiledRule | None:
    """Route-to-queue rules in order; the first whose conditions all hold wins."""
    for rule in rules:
        if all(_holds(c, values) for c in rule.conditions):
            return rule
    return None


def _call_values(call: IncomingCall) -> dict[str, Value]:
    """caller and called: the E.164 number of a phone party, the raw id of any other."""
    values: dict[str, Value] = {}
    if call.caller is not None:
        values["caller"] = call.caller.address
    if call.called is not None:
        values["called"] = call.called.address
    return values


def _queue_fields(routing: Routing, queue_name: str, rule: str) -> dict[str, Any]:
    """The Decision fields that send the call to a queue: its action and the action's parameters."""
    queue = routing.queues[queue_name]
    fields: dict[str, Any] = {"action": Action(queue.action), "queue": queue_name, "rule": rule}
    if isinstance(queue, AnswerQueue):
        fields["callback_url"] = queue.callback_url
    elif isinstance(queue, RedirectQueue):
        fields["target"] = queue.target
    elif isinstance(queue, TransferQueue):
        fields["target"] = queue.target
        fields["uui_format"] = queue.uui_format
    elif isinstance(queue, RejectQueue):
        fields["reject_reason"] = queue.reason
    return fields


def _decode(call: IncomingCall, ws: CompiledWorkstream | None) -> tuple[uui.DecodedUUI | None, uui.UUIError | None]:
    if call.uui is None:
        return None, None
    settings = ws.uui if ws is not None else None
    try:
        decoded = uui.decode(
            call.uui,
            max_length=settings.max_length if settings else uui.ACS_UUI_MAX,
            default_encoding=settings.default_encoding if settings else "plain",
            profile=settings.profile if settings else "standard",
            item_names=settings.items if settings else None,
        )
    except UUIError as exc:
        # Kept on the Decision without its traceback: the frames would form reference cycles
        # that only the garbage collector frees (measured: p99 of this path doubled).
        return None, exc.with_traceback(None)
    return decoded, None


def route(call: IncomingCall, routing: Routing) -> Decision:
    """Decide what happens to one transferred call. Pure and fast: no I/O."""
    # Fields of the event that could not be read: the call still gets its action (events.py).
    unread = tuple(
        Issue("unreadable_field", None, f"{message}; the call is routed without it") for message in call.warnings
    )
    address = call.called_address
    ws = routing.by_number.get(address) if address is not None else None
    decoded, error = _decode(call, ws)
    if ws is None:
        owner = (
            f"called number {address} is not owned by any workstream"
            if address is not None
            else "the called party (data.to) cannot be read, so no workstream owns the call"
        )
        if routing.default_queue is not None:
            fields = _queue_fields(routing, routing.default_queue, RULE_UNKNOWN_NUMBER)
            noted = (*unread, Issue("unknown_number", None, owner))
            return Decision(workstream=None, uui=decoded, uui_error=error, warnings=noted, **fields)
        # A call nobody owns must not ring unanswered for 30 s: reject it.
        issue = Issue("unknown_number", None, owner + " and no default_queue is configured; rejected")
        return Decision(
            action=Action.REJECT,
            queue=None,
            rule=RULE_UNKNOWN_NUMBER,
            workstream=None,
            reject_reason="none",
            uui=decoded,
            uui_error=error,
            warnings=unread,
            errors=(issue,),
        )

    headers = tuple((h.name, h.value, f"{h.source} header {h.header}") for h in call.custom_headers)
    ctx: Context = map_context(
        ws,
        decoded.pairs if decoded else None,
        decoded.positional if decoded else None,
        headers,
    )
    warnings: tuple[Issue, ...] = unread + ctx.warnings
    if decoded is not None and decoded.warnings:
        warnings = tuple(Issue("uui_warning", None, w) for w in decoded.warnings) + warnings
    errors: tuple[Issue, ...] = ctx.errors
    if error is not None:
        errors = (
            Issue(f"uui_{error.kind}", None, f"User-to-User ({call.uui_header}): {error.message}"),
            *errors,
        )
    if errors:
        fields = _queue_fields(routing, ws.invalid_context_queue, RULE_INVALID_CONTEXT)
    else:
        values = ctx.values
        if ws.tests_the_call:
            # The built-in variables (config.CALL_VARIABLES): an unreadable caller is absent, so a
            # rule testing it does not match.
            values = {**values, **_call_values(call)}
        rule = first_match(ws.rules, values)
        if rule is None:
            fields = _queue_fields(routing, ws.fallback_queue, RULE_FALLBACK)
        else:
            fields = _queue_fields(routing, rule.queue, rule.name)
    return Decision(
        workstream=ws.name,
        context=ctx.values,
        context_text=ctx.texts,
        sensitive=ws.sensitive,
        positional_names=ws.uui.positional,
        uui=decoded,
        uui_error=error,
        warnings=warnings,
        errors=errors,
        **fields,
    )
