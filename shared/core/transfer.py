"""The context, re-encoded for the onward transfer: User-To-User and custom headers within ACS limits.

Facts (handbook acs.md "Limits" and uui.md "Encoding for the onward transfer"; the numbers live in
shared/core/acs.py):
- PSTN targets take SIP headers: one ``User-To-User`` plus at most 5 custom ``X-MS-Custom-<name>``
  headers; a key is at most 64 characters *including* the prefix, from ``[A-Za-z0-9.!%*_+~-]``; a
  value at most 256 characters from the same set plus ``=`` and ``;``.
- ACS and Teams targets take VoIP headers: at most 1000, key ≤ 64, value ≤ 1024.
- The SDK puts the dicts on the wire verbatim and checks nothing, so we must: ACS would refuse
  (and the transfer fail) on anything over a limit.

Each variable travels as the text the IVR sent (``007`` stays ``007``), never re-rendered from its
typed value.

Policy when the context does not fit (documented in docs/transfer.md): the variables are taken
in the workstream's declaration order (first declared = most important). The User-To-User value
carries as many of them as fit, in the queue's ``uui_format``; if plain cannot carry one, hex is
tried. The variables left over travel as ``X-MS-Custom-<name>`` headers (at most 5, raw values that
fit the header character set). Anything still left is omitted — never cut — and each omission is
reported so the caller logs it.

``uui_format: avaya-shared`` (Avaya shared UUI, ``uui.encode``) carries only the variables that are
items: ``UCID`` (20 digits), ``Item<ID>`` and the names of the workstream's ``uui.items``, each with
a value an item can hold; the other variables take the custom-header path above. An item value
travels as UTF-8 text: one that arrived as binary (shown as its hex digits) goes on as those digits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.core import acs, uui

_KEY_CHARS = re.compile(acs.charset_pattern(acs.HEADER_KEY_CHARSET) + "+")
_VALUE_CHARS = re.compile(acs.charset_pattern(acs.SIP_HEADER_VALUE_CHARSET) + "*")


@dataclass(frozen=True)
class TransferHeaders:
    sip_headers: dict[str, str] | None
    voip_headers: dict[str, str] | None
    uui_format: str | None  # the format the User-To-User value was built in, if any
    omitted: tuple[str, ...]  # variable names left out, in order
    notes: tuple[str, ...]  # why, one line each (names only, never values)


def is_pstn(target: str) -> bool:
    return target.startswith(("+", acs.PHONE_RAW_ID_PREFIX))


def _ordered(context: Mapping[str, str], order: Sequence[str]) -> list[str]:
    names = [n for n in order if n in context]
    return names + [n for n in context if n not in names]


def _uui_for(values: dict[str, str], preferred: str, item_names: Mapping[str, str] | None) -> tuple[str, str] | None:
    # The queue's format first; then the text forms that carry what it cannot: hex (any UTF-8, no
    # ';' or edge whitespace), plain (percent-encodes anything). Avaya shared UUI holds items only.
    fallbacks = [] if preferred == uui.AVAYA_SHARED else ["hex", "plain"]
    formats = [preferred, *(f for f in fallbacks if f != preferred)]
    for fmt in formats:
        try:
            return uui.encode(values, fmt, item_names=item_names), fmt
        except uui.UUIEncodeError:
            continue
    return None


def build(
    context: Mapping[str, str],
    order: Sequence[str],
    target: str,
    uui_format: str,
    item_names: Mapping[str, str] | None = None,
) -> TransferHeaders:
    """The headers that carry ``context`` (each variable's text as received) to ``target``.

    ``item_names`` is the workstream's ``uui.items``, for ``uui_format: avaya-shared``."""
    names = _ordered(context, order)
    if not names:
        return TransferHeaders(None, None, None, (), ())
    if not is_pstn(target):
        return _voip(context, names)

    candidates = names
    if uui_format == uui.AVAYA_SHARED:
        # Shared UUI holds items only: the variables that are not one, or whose value no item can
        # hold, go straight to the custom headers instead of blocking the items behind them.
        candidates = [n for n in names if _uui_for({n: context[n]}, uui_format, item_names) is not None]
    notes: list[str] = []
    sip: dict[str, str] = {}
    used_format: str | None = None
    in_uui: list[str] = []
    # Longest prefix of the ordered variables that encodes within 256 characters.
    for count in range(len(candidates), 0, -1):
        built = _uui_for({n: context[n] for n in candidates[:count]}, uui_format, item_names)
        if built is not None:
            sip[acs.UUI_HEADER], used_format = built
            in_uui = candidates[:count]
            break
    if used_format is not None and used_format != uui_format:
        notes.append(f"User-To-User sent as {used_format}: the {uui_format} form could not carry the context")
    omitted: list[str] = []
    for name in (n for n in names if n not in in_uui):
        key = acs.CUSTOM_SIP_PREFIX + name
        value = context[name]
        if len(sip) - (1 if acs.UUI_HEADER in sip else 0) >= acs.MAX_CUSTOM_SIP_HEADERS:
            reason = f"ACS allows {acs.MAX_CUSTOM_SIP_HEADERS} custom SIP headers"
        elif len(key) > acs.HEADER_KEY_MAX or not _KEY_CHARS.fullmatch(key):
            reason = f"header name {key!r} is over {acs.HEADER_KEY_MAX} characters or outside the ACS set"
        elif len(value) > acs.SIP_HEADER_VALUE_MAX or not _VALUE_CHARS.fullmatch(value):
            reason = f"its value ({len(value)} characters) is over {acs.SIP_HEADER_VALUE_MAX} or outside the ACS set"
        else:
            sip[key] = value
            continue
        omitted.append(name)
        notes.append(f"context variable {name!r} not forwarded: it did not fit User-To-User and {reason}")
    return TransferHeaders(sip or None, None, used_format, tuple(omitted), tuple(notes))


def _voip(context: Mapping[str, str], names: list[str]) -> TransferHeaders:
    voip: dict[str, str] = {}
    omitted: list[str] = []
    notes: list[str] = []
    for name in names:
        value = context[name]
        if len(voip) >= acs.MAX_VOIP_HEADERS:
            reason = f"ACS allows {acs.MAX_VOIP_HEADERS} VoIP headers"
        elif len(name) > acs.HEADER_KEY_MAX:
            reason = f"the name is over {acs.HEADER_KEY_MAX} characters"
        elif len(value) > acs.VOIP_HEADER_VALUE_MAX:
            reason = f"its value ({len(value)} characters) is over {acs.VOIP_HEADER_VALUE_MAX}"
        else:
            voip[name] = value
            continue
        omitted.append(name)
        notes.append(f"context variable {name!r} not forwarded as a VoIP header: {reason}")
    return TransferHeaders(None, voip or None, None, tuple(omitted), tuple(notes))
