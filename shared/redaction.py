"""What may leave the process about a call: the one place sensitive values are masked.

Values of context variables flagged ``sensitive`` (account numbers, PINs) and the raw User-to-User
text are replaced before anything is printed, logged or exported. Callers pass ``reveal=True`` only
for an operator's explicit ``handoff route --reveal`` on their own machine.
"""

from __future__ import annotations

from typing import Any

from shared import uui
from shared.context import to_json_value
from shared.events import IncomingCall
from shared.routing import Decision

MASK = "***"


def masked_context(decision: Decision, *, reveal: bool = False) -> dict[str, Any]:
    return {
        name: to_json_value(value) if reveal or name not in decision.sensitive else MASK
        for name, value in decision.context.items()
    }


def uui_view(decision: Decision, *, reveal: bool = False) -> dict[str, Any] | None:
    """The decode object of ``handoff decode --json``, with sensitive parts masked."""
    if decision.uui is None and decision.uui_error is None:
        return None
    if decision.uui is not None:
        view = uui.report_decoded(decision.uui)
    else:
        assert decision.uui_error is not None
        view = uui.report_error(decision.uui_error)
    if reveal:
        return view
    text = view.get("text")
    if isinstance(text, str):
        view["text"] = f"{MASK} ({len(text)} characters)"
    pairs = view.get("pairs")
    if isinstance(pairs, dict):
        view["pairs"] = {k: MASK if k in decision.sensitive else v for k, v in pairs.items()}
    positional = view.get("positional")
    if isinstance(positional, list):
        names = decision.positional_names
        view["positional"] = [
            MASK if i < len(names) and names[i] in decision.sensitive else v for i, v in enumerate(positional)
        ]
    return view


def decision_view(call: IncomingCall, decision: Decision, *, reveal: bool = False) -> dict[str, Any]:
    """The JSON object of ``handoff route --json``."""
    return {
        "event_id": call.event_id,
        "correlation_id": call.correlation_id,
        "called": call.called.address,
        "workstream": decision.workstream,
        "uui": uui_view(decision, reveal=reveal),
        "context": masked_context(decision, reveal=reveal),
        "queue": decision.queue,
        "action": decision.action,
        "target": decision.target or decision.callback_url,
        "rule": decision.rule,
        "warnings": [i.message for i in decision.warnings],
        "errors": [i.message for i in decision.errors],
    }
