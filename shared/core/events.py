"""IncomingCall events, as Event Grid delivers them, turned into one typed model.

Facts (handbook acs.md, "IncomingCall event" and "Event Grid delivery"):

- Event Grid posts a JSON *array* of events, normally one. Event Grid schema carries
  ``id, topic, subject, data, eventType, dataVersion, metadataVersion, eventTime``; CloudEvents 1.0
  carries ``id, source, subject, data, type, specversion, time``.
- ``data.to`` / ``data.from`` are identifier models ``{kind, rawId, phoneNumber: {value}}`` or
  ``{kind, rawId, communicationUser: {id}}``. ``kind`` casing varies between ``phoneNumber`` (live
  events) and ``PhoneNumber`` (2022 docs), so identifiers are read case-insensitively. A PSTN
  ``rawId`` looks like ``4:+14255550100``.
- ``data.customContext`` is absent when the caller set no header. The UUI key spelling in
  ``sipHeaders`` is not settled (``userToUser``, ``User-To-User``, ``user-To-User``...), so keys are
  matched on their lower-case form without hyphens; AudioCodes' ``X-User-To-User`` is the fallback.
- Custom headers arrive as ``X-MS-Custom-<name>`` (legacy) or ``X-<name>`` (current); other
  ``X-MS-*`` names are reserved by Microsoft and are not context.

This module does no I/O: the function's trigger builds an :class:`Envelope` from the worker's
event object; the ``handoff`` command reads saved deliveries (bytes, str or parsed JSON) with
:func:`envelopes`. Malformed input raises :class:`EventError` naming the field that was wrong.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.core.acs import (
    CUSTOM_HEADER_PREFIXES,
    INCOMING_CALL_EVENT,
    PHONE_RAW_ID_PREFIX,
    RESERVED_HEADER_PREFIX,
)

_UUI_KEY = "usertouser"
_UUI_FALLBACK_KEY = "xusertouser"  # AudioCodes: data only, no discriminator (uui.md)


class EventError(ValueError):
    """The event cannot be read; the message names the field."""


@dataclass(frozen=True)
class Party:
    """One end of the call: a phone number (E.164) or an ACS/Teams identity."""

    kind: str  # lower-case: phonenumber, communicationuser, microsoftteamsuser, ...
    raw_id: str
    #: What routing matches on: the E.164 number for PSTN, else the raw id.
    address: str

    @property
    def is_phone_number(self) -> bool:
        return self.kind == "phonenumber"


@dataclass(frozen=True)
class CustomHeader:
    """A header that carries one context variable (``X-MS-Custom-<name>`` / ``X-<name>``)."""

    name: str  # the variable name as received, case kept
    value: str
    header: str  # the full header name, for messages
    source: str  # "sip" or "voip"


@dataclass(frozen=True)
class IncomingCall:
    event_id: str
    event_schema: str  # "eventgrid" or "cloudevents"
    event_time: datetime | None  # timezone-aware (UTC when the event named no zone)
    #: None when ``data.to`` cannot be read: the call still gets an action (default queue or reject).
    called: Party | None
    #: None when ``data.from`` is missing or cannot be read: the caller is optional.
    caller: Party | None
    incoming_call_context: str
    correlation_id: str | None
    server_call_id: str | None
    caller_display_name: str | None
    has_custom_context: bool
    #: The raw User-to-User value and the header key it came under, or None.
    uui: str | None
    uui_header: str | None
    custom_headers: tuple[CustomHeader, ...] = field(default_factory=tuple)
    sip_headers: Mapping[str, str] = field(default_factory=dict)
    voip_headers: Mapping[str, str] = field(default_factory=dict)
    #: What could not be read, each naming the field (never a value): the call still gets its action.
    warnings: tuple[str, ...] = ()

    @property
    def called_address(self) -> str | None:
        return self.called.address if self.called is not None else None

    @property
    def delivery_keys(self) -> tuple[str, ...]:
        """What makes two deliveries the same call: its incomingCallContext. An Event Grid
        redelivery (same event id) carries the same context, and so does the same ringing call in
        another event. Not the correlation id: a call redirected to another of our numbers keeps it
        and needs its own action (acs.md). Not the event id alone either: it is the sender's to get
        right, and a call must not lose its action to another event's id."""
        return ("context:" + self.leg,)

    @property
    def leg(self) -> str:
        """This leg of the call: the hash its deliveries share (the key of its record, call_record.py)."""
        return hashlib.sha256(self.incoming_call_context.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Envelope:
    """One delivered event of any type, before it is known to be an IncomingCall."""

    event_id: str
    event_type: str
    event_schema: str  # "eventgrid" or "cloudevents"
    data: Any
    event_time: datetime | None


def parse_time(text: Any) -> datetime | None:
    """An ISO 8601 event time, or None when it cannot be read (an unreadable time is no reason to
    lose a call). Event Grid writes 7 fractional digits; Python's parser takes at most 6."""
    if not isinstance(text, str) or not text:
        return None
    text = text.replace("Z", "+00:00")
    if "." in text:
        head, _, tail = text.partition(".")
        count = len(tail) - len(tail.lstrip("0123456789"))
        digits, zone = tail[:count], tail[count:]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return aware(datetime.fromisoformat(text))
    except ValueError:
        return None


def aware(at: datetime) -> datetime:
    """``at`` with a time zone: a time without one is taken as UTC (Event Grid writes UTC)."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def age_s(event_time: datetime | None, now: float) -> float | None:
    """Seconds from the event's time to ``now`` (a Unix time), or None when the time is unknown."""
    return None if event_time is None else now - event_time.timestamp()


def load_json(payload: bytes | str | Any) -> Any:
    """Accept raw bytes/str JSON or an already-parsed object."""
    if isinstance(payload, bytes | bytearray):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise EventError("body is not UTF-8 text") from None
    if isinstance(payload, str):
        try:
            return json.loads(payload)
        except json.JSONDecodeError as exc:
            raise EventError(f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except RecursionError:
            raise EventError("body is not an event: its JSON is nested too deeply") from None
    return payload


def envelopes(payload: bytes | str | Any) -> list[Envelope]:
    """Split a delivery (one event or an array, either schema) into envelopes."""
    body = load_json(payload)
    items = body if isinstance(body, list) else [body]
    return [envelope(item, index=i if isinstance(body, list) else None) for i, item in enumerate(items)]


def envelope(item: Any, *, index: int | None = None) -> Envelope:
    where = f"event[{index}]" if index is not None else "event"
    if not isinstance(item, dict):
        raise EventError(f"{where} is not a JSON object")
    if "specversion" in item or "type" in item:
        schema, type_key, time_key = "cloudevents", "type", "time"
    elif "eventType" in item:
        schema, type_key, time_key = "eventgrid", "eventType", "eventTime"
    else:
        raise EventError(f"{where} has neither eventType (Event Grid schema) nor type (CloudEvents)")
    event_type = item.get(type_key)
    if not isinstance(event_type, str) or not event_type:
        raise EventError(f"{where}.{type_key} must be a non-empty string")
    event_id = item.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise EventError(f"{where}.id must be a non-empty string")
    return Envelope(
        event_id=event_id,
        event_type=event_type,
        event_schema=schema,
        data=item.get("data"),
        event_time=parse_time(item.get(time_key)),
    )


def parse_events(payload: bytes | str | Any) -> list[IncomingCall]:
    """Parse a delivery that must contain only IncomingCall events."""
    calls = []
    for env in envelopes(payload):
        if env.event_type != INCOMING_CALL_EVENT:
            raise EventError(f"event {env.event_id} is {env.event_type}, not {INCOMING_CALL_EVENT}")
        calls.append(incoming_call(env))
    return calls


def _member(obj: dict[str, Any], name: str) -> Any:
    """``obj[name]``, falling back to a case-insensitive match (2022 docs spell ``PhoneNumber``)."""
    value = obj.get(name)
    if value is None:
        folded = name.lower()
        for key, candidate in obj.items():
            if isinstance(key, str) and key.lower() == folded:
                return candidate
    return value


def party(obj: Any, where: str) -> Party:
    """An identifier model as a Party; EventError naming ``where`` when it holds no address."""
    if not isinstance(obj, dict):
        raise EventError(f"{where} is not an identifier object")
    raw_id = _member(obj, "rawId")
    kind = _member(obj, "kind")
    phone = _member(obj, "phoneNumber")
    number = _member(phone, "value") if isinstance(phone, dict) else None
    if isinstance(number, str) and number.strip():
        address = number.strip()
        kind = "phonenumber"
    elif isinstance(raw_id, str) and raw_id.startswith(PHONE_RAW_ID_PREFIX):
        # PSTN raw ids are "4:" + E.164 (CommunicationIdentifier raw id format).
        address = raw_id[len(PHONE_RAW_ID_PREFIX) :].strip()
        kind = "phonenumber"
    else:
        user = _member(obj, "communicationUser")
        user_id = _member(user, "id") if isinstance(user, dict) else None
        address = raw_id if isinstance(raw_id, str) and raw_id else user_id if isinstance(user_id, str) else ""
    if not address:
        raise EventError(f"{where} has no phoneNumber.value, rawId or communicationUser.id")
    raw = (
        raw_id
        if isinstance(raw_id, str) and raw_id
        else (PHONE_RAW_ID_PREFIX + address if kind == "phonenumber" else address)
    )
    return Party(kind=kind.lower() if isinstance(kind, str) and kind else "unknown", raw_id=raw, address=address)


def _optional_party(data: Mapping[str, Any], name: str, warnings: list[str]) -> Party | None:
    """``data[name]`` as a Party, or None with a warning naming the field: neither an odd caller
    nor an odd called party may cost the call its action."""
    obj = data.get(name)
    if obj is None:
        warnings.append(f"data.{name} is missing")
        return None
    try:
        return party(obj, f"data.{name}")
    except EventError as exc:
        warnings.append(str(exc))
        return None


def _headers(obj: Any, where: str, warnings: list[str]) -> dict[str, str]:
    """A header map; anything else is no headers, and a value that is not text is left out, each
    with a warning naming the field (the rest of the context is kept)."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        warnings.append(f"{where} is not an object of header names to values; its headers are not read")
        return {}
    headers: dict[str, str] = {}
    for key, value in obj.items():
        if isinstance(value, str):
            headers[key] = value
        else:
            warnings.append(f"{where}[{key!r}] is not text; that header is not read")
    return headers


def find_uui(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """The User-to-User header (any spelling), else X-User-To-User. Returns (key, value)."""
    fallback = None
    for key, value in headers.items():
        folded = key.lower().replace("-", "")
        if folded == _UUI_KEY:
            return key, value
        if folded == _UUI_FALLBACK_KEY:
            fallback = (key, value)
    return fallback


def custom_headers(headers: Mapping[str, str], source: str) -> list[CustomHeader]:
    found = []
    for key, value in headers.items():
        lower = key.lower()
        if lower.replace("-", "") in (_UUI_KEY, _UUI_FALLBACK_KEY):
            continue
        for prefix in CUSTOM_HEADER_PREFIXES:
            if lower.startswith(prefix):
                if prefix == "x-" and lower.startswith(RESERVED_HEADER_PREFIX):
                    break  # other X-MS-* names are reserved by Microsoft, never context
                name = key[len(prefix) :]
                if name:
                    found.append(CustomHeader(name=name, value=value, header=key, source=source))
                break
        else:
            if source == "voip":
                # VoIP headers travel between ACS/Teams endpoints without a prefix convention.
                found.append(CustomHeader(name=key, value=value, header=key, source=source))
    return found


def incoming_call(env: Envelope) -> IncomingCall:
    """The call in an IncomingCall event. Raises EventError only when nothing can act on the call:
    ``data`` is not an object or holds no usable ``incomingCallContext``. Anything else that cannot
    be read becomes a warning naming the field, and the call still gets its action."""
    data = env.data
    if not isinstance(data, dict):
        raise EventError(f"event {env.event_id}: data must be an object")
    context = data.get("incomingCallContext")
    if not isinstance(context, str) or not context.strip():
        raise EventError(f"event {env.event_id}: data.incomingCallContext is missing; the call cannot be acted on")
    warnings: list[str] = []
    called = _optional_party(data, "to", warnings)
    caller = _optional_party(data, "from", warnings)
    custom = data.get("customContext")
    if custom is not None and not isinstance(custom, dict):
        warnings.append("data.customContext is not an object; no context is read from it")
    custom_map: Mapping[str, Any] = custom if isinstance(custom, dict) else {}
    sip = _headers(custom_map.get("sipHeaders"), "data.customContext.sipHeaders", warnings)
    voip = _headers(custom_map.get("voipHeaders"), "data.customContext.voipHeaders", warnings)
    uui = find_uui(sip) or find_uui(voip)
    headers = custom_headers(sip, "sip") + custom_headers(voip, "voip")

    def text(name: str) -> str | None:
        value = data.get(name)
        return value if isinstance(value, str) else None

    return IncomingCall(
        event_id=env.event_id,
        event_schema=env.event_schema,
        event_time=env.event_time,
        called=called,
        caller=caller,
        incoming_call_context=context,
        correlation_id=text("correlationId"),
        server_call_id=text("serverCallId"),
        caller_display_name=text("callerDisplayName"),
        has_custom_context=isinstance(custom, dict),
        uui=uui[1] if uui else None,
        uui_header=uui[0] if uui else None,
        custom_headers=tuple(headers),
        sip_headers=sip,
        voip_headers=voip,
        warnings=tuple(warnings),
    )
