"""The context, re-encoded for the onward transfer: User-To-User and custom headers within ACS limits.

Facts (handbook acs.md "Limits" and uui.md "Encoding for the onward transfer"):
- PSTN targets take SIP headers: one ``User-To-User`` plus at most 5 custom ``X-MS-Custom-<name>``
  headers; a key is at most 64 characters *including* the prefix, from ``[A-Za-z0-9.!%*_+~-]``; a
  value at most 256 characters from the same set plus ``=`` and ``;``.
- ACS and Teams targets take VoIP headers: at most 1000, key ≤ 64, value ≤ 1024.
- The SDK puts the dicts on the wire verbatim and checks nothing, so we must: ACS would refuse
  (and the transfer fail) on anything over a limit.

Policy when the context does not fit (documented in docs/transfer.md): the variables are taken
in the workstream's declaration order (first declared = most important). The User-To-User value
carries as many of them as fit, in the queue's ``uui_format``; if plain cannot carry one, hex is
tried. The variables left over travel as ``X-MS-Custom-<name>`` headers (at most 5, raw values that
fit the header character set). Anything still left is omitted — never cut — and each omission is
reported so the caller logs it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared import uui

MAX_CUSTOM_SIP_HEADERS = 5
HEADER_KEY_MAX = 64
SIP_HEADER_VALUE_MAX = 256
VOIP_HEADER_MAX = 1000
VOIP_VALUE_MAX = 1024
CUSTOM_PREFIX = "X-MS-Custom-"
UUI_HEADER = "User-To-User"

_KEY_CHARS = re.compile(r"[A-Za-z0-9.!%*_+~-]+")
_VALUE_CHARS = re.compile(r"[A-Za-z0-9.!%*_+~=;-]*")

JSONScalar = str | int | float | bool


@dataclass(frozen=True)
class TransferHeaders:
    sip_headers: dict[str, str] | None
    voip_headers: dict[str, str] | None
    uui_format: str | None  # the format the User-To-User value was built in, if any
    omitted: tuple[str, ...]  # variable names left out, in order
    notes: tuple[str, ...]  # why, one line each (names only, never values)


def is_pstn(target: str) -> bool:
    return target.startswith(("+", "4:"))


def as_text(value: JSONScalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _ordered(context: Mapping[str, JSONScalar], order: Sequence[str]) -> list[str]:
    names = [n for n in order if n in context]
    return names + [n for n in context if n not in names]


def _uui_for(values: dict[str, str], preferred: str) -> tuple[str, str] | None:
    formats = [preferred] + (["hex"] if preferred == "plain" else [])
    for fmt in formats:
        try:
            return uui.encode(values, fmt), fmt
        except uui.UUIEncodeError:
            continue
    return None


def build(context: Mapping[str, JSONScalar], order: Sequence[str], target: str, uui_format: str) -> TransferHeaders:
    texts = {name: as_text(value) for name, value in context.items()}
    names = _ordered(context, order)
    if not names:
        return TransferHeaders(None, None, None, (), ())
    if not is_pstn(target):
        return _voip(texts, names)

    notes: list[str] = []
    sip: dict[str, str] = {}
    used_format: str | None = None
    in_uui = 0
    # Longest prefix of the ordered variables that encodes within 256 characters.
    for count in range(len(names), 0, -1):
        built = _uui_for({n: texts[n] for n in names[:count]}, uui_format)
        if built is not None:
            sip[UUI_HEADER], used_format = built
            in_uui = count
            break
    if used_format is not None and used_format != uui_format:
        notes.append(f"User-To-User sent as {used_format}: the {uui_format} form could not carry the context")
    omitted: list[str] = []
    for name in names[in_uui:]:
        key = CUSTOM_PREFIX + name
        value = texts[name]
        if len(sip) - (1 if UUI_HEADER in sip else 0) >= MAX_CUSTOM_SIP_HEADERS:
            reason = f"ACS allows {MAX_CUSTOM_SIP_HEADERS} custom SIP headers"
        elif len(key) > HEADER_KEY_MAX or not _KEY_CHARS.fullmatch(key):
            reason = f"header name {key!r} is over {HEADER_KEY_MAX} characters or outside the ACS set"
        elif len(value) > SIP_HEADER_VALUE_MAX or not _VALUE_CHARS.fullmatch(value):
            reason = f"its value ({len(value)} characters) is over {SIP_HEADER_VALUE_MAX} or outside the ACS set"
        else:
            sip[key] = value
            continue
        omitted.append(name)
        notes.append(f"context variable {name!r} not forwarded: it did not fit User-To-User and {reason}")
    return TransferHeaders(sip or None, None, used_format, tuple(omitted), tuple(notes))


def _voip(texts: dict[str, str], names: list[str]) -> TransferHeaders:
    voip: dict[str, str] = {}
    omitted: list[str] = []
    notes: list[str] = []
    for name in names:
        value = texts[name]
        if len(voip) >= VOIP_HEADER_MAX:
            reason = f"ACS allows {VOIP_HEADER_MAX} VoIP headers"
        elif len(name) > HEADER_KEY_MAX:
            reason = f"the name is over {HEADER_KEY_MAX} characters"
        elif len(value) > VOIP_VALUE_MAX:
            reason = f"its value ({len(value)} characters) is over {VOIP_VALUE_MAX}"
        else:
            voip[name] = value
            continue
        omitted.append(name)
        notes.append(f"context variable {name!r} not forwarded as a VoIP header: {reason}")
    return TransferHeaders(None, voip or None, None, tuple(omitted), tuple(notes))
