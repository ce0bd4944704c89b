"""SIP requests as text: read the way people paste them and the way they arrive on a socket.

Pure: no I/O. ``handoff decode`` and ``handoff route`` read pasted INVITEs and header lines with
:func:`read_pasted`; ``handoff listen`` frames a TCP stream with :func:`frame`, reads each
message with :func:`parse`, decides the answer with :func:`reply_code` and builds it with
:func:`response`. :func:`incoming_call` turns an INVITE into the same :class:`IncomingCall` that
the app routes, so a pasted or received INVITE gets exactly the decision a transferred call gets.

Why not a library: the maintained pure-Python parser on PyPI (``sipmessage``) reads well-formed
messages only: CRLF line ends, a blank line before the body, no folded header lines. Pasted text
has LF line ends, log lines around the message, no blank line and folded headers, and the core
imports only the standard library's pure parts (tests/core/test_layers.py). So this module keeps
a small reader, with the RFC 3261 facts beside the branches they decide.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from shared.core import events
from shared.core.acs import PHONE_RAW_ID_PREFIX

#: Compact header names: RFC 3261 §7.3.3 and §20 (c, e, f, i, k, l, m, s, t, v), the others from
#: IANA's SIP header field registry (a, d, j RFC 3841; b RFC 3892; o, u RFC 6665; r RFC 3515;
#: x RFC 4028; y RFC 8224). User-to-User (RFC 7433) has none.
COMPACT_FORMS: Mapping[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

#: RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~").
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
# §7.1 Request-Line = Method SP Request-URI SP SIP-Version; the version is case-insensitive (§7.1).
_REQUEST_LINE = re.compile(rf"({_TOKEN}) (\S+) ([Ss][Ii][Pp]/\d+\.\d+)")
# §7.2 Status-Line = SIP-Version SP Status-Code SP Reason-Phrase.
_STATUS_LINE = re.compile(r"[Ss][Ii][Pp]/\d+\.\d+ (\d{3})(?: (.*))?")
# §7.3.1 / §25.1: field-name HCOLON field-value, HCOLON = *( SP / HTAB ) ":" SWS.
_HEADER_LINE = re.compile(rf"({_TOKEN})[ \t]*:[ \t]*(.*)")
_WSP = " \t"
#: The largest header section and body ``frame`` waits for before it gives up on a stream.
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024

#: RFC 3261 §21 reason phrases of the final responses ``handoff listen`` may send.
REASONS: Mapping[int, str] = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    410: "Gone",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
}
#: What ``--reply`` may answer an INVITE with: failures only. A 2xx would set up a call the probe
#: cannot carry; a 3xx would send the SBC somewhere else.
FAILURE_REPLIES = tuple(code for code in REASONS if code >= 400)
#: What the probe answers (the Allow header of its OPTIONS 200 and its 405s, §20.5).
ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "OPTIONS")


class SipError(ValueError):
    """A message that cannot be read; the message names the line."""


@dataclass(frozen=True)
class Header:
    name: str  # the full name: compact forms expanded (v → Via), else as written
    written: str  # the name as written (v, user-to-user, User-To-User)
    value: str  # folded continuation lines joined with one SP (§7.3.1), trimmed


@dataclass(frozen=True)
class SipMessage:
    """A request, a response, or (pasted) a bare block of header lines."""

    method: str | None  # INVITE, OPTIONS, ...; None for a response or a bare header block
    uri: str | None  # the Request-URI
    status: int | None  # a response's status code
    headers: tuple[Header, ...]
    body: str = ""
    line: int = 1  # the line of the pasted text it starts on (1-based)

    @property
    def start_line(self) -> str | None:
        if self.method is not None:
            return f"{self.method} {self.uri} SIP/2.0"
        return None if self.status is None else f"SIP/2.0 {self.status}"

    def values(self, name: str) -> list[str]:
        """Every value of a header, in order. §7.3.5: names are case-insensitive; §7.3.3: the
        compact form is the same header."""
        wanted = _full_name(name).lower()
        return [h.value for h in self.headers if h.name.lower() == wanted]

    def get(self, name: str) -> str | None:
        """A header's value; repeated rows combined with commas, as §7.3.1 allows without
        changing the meaning (User-to-User rows are counted instead: :func:`several_uui_rows`)."""
        found = self.values(name)
        return ",".join(found) if found else None


def _full_name(name: str) -> str:
    return COMPACT_FORMS.get(name.lower(), name) if len(name) == 1 else name


def _lines(text: str) -> list[str]:
    # §7: lines end in CRLF; pasted text often has bare LF. A leading BOM (Windows editors) goes.
    return [line.removesuffix("\r") for line in text.removeprefix("\ufeff").split("\n")]


def _dedent(lines: list[str]) -> list[str]:
    """Pasted text indented as a whole (a mail, a ticket) is moved left, or every line would read
    as a folded continuation of the one before."""
    indents = [len(line) - len(line.lstrip(_WSP)) for line in lines if line.strip(_WSP)]
    cut = min(indents, default=0)
    return [line[cut:] for line in lines] if cut else lines


def _start(line: str) -> tuple[str | None, str | None, int | None] | None:
    request = _REQUEST_LINE.fullmatch(line.rstrip(_WSP))
    if request is not None:
        return request.group(1), request.group(2), None
    status = _STATUS_LINE.fullmatch(line.rstrip(_WSP))
    if status is not None:
        return None, None, int(status.group(1))
    return None


def _headers(lines: Iterable[tuple[int, str]], *, strict: bool) -> tuple[list[Header], int | None]:
    """Header lines up to the blank line; returns the headers and the line number the body starts
    on (None when the lines ran out first)."""
    headers: list[Header] = []
    for number, line in lines:
        if not line.strip(_WSP):
            return headers, number + 1  # §7: an empty line ends the header section
        if line[0] in _WSP:
            # §7.3.1: a line starting with SP or HTAB continues the header before it; the line
            # break and the leading whitespace read as one SP.
            if headers:
                last = headers[-1]
                headers[-1] = Header(last.name, last.written, f"{last.value} {line.strip(_WSP)}".strip(_WSP))
                continue
            if strict:
                raise SipError(f"line {number} continues a header, but no header came before it")
            continue
        match = _HEADER_LINE.fullmatch(line)
        if match is None:
            if strict:
                raise SipError(f"line {number} is not a header field (name: value)")
            continue  # pasted: log lines, SDP without the blank line before it
        written = match.group(1)
        headers.append(Header(_full_name(written), written, match.group(2).strip(_WSP)))
    return headers, None


def parse(text: str) -> SipMessage:
    """One message as it arrived on a socket (its body already framed by the transport).

    §7.5: CRLFs before the start line are ignored; a start line that is neither a Request-Line nor
    a Status-Line, or a line in the header section that is not a header, is an error."""
    lines = _lines(text)
    first = 0
    while first < len(lines) and not lines[first].strip(_WSP):
        first += 1
    if first == len(lines):
        raise SipError("the message is empty")
    start = _start(lines[first])
    if start is None:
        raise SipError(f"line {first + 1} is neither a SIP request line nor a status line")
    numbered = ((i + 1, line) for i, line in enumerate(lines) if i > first)
    headers, body_at = _headers(numbered, strict=True)
    body = "\n".join(lines[body_at - 1 :]) if body_at is not None else ""
    method, uri, status = start
    return SipMessage(method, uri, status, tuple(headers), body, first + 1)


def looks_like_headers(text: str) -> bool:
    """True when pasted text holds a SIP start line or a ``Name: value`` header line, so it is
    read as headers, not as one bare User-to-User value (which never has a token before a colon)."""
    return any(_start(line) or _HEADER_LINE.fullmatch(line) for line in _dedent(_lines(text.strip())))


def read_pasted(text: str) -> list[SipMessage]:
    """Every message in pasted text: sngrep, Wireshark "Follow SIP/UDP stream", SBC logs.

    Each start line begins a message; lines before the first one, and lines in a header section
    that are not headers, are skipped (timestamps, log prefixes, an SDP body without its blank
    line). Text without any start line is one bare block of header lines (``User-to-User: …``)."""
    lines = _dedent(_lines(text))
    starts = [i for i, line in enumerate(lines) if _start(line)]
    if not starts:
        headers, _ = _headers(((i + 1, line) for i, line in enumerate(lines) if line.strip(_WSP)), strict=False)
        return [SipMessage(None, None, None, tuple(headers))] if headers else []
    messages = []
    for index, first in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(lines)
        method, uri, status = _start(lines[first]) or (None, None, None)
        headers, body_at = _headers(((i + 1, lines[i]) for i in range(first + 1, end)), strict=False)
        body = "\n".join(lines[body_at - 1 : end]).strip("\n") if body_at is not None else ""
        messages.append(SipMessage(method, uri, status, tuple(headers), body, first + 1))
    return messages


def parse_header_line(text: str) -> tuple[str, str] | None:
    """``Name: value`` as (name, value), compact names expanded; None when it is not one."""
    match = _HEADER_LINE.fullmatch(text.strip())
    return (_full_name(match.group(1)), match.group(2).strip(_WSP)) if match else None


# ---- Stream framing (TCP) ------------------------------------------------------------------


class FramingError(ValueError):
    """The stream cannot carry on: a header section too large, or a Content-Length unreadable."""


_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\S*)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)


def frame(buffer: bytes) -> tuple[bytes | None, int]:
    """(the first whole message of a stream, bytes consumed); (None, k) while it is incomplete.

    §7.5: CRLFs before a start line are skipped (they are also RFC 5626 §3.5.1 keep-alives).
    §18.3: on a stream the Content-Length header gives the body's size in octets; it MUST be
    present, so a missing one reads as 0 (the message still gets its answer)."""
    skipped = len(buffer) - len(buffer.lstrip(b"\r\n"))
    rest = buffer[skipped:]
    ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := rest.find(sep)) >= 0]
    if not ends:
        if len(rest) > MAX_HEADER_BYTES:
            raise FramingError(f"no end of the header section in {MAX_HEADER_BYTES} bytes")
        return None, skipped
    end, size = min(ends)
    head = rest[:end]
    lengths = _CONTENT_LENGTH.findall(head)
    if len(set(lengths)) > 1:
        raise FramingError("the message has Content-Length headers that disagree")
    if lengths and not lengths[0].isdigit():
        raise FramingError("the Content-Length is not a number")
    body = int(lengths[0]) if lengths else 0
    if body > MAX_BODY_BYTES:
        raise FramingError(f"a body of {body} bytes is over the {MAX_BODY_BYTES} this probe reads")
    whole = end + size + body
    if len(rest) < whole:
        return None, skipped
    return rest[:whole], skipped + whole


def datagram_body_short(data: bytes) -> bool:
    """§18.3: over UDP a body shorter than its Content-Length is an error (a request gets 400);
    bytes past it are discarded."""
    ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := data.find(sep)) >= 0]
    if not ends:
        return False
    end, size = min(ends)
    lengths = _CONTENT_LENGTH.findall(data[:end])
    return bool(lengths) and lengths[0].isdigit() and len(data) - end - size < int(lengths[0])


# ---- Answers (the probe is a UAS that never accepts a call) -----------------------------------


def reply_code(method: str, invite_reply: int, *, known_transaction: bool) -> int | None:
    """The final response to a request, or None when none is sent."""
    if method == "ACK":
        return None  # §17.2.1: the ACK to a non-2xx final response ends the transaction, unanswered
    if method == "INVITE":
        return invite_reply  # the operator's choice; sent at once, so no 100 Trying (§17.2.1: 200 ms)
    if method == "OPTIONS":
        return 200  # §11.2: answered as an INVITE would be, here 200 with Allow
    if method == "CANCEL":
        # §9.2: a CANCEL that matches a transaction gets 200 (ours have their final answer already,
        # so it changes nothing); one that matches none gets 481.
        return 200 if known_transaction else 481
    if method == "BYE":
        return 481  # §15.1.2: the probe never sets up a dialog, so no BYE can match one
    return 405  # §8.2.1: a method the UAS does not support gets 405 with an Allow header


def _via_with_received(via: str, source: tuple[str, int]) -> str:
    """§18.2.1: the top Via gets ``received`` when its sent-by host is not the packet's source
    address; RFC 3581 §4: an empty ``rport`` is filled with the source port."""
    head, _, params = via.partition(";")
    sent_by = head.split()[-1] if head.split() else ""
    host = sent_by[1 : sent_by.find("]")] if sent_by.startswith("[") else sent_by.rsplit(":", 1)[0]
    names = [p.split("=", 1)[0].strip().lower() for p in params.split(";")] if params else []
    parts = params.split(";") if params else []
    if "rport" in names:
        parts = [f"rport={source[1]}" if p.strip().lower() == "rport" else p for p in parts]
    if (host != source[0] or "rport" in names) and "received" not in names:
        parts.append(f"received={source[0]}")
    return head + "".join(";" + p for p in parts)


def response(request: SipMessage, code: int, *, to_tag: str, source: tuple[str, int]) -> str:
    """The final response to ``request`` (§8.2.6): its Via rows in order (the top one marked with
    the source address, §18.2.1), From, To with a tag added when it had none (§8.2.6.2), Call-ID
    and CSeq copied; Allow on 200 to OPTIONS and on 405; no body."""
    lines = [f"SIP/2.0 {code} {REASONS.get(code, 'Rejected')}"]
    vias = [v.strip() for row in request.values("Via") for v in _split_commas(row)]
    for i, via in enumerate(vias):
        lines.append(f"Via: {_via_with_received(via, source) if i == 0 else via}")
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.get(name)
        if value is None:
            continue
        if name == "To" and not re.search(r";\s*tag\s*=", value.rsplit(">", 1)[-1], re.IGNORECASE):
            value = f"{value};tag={to_tag}"
        lines.append(f"{name}: {value}")
    if code == 405 or (code == 200 and request.method == "OPTIONS"):
        lines.append("Allow: " + ", ".join(ALLOWED_METHODS))
    if code == 200 and request.method == "OPTIONS":
        lines.append("Accept: application/sdp")  # §11.2: what an INVITE to us may carry
    lines.append("Server: handoff listen")
    lines.append("Content-Length: 0")
    return "\r\n".join(lines) + "\r\n\r\n"


def missing_for_response(request: SipMessage) -> list[str]:
    """The headers §8.1.1 makes mandatory in a request that a response copies; without them no
    answer can reach the client's transaction."""
    return [name for name in ("Via", "From", "To", "Call-ID", "CSeq") if request.get(name) is None]


def transaction_key(request: SipMessage) -> tuple[str, str, str]:
    """What identifies a server transaction for retransmissions and ACK/CANCEL matching: the top
    Via's branch (§17.2.3), the Call-ID and the CSeq number (ACK and CANCEL share the INVITE's)."""
    vias = request.values("Via")
    branch = ""
    if vias:
        match = re.search(r";\s*branch\s*=\s*([^;,\s]+)", _split_commas(vias[0])[0], re.IGNORECASE)
        branch = match.group(1) if match else ""
    cseq = (request.get("CSeq") or "").split()
    return branch, request.get("Call-ID") or "", cseq[0] if cseq else ""


def _split_commas(value: str) -> list[str]:
    """Header values combined with commas (§7.3.1), outside quotes and angle brackets."""
    parts: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for char in value:
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "<":
            depth += 1
        elif not quoted and char == ">":
            depth = max(0, depth - 1)
        if char == "," and not quoted and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


# ---- An INVITE as the IncomingCall the app routes ----------------------------------------------

# RFC 3966 §5.1.1: visual separators in a phone number carry no meaning.
_VISUAL = re.compile(r"[-.()]")
_E164 = re.compile(r"\+\d{1,15}")


def name_addr(value: str) -> tuple[str | None, str]:
    """(display name, URI) of a From/To value. §20.10: inside ``<>`` the URI may carry parameters;
    without them, what follows ``;`` belongs to the header, not the URI."""
    value = value.strip()
    display = None
    if value.startswith('"'):
        end = 1
        while end < len(value) and value[end] != '"':
            end += 2 if value[end] == "\\" else 1
        display = value[1:end].replace('\\"', '"')
        value = value[end + 1 :].strip()
    if "<" in value:
        before, _, after = value.partition("<")
        display = display or before.strip() or None
        return display, after.partition(">")[0].strip()
    return display, value.split(";", 1)[0].strip()


def phone_number(uri: str) -> str | None:
    """The E.164 number a ``tel:`` or ``sip(s):`` URI names (``+`` and digits), else None."""
    scheme, _, rest = uri.partition(":")
    scheme = scheme.lower()
    if scheme == "tel":
        user = rest
    elif scheme in ("sip", "sips") and "@" in rest:
        user = rest.rsplit("@", 1)[0].split(":", 1)[0]  # §19.1.1: userinfo = user [":" password]
    else:
        return None
    # §19.1.6: a telephone-subscriber user part may carry parameters (;isub=, ;phone-context=).
    number = _VISUAL.sub("", unquote(user.split(";", 1)[0]))
    return number if _E164.fullmatch(number) else None


def _party(uri: str | None, where: str, warnings: list[str]) -> events.Party | None:
    if not uri:
        warnings.append(f"the INVITE has no {where}")
        return None
    number = phone_number(uri)
    if number is not None:
        return events.Party(kind="phonenumber", raw_id=PHONE_RAW_ID_PREFIX + number, address=number)
    warnings.append(f"the {where} ({uri}) names no E.164 number (+ and digits), the form workstreams own")
    return events.Party(kind="unknown", raw_id=uri, address=uri)


def context_headers(message: SipMessage) -> dict[str, str]:
    """The headers ACS hands the app in ``customContext.sipHeaders``: User-to-User (any spelling)
    and the X- headers; repeated rows combined (§7.3.1), the first spelling kept."""
    found: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for header in message.headers:
        lower = header.written.lower()
        if lower.replace("-", "") != "usertouser" and not lower.startswith("x-"):
            continue
        key = spelled.setdefault(lower, header.written)
        found[key] = f"{found[key]},{header.value}" if key in found else header.value
    return found


def uui_rows(message: SipMessage, name: str) -> int:
    """How many rows of the User-to-User header ``name`` (in any case) the message carries."""
    return sum(1 for h in message.headers if h.written.lower() == name.lower())


def several_uui_rows(name: str, rows: int) -> str:
    """Several User-to-User rows are several UUI values (RFC 7433 §4.1, RFC 3261 §7.3.1). Combined
    they would read as one plain value with a comma in it, so none is used, as the codec refuses
    several values instead of picking one (uui.md, multiple_values)."""
    return f"the INVITE carries {rows} {name} rows: several UUI values, none of which is picked; send one"


def incoming_call(message: SipMessage, *, label: str, caller_expected: bool = True) -> events.IncomingCall:
    """The IncomingCall an INVITE becomes. Called party: the Request-URI's number, else the To
    header's (the Request-URI is where the request goes, §8.1.1.1; To may still name an earlier
    target); caller: From (a missing one is a warning when ``caller_expected``). ``label`` names
    the call when it has no Call-ID."""
    warnings: list[str] = []
    to_uri = name_addr(message.get("To") or "")[1]
    if message.uri and phone_number(message.uri):
        called = _party(message.uri, "Request-URI", warnings)
    elif to_uri and phone_number(to_uri):
        called = _party(to_uri, "To header", warnings)
    else:
        called = _party(message.uri or to_uri, "Request-URI" if message.uri else "To header", warnings)
    display, from_uri = name_addr(message.get("From") or "")
    caller = _party(from_uri, "From header", warnings) if from_uri or caller_expected else None
    sip = context_headers(message)
    uui = events.find_uui(sip)
    rows = uui_rows(message, uui[0]) if uui else 1
    if uui and rows > 1:
        warnings.append(several_uui_rows(uui[0], rows) + "; the call is routed without User-to-User context")
        uui = None
    call_id = message.get("Call-ID") or label
    return events.IncomingCall(
        event_id=call_id,
        event_schema="sip",
        event_time=None,
        called=called,
        caller=caller,
        incoming_call_context=f"sip:{call_id}",
        correlation_id=None,
        server_call_id=None,
        caller_display_name=display,
        has_custom_context=bool(sip),
        uui=uui[1] if uui else None,
        uui_header=uui[0] if uui else None,
        custom_headers=tuple(events.custom_headers(sip, "sip")),
        sip_headers=sip,
        warnings=tuple(warnings),
    )


def call_from_parts(to: str, caller: str | None, headers: Iterable[tuple[str, str]]) -> events.IncomingCall:
    """The IncomingCall of ``handoff route --to … [--from …] [--uui …] [--header …]``: an INVITE
    to that number (an E.164 number or a URI) with those headers."""

    def uri(address: str) -> str:
        return address if ":" in address else f"tel:{address}"

    rows = [Header(_full_name(n), n, v) for n, v in headers]
    rows.append(Header("To", "To", f"<{uri(to)}>"))
    if caller:
        rows.append(Header("From", "From", f"<{uri(caller)}>"))
    message = SipMessage("INVITE", uri(to), None, tuple(rows))
    return incoming_call(message, label="command line", caller_expected=False)
