"""What may leave the process about a call: the one place sensitive values are masked.

Values of context variables flagged ``sensitive`` (account numbers, PINs) and the raw User-to-User
text are replaced before anything is printed, logged or exported. Callers pass ``reveal=True`` only
for an operator's explicit ``handoff route --reveal`` on their own machine.

With a key (setting ``HANDOFF_REDACTION_KEY``) a sensitive value is replaced by a short keyed hash
instead of ``***``: ``hmac:`` + the first 12 hex digits of HMAC-SHA256(key, name + NUL + value).
The same value of the same variable always gives the same hash, so an operator who holds the key
can find the calls that carried a given account number (``handoff hash``) without the value itself
ever reaching a log. Without the key a hash cannot be computed or reversed; with it, a short
value such as a 4-digit PIN can be found by trying all of them, so the key is as secret as the data.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from shared.core import uui
from shared.core.decision import Decision
from shared.core.events import IncomingCall
from shared.core.values import Value, to_text

MASK = "***"
HASH_PREFIX = "hmac:"
HASH_HEX_DIGITS = 12


def keyed_hash(key: str, name: str, value: Value) -> str:
    """``hmac:`` + 12 hex digits of HMAC-SHA256(key, name NUL value): matchable, not reversible without key.

    A received value is hashed as the text the IVR sent, so ``handoff hash`` with that text finds it."""
    message = f"{name}\x00{to_text(value)}".encode()
    return HASH_PREFIX + hmac.new(key.encode(), message, hashlib.sha256).hexdigest()[:HASH_HEX_DIGITS]


def masked_context(decision: Decision, *, reveal: bool = False, key: str | None = None) -> dict[str, str]:
    """The decision's context as received, each sensitive value masked (``***``) or keyed-hashed."""
    return {
        name: text if reveal or name not in decision.sensitive else (keyed_hash(key, name, text) if key else MASK)
        for name, text in decision.context_text.items()
    }


def uui_view(
    decision: Decision, *, reveal: bool = False, sensitive_anywhere: frozenset[str] = frozenset()
) -> dict[str, Any] | None:
    """The decode object of ``handoff decode --json``, with sensitive parts masked.

    ``sensitive_anywhere`` holds the case-folded names of every workstream's sensitive variables:
    a key that differs only in case (``accountnumber``) is masked too, and so is a value whose name
    cannot be known (a positional value of a call no workstream owns, or past the named ones)."""
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
        view["pairs"] = {
            k: MASK if k in decision.sensitive or k.casefold() in sensitive_anywhere else v for k, v in pairs.items()
        }
    items = view.get("items")
    if isinstance(items, list):
        # Each Avaya shared UUI item names the context variable it filled.
        view["items"] = [
            {**item, "value": MASK}
            if item["name"] in decision.sensitive or item["name"].casefold() in sensitive_anywhere
            else item
            for item in items
        ]
    positional = view.get("positional")
    if isinstance(positional, list):
        names = decision.positional_names
        view["positional"] = [
            v if i < len(names) and names[i] not in decision.sensitive else MASK for i, v in enumerate(positional)
        ]
    return view


def decision_view(
    call: IncomingCall, decision: Decision, *, reveal: bool = False, sensitive_anywhere: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The JSON object of ``handoff route --json``."""
    return {
        "event_id": call.event_id,
        "correlation_id": call.correlation_id,
        "called": call.called_address,
        "workstream": decision.workstream,
        "uui": uui_view(decision, reveal=reveal, sensitive_anywhere=sensitive_anywhere),
        "context": masked_context(decision, reveal=reveal),
        "queue": decision.queue,
        "action": decision.action,
        "target": decision.target or decision.callback_url,
        "rule": decision.rule,
        "warnings": [i.message for i in decision.warnings],
        "errors": [i.message for i in decision.errors],
    }


def uui_header_value(value: str, *, reveal: bool = False) -> str:
    """A raw User-to-User header value as shown: its data masked with its length (hex carries the
    same account numbers as plain text), only its RFC 7433 parameters (``;encoding=hex``,
    ``;pd=4``, purpose, content) kept. In a plain value ``;`` also separates pairs, which stay masked."""
    if reveal:
        return value
    segments = value.split(";")
    params = [s.strip() for s in segments[1:] if s.split("=", 1)[0].strip().lower() in uui.HEADER_PARAMS]
    data = ";".join(s for i, s in enumerate(segments) if i == 0 or s.strip() not in params)
    return f"{MASK} ({len(data.strip())} characters)" + "".join(f";{p}" for p in params)


def header_value(
    variable: str,
    value: str,
    decision: Decision,
    *,
    reveal: bool = False,
    sensitive_anywhere: frozenset[str] = frozenset(),
) -> str:
    """A custom header's value as shown: masked when it fills a sensitive variable of the call's
    workstream, or one of any workstream in another spelling (as :func:`uui_view` does)."""
    if reveal or (variable not in decision.sensitive and variable.casefold() not in sensitive_anywhere):
        return value
    return MASK
