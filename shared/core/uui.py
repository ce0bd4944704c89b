"""Decode and encode the SIP ``User-to-User`` header (UUI) that carries an IVR's call context.

A pure codec: no I/O, standard library only. The facts that decide its behaviour:

- RFC 7433 section 4.1 grammar::

      User-to-User = "User-to-User" HCOLON uui-value *(COMMA uui-value)
      uui-value    = uui-data *(SEMI uui-param)
      uui-param    = uui-purpose / uui-content / uui-encoding / generic-param

  The only registered ``encoding`` is ``hex``. Parameter names and values are case-insensitive,
  and whitespace is allowed around ``;`` and ``=`` (RFC 3261 SWS: spaces and tabs).
- ``pd`` is in no RFC: gateways (Genesys, AudioCodes) use it to state the Q.931 protocol
  discriminator of the user-user information element. ``pd=4`` (0x04) means IA5 characters
  (ASCII); 0x00 means user-specific (binary, e.g. the Avaya UCID). The defined discriminators are
  0x00-0x08, all control bytes, so a leading byte in that range is never the first character of text.
- RFC 7434 (``purpose=isdn-uui;content=isdn-uui``) carries the user-user IE from its
  discriminator octet on, hex encoded.
- Genesys Cloud always strips the first octet unless ``pd=`` is present (which truncates data sent
  without a discriminator) and discards all UUI when a call carries several UUI values; Avaya AES
  users report the same "first character eaten" bug. This module strips only what is provably a
  discriminator, and refuses several UUI values instead of picking one.
- Azure Communication Services direct routing: a UUI value is at most 256 characters
  (``ACS_UUI_MAX``) from ``[A-Za-z0-9]`` and ``= ; . ! % * _ + ~ -`` (``ACS_UUI_CHARSET``), key at
  most 64. Plain values with spaces, ``/``, ``:``, ``@`` or non-ASCII must therefore arrive hex- or
  percent-encoded; ``;encoding=hex`` leaves room for 121 payload bytes.
- Dynamics 365 context variables: name up to 100 characters, value up to 4,000, matched
  case-sensitively and exactly.

The three forms of the Dynamics 365 contextual-transfer contract, all decoded here::

    sipkey1=sipval1;sipkey2=sipval2                                       plain pairs
    7369706B6579313D73697076616C313B...;encoding=hex                       the same pairs, hex
    3530303131323233333434353b363738393b3132;pd=4                          positional values

Decoding rules (handbook uui.md), in order: trim, reject empty or over-long values; split on ``;``
outside double quotes; later segments of the form ``name=value`` whose name is ``encoding``,
``purpose``, ``content`` or ``pd`` are header parameters, so **those four names are reserved and
cannot be context keys after the first item of a plain payload** (send them hex-encoded instead);
choose hex or plain from the parameters only, never from the look of the data; strip a leading
discriminator octet; require strict UTF-8 without control characters (TAB allowed); split the
payload into pairs (every item has ``=``) or positional values (no item has ``=``); in plain mode
percent-decode keys and values (``%HH`` sequences that form valid UTF-8; others stay literal).
Percent-encoding is our convention for carrying spaces, ``;``, ``=`` and non-ASCII through the ACS
character set (TelcoBridges and Dialogic gateways use the same ``%HH`` escapes); the product
documentation does not define it, so :func:`encode` uses it only in the plain form.

Avaya shared UUI, a second profile (:func:`decode_avaya_shared`, ``encode(..., "avaya-shared")``;
handbook uui.md "Avaya shared UUI"; [C] confirmed in a source, [D] derived, [U] unconfirmed):

- A Communication Manager trunk's "UUI IE treatment" is *service-provider* (the application's UUI
  passes unchanged: the three forms above) or *shared* (several items packed into one user-user
  element) [C, Avaya ASAI manual 555-230-220; Avaya "Information Forwarding"].
- Shared layout: the discriminator octet ``00`` (Q.931 user-specific), then items
  ``ID (1 byte) | LEN (1 byte) | VALUE (LEN bytes)`` [C for the item rule, D for the generalisation].
  Item ``FA`` of length 8 is the UCID [C, AudioCodes "Avaya UCID": ``00FA080019001038F725B3;encoding=hex``].
  ``C8`` as ASAI user data is widely cited but [U], so no item other than FA gets a name by default.
- The UCID shows as 20 digits ``NNNNNSSSSSTTTTTTTTTT``: node id (1-32767, the switch), sequence
  (1-65535), Unix seconds [C, trgtech worked example: node 21, sequence 5, time 946085673 →
  ``00021000050946085673``; Avaya: "8-byte binary or 20-character ASCII"], packed as big-endian
  uint16, uint16, uint32 [D: fits the ranges exactly and reads the AudioCodes bytes as node 25,
  sequence 16, 2000-04-14T14:05:39Z].

Error messages and warnings never contain payload values (they may be account numbers or PINs):
only lengths, positions, parameter names, item ids and, in warnings, key names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from shared.core import acs

__all__ = [
    "ACS_UUI_CHARSET",
    "ACS_UUI_MAX",
    "AVAYA_SHARED",
    "CONTEXT_KEY_MAX",
    "CONTEXT_VALUE_MAX",
    "ENCODE_FORMATS",
    "ERROR_KINDS",
    "HEADER_PARAMS",
    "PROFILES",
    "UCID_ITEM",
    "UCID_VARIABLE",
    "DecodedUUI",
    "UUIEncodeError",
    "UUIError",
    "UUIItem",
    "decode",
    "decode_avaya_shared",
    "encode",
    "fits_acs",
    "normalise_item_names",
    "report",
]

#: ACS direct routing: a UUI value is at most 256 characters, from these characters (defined in
#: shared/core/acs.py with the other ACS facts; named here for the codec's callers).
ACS_UUI_MAX = acs.UUI_MAX
ACS_UUI_CHARSET = acs.UUI_CHARSET
#: Dynamics 365 context variables: name up to 100 characters, value up to 4,000.
CONTEXT_KEY_MAX = 100
CONTEXT_VALUE_MAX = 4000

#: RFC 7433 parameters plus the gateways' ``pd``: reserved, never context keys in plain payloads.
HEADER_PARAMS: frozenset[str] = frozenset({"encoding", "purpose", "content", "pd"})

ERROR_KINDS: frozenset[str] = frozenset(
    {
        "empty",
        "oversized",
        "unterminated_quote",
        "multiple_values",
        "conflicting_params",
        "unsupported_encoding",
        "invalid_pd",
        "non_hex_characters",
        "odd_length_hex",
        "empty_payload",
        "invalid_utf8",
        "control_characters",
        "missing_equals",
        "empty_key",
        "key_too_long",
        "value_too_long",
        # Avaya shared UUI only.
        "truncated_item",
        "bad_ucid",
    }
)

#: How a workstream reads its User-to-User values: ``standard`` (the three product forms) or
#: ``avaya-shared`` (Avaya shared UUI items, falling back to the standard forms; see decode_avaya_shared).
AVAYA_SHARED = "avaya-shared"
PROFILES = ("standard", AVAYA_SHARED)

ENCODE_FORMATS = ("plain", "hex", "pd4", AVAYA_SHARED)

#: Avaya shared UUI: item FA is the UCID [C, AudioCodes "Avaya UCID"]; it always fills this variable.
UCID_ITEM = "FA"
UCID_VARIABLE = "UCID"
# The UCID's 8 bytes: big-endian uint16 node, uint16 sequence, uint32 seconds [D]; Avaya numbers
# nodes 1-32767 [C, trgtech], so a top bit set means the bytes are not a UCID in this order (some
# Genesys integrations reverse it [C, Medallia docs]).
_UCID_BYTES = 8
_UCID_NODE_MAX = 32767
# The one-octet LEN of a shared UUI item.
_ITEM_VALUE_MAX = 255
_ITEM_ID = re.compile(r"[0-9A-Fa-f]{2}")
_ITEM_VARIABLE = re.compile(r"Item([0-9A-Fa-f]{2})")

# RFC 7433 registers only "hex"; the text names are what IVRs send for "not encoded".
_HEX_ENCODINGS = frozenset({"hex"})
_TEXT_ENCODINGS = frozenset({"ascii", "text", "plain", "utf-8", "utf8"})
_ENCODING_NAMES = ", ".join(["hex", "ascii", "text", "plain", "utf-8", "utf8"])

# RFC 3261 SWS around ";" and "=" is spaces and tabs; the whole value may also end in a line break.
_SWS = " \t"
_LWS = " \t\r\n"

_NON_HEX = re.compile(r"[^0-9A-Fa-f]")
# C0 controls except TAB, and DEL (rule 8).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_PERCENT_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_ACS_VALUE = re.compile(acs.charset_pattern(ACS_UUI_CHARSET) + "*")
# What a plain key or value may carry unescaped: the ACS set minus the separators and "%".
_PLAIN_SAFE = "".join(sorted(ACS_UUI_CHARSET - {"=", ";", "%"}))


class UUIError(ValueError):
    """A ``User-to-User`` value that cannot be decoded.

    ``kind`` is one of :data:`ERROR_KINDS`; ``message`` says what was wrong and where, without
    payload values. ``encoding``, ``params``, ``pd``, ``text`` and ``warnings`` hold what was
    determined before the failure (``text`` only once it was valid text).
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        encoding: str | None = None,
        params: dict[str, str] | None = None,
        pd: int | None = None,
        text: str | None = None,
        warnings: tuple[str, ...] = (),
    ) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown UUI error kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.encoding = encoding
        self.params: dict[str, str] = {} if params is None else params
        self.pd = pd
        self.text = text
        self.warnings = warnings

    def __repr__(self) -> str:
        return f"UUIError({self.kind!r}, {self.message!r})"


class UUIEncodeError(ValueError):
    """The context cannot be sent as a ``User-to-User`` value in the chosen form.

    The message names the context variable (or the positional value's number) and the limit or
    character at fault, never the value.
    """


@dataclass(frozen=True, slots=True)
class UUIItem:
    """One item of an Avaya shared UUI payload, in the order it arrived."""

    id: str  # two upper-case hex digits, e.g. "FA", "C8"
    name: str  # the context variable it fills: UCID, the workstream's name for it, or Item<ID>
    length: int  # LEN: the bytes of the value as sent
    value: str  # the UCID's 20 digits, the UTF-8 text, or the bytes' hex digits when they are not text


@dataclass(frozen=True, slots=True)
class DecodedUUI:
    encoding: str  # "plain" | "hex"
    params: dict[str, str]  # header parameters, lower-case names, values as received
    pd: int | None  # Q.931 protocol discriminator, from pd= or a stripped leading octet
    text: str  # the payload text; for Avaya shared UUI the items' bytes as hex digits
    pairs: dict[str, str] | None  # key=value items, key case kept
    positional: tuple[str, ...] | None  # items without keys, in order
    warnings: tuple[str, ...]
    #: Avaya shared UUI only: every item as sent (pairs keeps the last of a repeated one).
    items: tuple[UUIItem, ...] | None = None


class _Progress:
    """What decoding has determined so far, so an error can report it."""

    __slots__ = ("encoding", "params", "pd", "text", "warnings")

    def __init__(self) -> None:
        self.encoding: str | None = None
        self.params: dict[str, str] = {}
        self.pd: int | None = None
        self.text: str | None = None
        self.warnings: list[str] = []

    def fail(self, kind: str, message: str) -> UUIError:
        return UUIError(
            kind,
            message,
            encoding=self.encoding,
            params=dict(self.params),
            pd=self.pd,
            text=self.text,
            warnings=tuple(self.warnings),
        )


def decode(
    value: str,
    *,
    max_length: int = ACS_UUI_MAX,
    default_encoding: str = "plain",
    profile: str = "standard",
    item_names: Mapping[str, str] | None = None,
) -> DecodedUUI:
    """Decode one ``User-to-User`` header value (the part after the colon).

    ``default_encoding="hex"`` is the workstream option ``uui.default_encoding: hex``: data with no
    ``encoding`` or ``pd`` parameter is then read as hex. ``profile="avaya-shared"`` (with the
    workstream's ``uui.items`` as ``item_names``) is :func:`decode_avaya_shared`. Raises
    :class:`UUIError` for any malformed value (``TypeError``/``ValueError`` only for a non-str value
    or a bad option).
    """
    if profile == AVAYA_SHARED:
        return decode_avaya_shared(
            value, max_length=max_length, default_encoding=default_encoding, item_names=item_names
        )
    if profile != "standard":
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, not {profile!r}")
    progress = _start(value, default_encoding)
    mode, data, extra = _read_header(value, max_length, default_encoding, progress)
    return _standard(_payload_text(mode, data, extra, progress), mode, progress)


def decode_avaya_shared(
    value: str,
    *,
    max_length: int = ACS_UUI_MAX,
    default_encoding: str = "plain",
    item_names: Mapping[str, str] | None = None,
) -> DecodedUUI:
    """Decode a ``User-to-User`` value under the workstream profile ``avaya-shared``.

    The header is read exactly as :func:`decode` reads it (rules 1-7: size, parameters, hex or
    plain, the discriminator octet). The value is Avaya shared UUI when its hex data is marked
    user-specific: a leading ``00`` octet (as Communication Manager sends it, AudioCodes
    ``00FA08...;encoding=hex`` [C]) or a ``pd=0`` parameter, which states the discriminator so the
    data may start at the first item (as ``pd=4`` data carries no 04 octet). Anything else is what
    a trunk in *service-provider* mode sends, the application's UUI unchanged [C, ASAI manual]: it
    is decoded in the standard forms, with a warning, so a trunk set the other way still delivers
    its context (and a value that is neither goes to the invalid-context queue as any decode error).

    Items (``ID, LEN, VALUE``, :class:`UUIItem`) fill ``pairs``: ``FA`` is the UCID as 20 digits
    under ``UCID``; every other item is ``Item<ID>`` (``ItemC8``) unless ``item_names`` (the
    workstream's ``uui.items``, normalised by :func:`normalise_item_names`) names it. A value is its UTF-8
    text, or its bytes' hex digits when it is not text (rule 8) — ``length`` tells the two apart.
    A repeated item: the last wins in ``pairs``, with a warning; ``items`` keeps both.

    Errors: ``truncated_item`` (an item runs past the end), ``bad_ucid`` (FA not 8 bytes, or a
    node id above 32767), ``empty_payload`` (nothing after the discriminator), and every error
    of the standard forms.
    """
    progress = _start(value, default_encoding)
    mode, data, extra = _read_header(value, max_length, default_encoding, progress)
    if mode == "hex":
        octets, stripped = _hex_octets(data, extra, progress, expected=0)
        if progress.pd == 0:
            return _shared_items(octets, stripped, item_names or {}, progress)
        progress.warnings.append(_NOT_SHARED)
        text = _octets_text(octets, stripped, progress)
    else:
        progress.warnings.append(_NOT_SHARED)
        text = _plain_text(data, extra, progress)
    return _standard(text, mode, progress)


_NOT_SHARED = (
    "profile avaya-shared: the value is not shared UUI (no 00 discriminator octet or pd=0); "
    "decoded as the application's UUI, as a trunk in service-provider mode sends it"
)


def _start(value: str, default_encoding: str) -> _Progress:
    if not isinstance(value, str):
        raise TypeError(f"a UUI value must be str, not {type(value).__name__}")
    if default_encoding not in ("plain", "hex"):
        raise ValueError(f"default_encoding must be 'plain' or 'hex', not {default_encoding!r}")
    return _Progress()


def _read_header(value: str, max_length: int, default_encoding: str, progress: _Progress) -> tuple[str, str, list[str]]:
    """Rules 1-5: the mode (hex or plain), the data segment and the segments that are not parameters."""
    # Rule 1.
    value = value.strip(_LWS)
    if not value:
        raise progress.fail("empty", "the User-to-User value is empty")
    if len(value) > max_length:
        # ACS direct routing refuses UUI values over 256 characters; the limit is configurable.
        raise progress.fail(
            "oversized",
            f"the User-to-User value is {len(value)} characters long; the limit is {max_length}",
        )

    # Rule 2: RFC 3261 quoted-string may hide a ";".
    segments = _split_segments(value, progress)

    # Rule 3: header parameters are the later segments named encoding/purpose/content/pd.
    params = progress.params
    seen: dict[str, str] = {}
    payload_segments: list[str] = []
    for position, segment in enumerate(segments[1:], start=2):
        raw_name, equals, raw_value = segment.partition("=")
        name = _unquote(raw_name.strip(_SWS)).lower()
        if not equals or name not in HEADER_PARAMS:
            payload_segments.append(segment)
            continue
        if "," in segment:
            # RFC 7433: uui-value *(COMMA uui-value). Genesys drops all UUI in this case; we refuse.
            raise progress.fail(
                "multiple_values",
                f"segment {position} (parameter {name}) contains ',': the header carries several "
                "UUI values; send exactly one",
            )
        param_value = _unquote(raw_value.strip(_SWS))
        normalised = _normalise_param(name, param_value)
        if name in seen:
            if seen[name] != normalised:
                raise progress.fail(
                    "conflicting_params",
                    f"parameter {name} appears twice with different values (segment {position})",
                )
            progress.warnings.append(f"parameter {name} is repeated with the same value")
            continue
        seen[name] = normalised
        params[name] = param_value

    data = _unquote(segments[0].strip(_SWS))

    # Rule 4 then rule 5: the encoding comes from the parameters (or the workstream), never from
    # the look of the data.
    encoding_param = params.get("encoding")
    if encoding_param is not None:
        if encoding_param.lower() in _HEX_ENCODINGS:
            mode = "hex"
        elif encoding_param.lower() in _TEXT_ENCODINGS:
            mode = "plain"
        else:
            # RFC 7433 registers only "hex" (IANA uui-encoding registry): refuse, do not guess.
            raise progress.fail(
                "unsupported_encoding",
                f"the encoding parameter is not one of {_ENCODING_NAMES} (RFC 7433 registers only hex)",
            )
    elif "pd" in params:
        # Gateways that state a Q.931 discriminator (Genesys, AudioCodes) send hex octets.
        mode = "hex"
    elif default_encoding == "hex":
        mode = "hex"
    elif _is_isdn_uui(params) and _looks_like_hex_octets(data):
        # RFC 7434: the isdn-uui package carries the user-user IE as hex octets; a sender that
        # omits encoding=hex but whose data is even-length hex is read as hex.
        mode = "hex"
        progress.warnings.append("no encoding parameter: read as hex because purpose/content is isdn-uui")
    else:
        mode = "plain"
    progress.encoding = mode

    if "pd" in params:
        progress.pd = _parse_pd(params["pd"])
        if progress.pd is None:
            raise progress.fail("invalid_pd", "the pd parameter must be a decimal number from 0 to 255")
    return mode, data, payload_segments


def _payload_text(mode: str, data: str, extra: list[str], progress: _Progress) -> str:
    if mode == "hex":
        return _octets_text(*_hex_octets(data, extra, progress), progress)
    return _plain_text(data, extra, progress)


def _plain_text(data: str, extra: list[str], progress: _Progress) -> str:
    # Rule 9.
    text = ";".join([data, *(segment.strip(_SWS) for segment in extra)]) if extra else data
    _check_controls(text, "the payload", progress)
    return text


def _standard(text: str, mode: str, progress: _Progress) -> DecodedUUI:
    """Rules 10-11: the payload text → pairs or positional values."""
    progress.text = text
    pairs, positional = _split_payload(text, plain=mode == "plain", progress=progress)
    return DecodedUUI(
        encoding=mode,
        params=progress.params,
        pd=progress.pd,
        text=text,
        pairs=pairs,
        positional=positional,
        warnings=tuple(progress.warnings),
    )


def _split_segments(value: str, progress: _Progress) -> list[str]:
    if '"' not in value:
        return value.split(";")
    segments: list[str] = []
    start = 0
    opened = -1
    for index, char in enumerate(value):
        if char == '"':
            opened = -1 if opened >= 0 else index
        elif char == ";" and opened < 0:
            segments.append(value[start:index])
            start = index + 1
    if opened >= 0:
        raise progress.fail(
            "unterminated_quote",
            f"the double quote at character {opened + 1} of the User-to-User value is never closed",
        )
    segments.append(value[start:])
    return segments


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1].strip(_SWS)
    return text


def _normalise_param(name: str, value: str) -> str:
    # Parameter values are case-insensitive tokens (RFC 7433); pd=04 and pd=4 state the same octet.
    if name == "pd" and value.isascii() and value.isdigit():
        return value.lstrip("0") or "0"
    return value.lower()


def _parse_pd(value: str) -> int | None:
    # ASCII digits only: str.isdigit() alone would accept other scripts' digits.
    if not value or not value.isascii() or not value.isdigit():
        return None
    significant = value.lstrip("0")
    if len(significant) > 3:
        return None
    number = int(significant or "0")
    return number if number <= 255 else None


def _is_isdn_uui(params: Mapping[str, str]) -> bool:
    return params.get("purpose", "").lower() == "isdn-uui" or params.get("content", "").lower() == "isdn-uui"


def _strip_0x(data: str) -> str:
    return data[2:] if data[:2] in ("0x", "0X") else data


def _looks_like_hex_octets(data: str) -> bool:
    digits = _strip_0x(data)
    return bool(digits) and len(digits) % 2 == 0 and _NON_HEX.search(digits) is None


def _hex_octets(data: str, extra: list[str], progress: _Progress, expected: int | None = None) -> tuple[bytes, bool]:
    """Rules 6-7: the hex data's octets after the discriminator, and whether one was stripped.

    ``expected`` is a discriminator the profile reads the data by (00 for Avaya shared UUI): finding
    it is the normal case, not worth a warning on every call."""
    if extra:
        progress.warnings.append(
            f"ignored {len(extra)} segment(s) after the hex data that are not UUI "
            "parameters (RFC 7433 generic parameters)"
        )
    # Rule 6. Some IVR scripts emit a 0x prefix, which bytes.fromhex() would reject.
    digits = _strip_0x(data)
    prefix = len(data) - len(digits)
    # bytes.fromhex() silently skips spaces, so check every character ourselves.
    bad = _NON_HEX.search(digits)
    if bad is not None:
        raise progress.fail(
            "non_hex_characters",
            f"character {prefix + bad.start() + 1} of the hex data is not a hex digit (0-9, A-F); "
            "hex data has no spaces or separators",
        )
    if len(digits) % 2:
        raise progress.fail("odd_length_hex", f"the hex data has {len(digits)} digits; two digits make one byte")
    if not digits:
        raise progress.fail("empty_payload", "the hex data is empty")
    octets = bytes.fromhex(digits)

    # Rule 7: Q.931 discriminators are 0x00-0x08, control bytes that never start text, so such a
    # first octet is provably a discriminator (Genesys/Avaya strip the first octet blindly; we do not).
    first = octets[0]
    stripped = first <= 0x08
    if stripped:
        octets = octets[1:]
        if first == expected and progress.pd in (None, first):
            progress.pd = first
        elif progress.pd is None:
            progress.pd = first
            progress.warnings.append(f"stripped the leading octet 0x{first:02X} as the Q.931 protocol discriminator")
        elif progress.pd == first:
            progress.warnings.append(f"stripped the leading discriminator octet 0x{first:02X} (same as pd)")
        else:
            progress.warnings.append(
                f"stripped the leading discriminator octet 0x{first:02X}; the pd parameter ({progress.pd}) wins"
            )
        if not octets:
            raise progress.fail("empty_payload", "the hex data holds only a protocol discriminator octet")
    return octets, stripped


def _octets_text(octets: bytes, stripped: bool, progress: _Progress) -> str:
    # Rule 8: strict UTF-8; binary vendor payloads (the Avaya 00 FA 08 ... UCID) are errors here
    # (the avaya-shared profile reads them as items instead).
    try:
        text = octets.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise progress.fail(
            "invalid_utf8",
            f"byte {exc.start + 1 + stripped} of the decoded hex data is not UTF-8 text "
            "(binary vendor data such as an Avaya UCID cannot fill a context variable; "
            "see the workstream profile avaya-shared)",
        ) from None
    _check_controls(text, "the decoded payload", progress)
    return text


def _shared_items(octets: bytes, stripped: bool, item_names: Mapping[str, str], progress: _Progress) -> DecodedUUI:
    """Avaya shared UUI: ``ID | LEN | VALUE`` items after the 00 discriminator [C]."""
    items: list[UUIItem] = []
    pairs: dict[str, str] = {}
    duplicates: set[str] = set()
    position = 0
    while position < len(octets):
        number = len(items) + 1
        # Positions count from 1 over the hex data as sent, discriminator included (as in rule 8).
        where = f"item {number} at byte {position + 1 + stripped} of the hex data"
        if position + 2 > len(octets):
            raise progress.fail("truncated_item", f"{where} has an id but no length byte")
        ident, length = f"{octets[position]:02X}", octets[position + 1]
        raw = octets[position + 2 : position + 2 + length]
        if len(raw) < length:
            raise progress.fail(
                "truncated_item",
                f"{where} (id {ident}) declares {length} bytes but only {len(raw)} remain",
            )
        position += 2 + length
        if ident == UCID_ITEM:
            name, value = UCID_VARIABLE, _ucid_text(raw, where, progress)
        else:
            name, value = item_names.get(ident, f"Item{ident}"), _item_value(raw)
        items.append(UUIItem(ident, name, length, value))
        if name in pairs and name not in duplicates:
            duplicates.add(name)
            progress.warnings.append(f"item {ident} ({name}) appears more than once; the last value wins")
        pairs[name] = value
    return DecodedUUI(
        encoding="hex",
        params=progress.params,
        pd=progress.pd,
        text=octets.hex().upper(),
        pairs=pairs,
        positional=None,
        warnings=tuple(progress.warnings),
        items=tuple(items),
    )


def _ucid_text(raw: bytes, where: str, progress: _Progress) -> str:
    # Avaya: "8-byte binary or 20-character ASCII" [C]; 20 digits NNNNNSSSSSTTTTTTTTTT [C, trgtech].
    if len(raw) != _UCID_BYTES:
        raise progress.fail("bad_ucid", f"{where} (id FA, the UCID) is {len(raw)} bytes long; a UCID is {_UCID_BYTES}")
    node = int.from_bytes(raw[0:2], "big")
    sequence = int.from_bytes(raw[2:4], "big")
    seconds = int.from_bytes(raw[4:8], "big")
    if node > _UCID_NODE_MAX:
        raise progress.fail(
            "bad_ucid",
            f"{where} (id FA, the UCID) has a node id above {_UCID_NODE_MAX}: not a big-endian UCID "
            "(is the byte order reversed?)",
        )
    return f"{node:05d}{sequence:05d}{seconds:010d}"


def _item_value(raw: bytes) -> str:
    # Text as rule 8 defines it (strict UTF-8, no control character but TAB); anything else is
    # shown as its hex digits, never as mojibake.
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.hex().upper()
    return raw.hex().upper() if _CONTROL.search(text) else text


def _check_controls(text: str, where: str, progress: _Progress) -> None:
    found = _CONTROL.search(text)
    if found is not None:
        raise progress.fail(
            "control_characters",
            f"{where} contains control character U+{ord(found.group()):04X} at character "
            f"{found.start() + 1}; only TAB is allowed",
        )


def _split_payload(
    text: str, *, plain: bool, progress: _Progress
) -> tuple[dict[str, str] | None, tuple[str, ...] | None]:
    # Rule 10.
    items = [(number, item.strip(_SWS)) for number, item in enumerate(text.split(";"), start=1)]
    items = [(number, item) for number, item in items if item]
    if not items:
        raise progress.fail("empty_payload", "the payload holds no values, only separators")
    with_equals = sum(1 for _, item in items if "=" in item)

    if with_equals == 0:
        values: list[str] = []
        for number, item in items:
            value = _percent_decode(item) if plain else item
            _check_value(value, f"positional value at item {number}", progress)
            values.append(value)
        return None, tuple(values)

    if with_equals != len(items):
        missing = next(number for number, item in items if "=" not in item)
        raise progress.fail(
            "missing_equals",
            f"item {missing} of the payload has no '=' while others do; send all items as key=value or none of them",
        )

    pairs: dict[str, str] = {}
    duplicates: set[str] = set()
    for number, item in items:
        raw_key, _, raw_value = item.partition("=")
        raw_key = raw_key.rstrip(_SWS)
        if not raw_key:
            raise progress.fail("empty_key", f"item {number} of the payload has an empty key")
        # Rule 11: percent-decoding happens after splitting, so %3B and %3D carry ';' and '='.
        key = _percent_decode(raw_key) if plain else raw_key
        value = _percent_decode(raw_value.lstrip(_SWS)) if plain else raw_value.lstrip(_SWS)
        if len(key) > CONTEXT_KEY_MAX:
            # Dynamics 365: a context variable name is at most 100 characters.
            raise progress.fail(
                "key_too_long",
                f"the key of item {number} is {len(key)} characters long; the limit is {CONTEXT_KEY_MAX}",
            )
        if plain:
            _check_controls(key, f"the key of item {number}", progress)
        _check_value(value, f"the value of item {number}", progress)
        if key in pairs and key not in duplicates:
            duplicates.add(key)
            progress.warnings.append(f"key {key!r} appears more than once; the last value wins")
        pairs[key] = value
    return pairs, None


def _check_value(value: str, where: str, progress: _Progress) -> None:
    if len(value) > CONTEXT_VALUE_MAX:
        # Dynamics 365: a context variable value is at most 4,000 characters.
        raise progress.fail(
            "value_too_long",
            f"{where} is {len(value)} characters long; the limit is {CONTEXT_VALUE_MAX}",
        )
    # Percent-decoding may have produced control characters (rule 11); hex text was checked whole.
    _check_controls(value, where, progress)


def _percent_decode(text: str) -> str:
    if "%" not in text:
        return text
    return _PERCENT_RUN.sub(_decode_percent_run, text)


def _decode_percent_run(match: re.Match[str]) -> str:
    run = match.group()
    octets = bytes.fromhex(run.replace("%", ""))
    try:
        return octets.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Decode the sequences that are valid UTF-8 and keep the others literally, as received.
    out: list[str] = []
    index = 0
    while index < len(octets):
        lead = octets[index]
        size = 1 if lead < 0x80 else 2 if 0xC2 <= lead <= 0xDF else 3 if 0xE0 <= lead <= 0xEF else 4
        chunk = octets[index : index + size]
        if lead <= 0xF4 and len(chunk) == size:
            try:
                out.append(chunk.decode("utf-8"))
            except UnicodeDecodeError:
                pass
            else:
                index += size
                continue
        out.append(run[3 * index : 3 * index + 3])
        index += 1
    return "".join(out)


def normalise_item_names(names: Mapping[str, str]) -> dict[str, str]:
    """A workstream's ``uui.items`` (item id → context variable), ids as two upper-case hex digits.

    Raises ``ValueError`` naming the problem: an id that is not two hex digits, an id given twice,
    ``FA`` (the UCID always fills ``UCID``: the one id agents, reports and every switch share), a
    name given to two items, or a name another item fills by default (``UCID``, ``Item<ID>``).
    """
    normalised: dict[str, str] = {}
    for raw_id, name in names.items():
        if not isinstance(raw_id, str) or not _ITEM_ID.fullmatch(raw_id):
            raise ValueError(f"item id {raw_id!r} is not two hex digits (e.g. C8)")
        ident = raw_id.upper()
        if ident in normalised:
            raise ValueError(f"item {ident} is named twice")
        if ident == UCID_ITEM:
            raise ValueError(f"item {UCID_ITEM} is the UCID: it always fills the context variable {UCID_VARIABLE}")
        default = _ITEM_VARIABLE.fullmatch(name)
        if name == UCID_VARIABLE or (default is not None and default.group(1).upper() != ident):
            raise ValueError(f"item {ident} cannot be named {name!r}: another item fills that variable")
        other = next((other for other, taken in normalised.items() if taken == name), None)
        if other is not None:
            raise ValueError(f"items {other} and {ident} are both named {name!r}")
        normalised[ident] = name
    return normalised


def report(
    value: str,
    *,
    max_length: int = ACS_UUI_MAX,
    default_encoding: str = "plain",
    profile: str = "standard",
    item_names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON of ``handoff decode --json``: never raises for a str value."""
    try:
        decoded = decode(
            value, max_length=max_length, default_encoding=default_encoding, profile=profile, item_names=item_names
        )
    except UUIError as exc:
        return report_error(exc)
    return report_decoded(decoded)


def report_error(exc: UUIError) -> dict[str, Any]:
    """The report of a value that could not be decoded."""
    return {
        "ok": False,
        "encoding": exc.encoding,
        "params": dict(exc.params),
        "pd": exc.pd,
        "text": exc.text,
        "pairs": None,
        "positional": None,
        "items": None,
        "warnings": list(exc.warnings),
        "error": {"kind": exc.kind, "message": exc.message},
    }


def report_decoded(decoded: DecodedUUI) -> dict[str, Any]:
    """The report of a decoded value."""
    return {
        "ok": True,
        "encoding": decoded.encoding,
        "params": dict(decoded.params),
        "pd": decoded.pd,
        "text": decoded.text,
        "pairs": None if decoded.pairs is None else dict(decoded.pairs),
        "positional": None if decoded.positional is None else list(decoded.positional),
        "items": None
        if decoded.items is None
        else [{"id": i.id, "name": i.name, "length": i.length, "value": i.value} for i in decoded.items],
        "warnings": list(decoded.warnings),
        "error": None,
    }


def fits_acs(value: str) -> bool:
    """True when ACS direct routing accepts ``value`` as a UUI value (length and characters)."""
    return len(value) <= ACS_UUI_MAX and _ACS_VALUE.fullmatch(value) is not None


def encode(
    values: Mapping[str, str] | Sequence[str],
    format: str = "plain",
    *,
    max_length: int = ACS_UUI_MAX,
    item_names: Mapping[str, str] | None = None,
) -> str:
    """Build a ``User-To-User`` value for the onward transfer; ``decode()`` gives ``values`` back.

    A mapping sends context variables as ``key=value`` items; a sequence sends positional values.
    ``format`` is ``plain`` (``k=v;k2=v2``, every character outside the ACS set, and ``;``, ``=``,
    ``%`` inside keys and values, percent-encoded as UTF-8 ``%HH``), ``hex`` (uppercase hex of the
    UTF-8 text plus ``;encoding=hex``), ``pd4`` (lowercase hex plus ``;pd=4``, no leading 0x04
    octet, as in the product documentation) or ``avaya-shared`` (see :func:`_encode_avaya_shared`;
    ``item_names`` is the workstream's ``uui.items``; :func:`decode_avaya_shared` gives it back).

    Raises :class:`UUIEncodeError` rather than cut or alter anything: a result over
    ``max_length``, an empty key, a key over 100 or a value over 4,000 characters, control
    characters, in hex/pd4 a ``;`` anywhere, an ``=`` in a key or positional value, leading or
    trailing whitespace (plain percent-encodes it), non-ASCII in pd4 (pd=4 declares IA5
    characters), an empty positional value, and in plain a key named encoding/purpose/content/pd
    (reserved header parameters: use hex or pd4).
    """
    if format not in ENCODE_FORMATS:
        raise UUIEncodeError(f"unknown UUI format {format!r}; expected one of {', '.join(ENCODE_FORMATS)}")
    if isinstance(values, (str, bytes)):
        raise TypeError("encode() takes a mapping of context variables or a sequence of values, not a string")
    if format == AVAYA_SHARED:
        return _encode_avaya_shared(values, item_names or {}, max_length)
    plain = format == "plain"

    items: list[str] = []
    if isinstance(values, Mapping):
        if not values:
            raise UUIEncodeError("there are no context variables to send")
        for index, (key, value) in enumerate(values.items(), start=1):
            _check_encode_key(key, index, format)
            where = f"the value of context variable {key!r}"
            if not isinstance(value, str):
                raise TypeError(f"{where} must be str, not {type(value).__name__}")
            _check_encode_text(value, where, format)
            if plain:
                items.append(f"{_percent_encode(key)}={_percent_encode(value)}")
            else:
                if ";" in value:
                    raise UUIEncodeError(f"{where} contains ';', which would split it in {format} format")
                items.append(f"{key}={value}")
    else:
        if not values:
            raise UUIEncodeError("there are no positional values to send")
        for index, value in enumerate(values, start=1):
            where = f"positional value {index}"
            if not isinstance(value, str):
                raise TypeError(f"{where} must be str, not {type(value).__name__}")
            if not value:
                # Decoding drops empty items, so an empty positional value would shift the others.
                raise UUIEncodeError(f"{where} is empty; positional values cannot be empty")
            _check_encode_text(value, where, format)
            if plain:
                items.append(_percent_encode(value))
            else:
                for char in ";=":
                    if char in value:
                        raise UUIEncodeError(
                            f"{where} contains {char!r}, which would change its meaning in {format} format"
                        )
                items.append(value)

    text = ";".join(items)
    if plain:
        result = text
    elif format == "hex":
        result = text.encode("utf-8").hex().upper() + ";encoding=hex"
    else:
        result = text.encode("utf-8").hex() + ";pd=4"
    if len(result) > max_length:
        raise UUIEncodeError(
            f"the {format} UUI would be {len(result)} characters long; the limit is {max_length} "
            "(ACS direct routing): send fewer or shorter context variables"
        )
    return result


def _check_encode_key(key: str, index: int, format: str) -> None:
    if not isinstance(key, str):
        raise TypeError(f"context variable {index} has a name of type {type(key).__name__}, not str")
    if not key:
        raise UUIEncodeError(f"context variable {index} has an empty name")
    if len(key) > CONTEXT_KEY_MAX:
        raise UUIEncodeError(
            f"the name of context variable {index} ({key[:20]!r}...) is {len(key)} characters long; "
            f"the limit is {CONTEXT_KEY_MAX} (Dynamics 365)"
        )
    where = f"the name of context variable {key!r}"
    _check_encode_text(key, where, format)
    if format == "plain":
        if key.lower() in HEADER_PARAMS:
            raise UUIEncodeError(
                f"context variable {key!r} cannot be sent in plain format: encoding, purpose, content "
                "and pd are UUI header parameters; use format hex or pd4, or rename the variable"
            )
    else:
        for char in ";=":
            if char in key:
                raise UUIEncodeError(f"{where} contains {char!r}, which would split it in {format} format")


def _check_encode_text(text: str, where: str, format: str) -> None:
    if len(text) > CONTEXT_VALUE_MAX:
        raise UUIEncodeError(f"{where} is {len(text)} characters long; the limit is {CONTEXT_VALUE_MAX}")
    control = _CONTROL.search(text)
    if control is not None:
        raise UUIEncodeError(
            f"{where} contains control character U+{ord(control.group()):04X} at character "
            f"{control.start() + 1}; only TAB is allowed"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UUIEncodeError(
            f"{where} is not valid Unicode text (unpaired surrogate at character {exc.start + 1})"
        ) from None
    if format in ("plain", AVAYA_SHARED):
        return
    # Decoding trims keys and values; plain percent-encodes the whitespace instead.
    if text != text.strip(_SWS):
        raise UUIEncodeError(f"{where} starts or ends with whitespace, which decoding would trim; use plain format")
    if format == "pd4" and not text.isascii():
        # pd=4 is the Q.931 discriminator for IA5 characters: ASCII only.
        raise UUIEncodeError(f"{where} has non-ASCII characters, which pd=4 (IA5) cannot carry; use hex")


def _percent_encode(text: str) -> str:
    return quote(text, safe=_PLAIN_SAFE)


def _encode_avaya_shared(
    values: Mapping[str, str] | Sequence[str], item_names: Mapping[str, str], max_length: int
) -> str:
    """Avaya shared UUI: ``00`` then one ``ID | LEN | VALUE`` item per context variable, upper-case hex
    plus ``;encoding=hex`` (the form Communication Manager sends, AudioCodes "Avaya UCID" [C]).

    ``UCID`` (20 digits) is item FA as its 8 bytes; ``Item<ID>`` (``ItemC8``) or a name of
    ``item_names`` is that item, its value as UTF-8 text. Refused: positional values, any other
    name, two variables for one item, a UCID that is not 20 digits within node 0-32767, sequence
    0-65535 and seconds below 2**32, a value over 255 bytes (LEN is one octet), control characters
    (decoding would show them as hex digits), and a result over ``max_length``.
    """
    if not isinstance(values, Mapping):
        raise UUIEncodeError(
            f"{AVAYA_SHARED} carries named items (UCID, Item<ID>), not positional values; give KEY=VALUE pairs"
        )
    if not values:
        raise UUIEncodeError("there are no context variables to send")
    ids_by_name = {name: ident for ident, name in item_names.items()}
    octets = bytearray([0x00])  # Q.931 "user-specific": the shared UUI discriminator [C]
    sent: dict[str, str] = {}
    for index, (key, value) in enumerate(values.items(), start=1):
        if not isinstance(key, str):
            raise TypeError(f"context variable {index} has a name of type {type(key).__name__}, not str")
        ident = _item_for(key, ids_by_name)
        if ident in sent:
            raise UUIEncodeError(f"context variables {sent[ident]!r} and {key!r} would both be item {ident}")
        sent[ident] = key
        where = f"the value of context variable {key!r}"
        if not isinstance(value, str):
            raise TypeError(f"{where} must be str, not {type(value).__name__}")
        if ident == UCID_ITEM:
            data = _ucid_bytes(value, where)
        else:
            _check_encode_text(value, where, AVAYA_SHARED)
            data = value.encode("utf-8")
            if len(data) > _ITEM_VALUE_MAX:
                raise UUIEncodeError(
                    f"{where} is {len(data)} bytes of UTF-8; a shared UUI item holds at most {_ITEM_VALUE_MAX}"
                )
        octets += bytes([int(ident, 16), len(data)]) + data
    result = octets.hex().upper() + ";encoding=hex"
    if len(result) > max_length:
        raise UUIEncodeError(
            f"the {AVAYA_SHARED} UUI would be {len(result)} characters long; the limit is {max_length} "
            "(ACS direct routing): send fewer or shorter items"
        )
    return result


def _item_for(name: str, ids_by_name: Mapping[str, str]) -> str:
    if name == UCID_VARIABLE:
        return UCID_ITEM
    if name in ids_by_name:
        return ids_by_name[name]
    default = _ITEM_VARIABLE.fullmatch(name)
    if default is None:
        raise UUIEncodeError(
            f"context variable {name!r} is not an item of {AVAYA_SHARED}: use UCID, Item<ID> "
            "(two hex digits, e.g. ItemC8) or a name of the workstream's uui.items"
        )
    ident = default.group(1).upper()
    if ident == UCID_ITEM:
        raise UUIEncodeError(f"item {UCID_ITEM} is the UCID: send it as {UCID_VARIABLE} (20 digits)")
    return ident


def _ucid_bytes(text: str, where: str) -> bytes:
    # The inverse of _ucid_text: NNNNN SSSSS TTTTTTTTTT → big-endian uint16, uint16, uint32 [D].
    if len(text) != 20 or not (text.isascii() and text.isdigit()):
        raise UUIEncodeError(f"{where} is not a UCID: 20 digits (5 node, 5 sequence, 10 seconds)")
    node, sequence, seconds = int(text[:5]), int(text[5:10]), int(text[10:])
    for part, number, limit in (
        ("node id (digits 1-5)", node, _UCID_NODE_MAX),
        ("sequence (digits 6-10)", sequence, 0xFFFF),
        ("seconds (digits 11-20)", seconds, 0xFFFFFFFF),
    ):
        if number > limit:
            raise UUIEncodeError(f"{where} is not a UCID: its {part} is above {limit}")
    return node.to_bytes(2, "big") + sequence.to_bytes(2, "big") + seconds.to_bytes(4, "big")
