"""SIP text as pasted and as received: the reader, the stream framing, the answers, the IncomingCall."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core import routing, sip
from shared.core.config import Routing

# What sngrep's "save as .txt" and many SBC logs look like: a line about the packet, then the
# message with CRLF line ends, the SDP, then the next message.
SNGREP = (
    "2026/11/30 10:00:00.123456 10.0.0.1:5060 -> 10.0.0.2:5060\r\n"
    "INVITE sip:+14255550100@sbc.example.com;user=phone SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n"
    'From: "Retail IVR" <sip:+14255550177@ivr.example.com>;tag=1928301774\r\n'
    "To: <sip:+14255550100@sbc.example.com>\r\n"
    "Call-ID: a84b4c76e66710@ivr.example.com\r\n"
    "CSeq: 314159 INVITE\r\n"
    "User-to-User: 3530303131323233333434353b363738393b3132;pd=4\r\n"
    "X-MS-Custom-Intent: billing\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 26\r\n"
    "\r\n"
    "v=0\r\n"
    "o=ivr 1 1 IN IP4 x\r\n"
    "\r\n"
    "2026/11/30 10:00:00.125000 10.0.0.2:5060 -> 10.0.0.1:5060\r\n"
    "SIP/2.0 100 Trying\r\n"
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n"
    "Content-Length: 0\r\n"
)


def test_a_pasted_trace_gives_each_message_with_its_headers() -> None:
    invite, trying = sip.read_pasted(SNGREP)
    assert (invite.method, invite.uri, invite.line) == ("INVITE", "sip:+14255550100@sbc.example.com;user=phone", 2)
    assert invite.get("user-to-user") == "3530303131323233333434353b363738393b3132;pd=4"
    assert invite.get("CALL-ID") == "a84b4c76e66710@ivr.example.com"  # §7.3.5: names are case-insensitive
    assert invite.body.startswith("v=0")
    assert (trying.method, trying.status) == (None, 100)


def test_compact_names_read_as_the_full_header() -> None:
    text = (
        "INVITE tel:+14255550100 SIP/2.0\nv: SIP/2.0/TCP a\nf: <sip:x@y>;tag=1\nt: <tel:+14255550100>\ni: id1\nl: 0\n"
    )
    [message] = sip.read_pasted(text)
    assert message.get("Via") == "SIP/2.0/TCP a" and message.get("from") == "<sip:x@y>;tag=1"
    assert message.get("Call-ID") == "id1" and message.get("Content-Length") == "0"
    assert [h.written for h in message.headers][:2] == ["v", "f"]


def test_a_folded_header_is_one_value_with_one_space_per_line_break() -> None:
    # RFC 3261 §7.3.1: the line break and the leading whitespace read as a single SP.
    text = "User-to-User: 7369706B6579313D\r\n\t  73697076616C31\r\n   ;encoding=hex\r\nX-Next: 1\r\n"
    [block] = sip.read_pasted(text)
    assert block.get("User-to-User") == "7369706B6579313D 73697076616C31 ;encoding=hex"
    assert block.get("X-Next") == "1"


def test_repeated_rows_combine_with_commas() -> None:
    # §7.3.1: rows of one header combine into one comma-separated value; for User-to-User that is
    # several UUI values, which the codec refuses (multiple_values) instead of picking one.
    [block] = sip.read_pasted("Via: a\nUser-to-User: a=1\nvia: b\nuser-to-user: b=2\n")
    assert block.values("Via") == ["a", "b"] and block.get("User-to-User") == "a=1,b=2"
    assert sip.context_headers(block) == {"User-to-User": "a=1,b=2"}


def test_an_indented_paste_is_moved_left_rather_than_read_as_continuations() -> None:
    [message] = sip.read_pasted("    INVITE sip:+1@x SIP/2.0\n    Call-ID: c\n    User-to-User: a=1\n")
    assert message.method == "INVITE" and message.get("User-to-User") == "a=1"


def test_lines_that_are_not_headers_are_skipped_in_a_paste_but_fail_a_strict_parse() -> None:
    text = "INVITE sip:+1@x SIP/2.0\r\nCall-ID: c\r\nv=0\r\nUser-to-User: a=1\r\n\r\n"
    [pasted] = sip.read_pasted(text)
    assert pasted.get("User-to-User") == "a=1"
    with pytest.raises(sip.SipError, match="line 3 is not a header field"):
        sip.parse(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3530303131323233333434353b363738393b3132;pd=4", False),
        ("Intent=billing;Priority=7", False),
        ("7369706B6579313D73697076616C31", False),
        ("User-to-User: a=1", True),
        ("user-to-user:a=1", True),
        ("INVITE sip:+14255550100@x SIP/2.0", True),
    ],
)
def test_a_bare_value_is_told_from_header_lines(text: str, expected: bool) -> None:
    assert sip.looks_like_headers(text) is expected


def test_strict_parse_skips_leading_crlf_and_refuses_what_is_not_sip() -> None:
    # §7.5: CRLFs before the start line are ignored.
    message = sip.parse("\r\n\r\nOPTIONS sip:probe@127.0.0.1 SIP/2.0\r\nCall-ID: x\r\n\r\n")
    assert message.method == "OPTIONS" and message.line == 3
    for bad in ("", "\x00\xffgarbage", "HELLO\r\n\r\n", "INVITE sip:x SIP/2.0\r\n continued\r\n\r\n"):
        with pytest.raises(sip.SipError):
            sip.parse(bad)


# ---- framing --------------------------------------------------------------------------------


def test_frame_waits_for_the_whole_body_that_content_length_announces() -> None:
    # §18.3: on a stream Content-Length gives the body's size; the next message follows at once.
    head = b"INVITE sip:x SIP/2.0\r\nl: 5\r\n\r\n"
    assert sip.frame(head + b"ab") == (None, 0)
    message, used = sip.frame(head + b"abcde" + b"OPTIONS sip:x SIP/2.0\r\n\r\n")
    assert message == head + b"abcde" and used == len(head) + 5


def test_frame_skips_keepalive_crlfs_and_reads_a_missing_length_as_zero() -> None:
    message, used = sip.frame(b"\r\n\r\nACK sip:x SIP/2.0\r\nCall-ID: a\r\n\r\nrest")
    assert message == b"ACK sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n" and used == 4 + len(message)
    assert sip.frame(b"\r\n\r\n") == (None, 4)


@pytest.mark.parametrize(
    "data",
    [
        b"INVITE sip:x SIP/2.0\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"INVITE sip:x SIP/2.0\r\nContent-Length: lots\r\n\r\n",
        b"INVITE sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n",
        b"X" * (sip.MAX_HEADER_BYTES + 1),
    ],
    ids=["disagreeing-lengths", "not-a-number", "too-large-a-body", "no-end-of-headers"],
)
def test_frame_gives_up_on_a_stream_it_cannot_carry_on(data: bytes) -> None:
    with pytest.raises(sip.FramingError):
        sip.frame(data)


def test_a_datagram_shorter_than_its_content_length_is_noticed() -> None:
    assert sip.datagram_body_short(b"INVITE sip:x SIP/2.0\r\nContent-Length: 10\r\n\r\nabc")
    assert not sip.datagram_body_short(b"INVITE sip:x SIP/2.0\r\nContent-Length: 3\r\n\r\nabcdef")


# ---- answers --------------------------------------------------------------------------------

INVITE = (
    "INVITE sip:+14255550100@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP sbc.example.com:5070;branch=z9hG4bKa;rport\r\n"
    "v: SIP/2.0/UDP ivr.example.com;branch=z9hG4bKb\r\n"
    "From: <sip:+14255550177@ivr>;tag=f1\r\n"
    "To: <sip:+14255550100@sbc>\r\n"
    "Call-ID: c1\r\n"
    "CSeq: 7 INVITE\r\n"
    "\r\n"
)


def test_a_response_copies_what_section_8_2_6_says_and_tags_the_to() -> None:
    text = sip.response(sip.parse(INVITE), 480, to_tag="t9", source=("127.0.0.1", 40000))
    lines = text.split("\r\n")
    assert lines[0] == "SIP/2.0 480 Temporarily Unavailable"
    # Both Via rows in order; the top one marked with where the request came from (§18.2.1,
    # RFC 3581 §4 fills the empty rport).
    assert lines[1] == "Via: SIP/2.0/UDP sbc.example.com:5070;branch=z9hG4bKa;rport=40000;received=127.0.0.1"
    assert lines[2] == "Via: SIP/2.0/UDP ivr.example.com;branch=z9hG4bKb"
    assert "From: <sip:+14255550177@ivr>;tag=f1" in lines and "To: <sip:+14255550100@sbc>;tag=t9" in lines
    assert "Call-ID: c1" in lines and "CSeq: 7 INVITE" in lines
    assert text.endswith("Content-Length: 0\r\n\r\n")


def test_a_to_tag_already_there_is_kept() -> None:
    request = sip.parse(INVITE.replace("To: <sip:+14255550100@sbc>", "To: <sip:+14255550100@sbc>;tag=old"))
    assert "To: <sip:+14255550100@sbc>;tag=old\r\n" in sip.response(request, 481, to_tag="new", source=("h", 1))


def test_options_gets_200_with_allow() -> None:
    options = sip.parse(INVITE.replace("INVITE", "OPTIONS"))
    text = sip.response(
        options, sip.reply_code("OPTIONS", 480, known_transaction=False) or 0, to_tag="t", source=("h", 1)
    )
    assert text.startswith("SIP/2.0 200 OK\r\n") and "Allow: INVITE, ACK, CANCEL, OPTIONS\r\n" in text


@pytest.mark.parametrize(
    ("method", "known", "code"),
    [
        ("INVITE", False, 486),
        ("ACK", True, None),
        ("OPTIONS", False, 200),
        ("CANCEL", True, 200),
        ("CANCEL", False, 481),
        ("BYE", False, 481),
        ("REGISTER", False, 405),
        ("invite", False, 405),  # method names are case-sensitive (§7.1)
    ],
)
def test_what_each_method_is_answered_with(method: str, known: bool, code: int | None) -> None:
    assert sip.reply_code(method, 486, known_transaction=known) == code


def test_a_request_without_the_headers_a_response_copies_is_named() -> None:
    assert sip.missing_for_response(sip.parse("INVITE sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n")) == [
        "Via",
        "From",
        "To",
        "CSeq",
    ]


# ---- an INVITE as the IncomingCall the app routes ----------------------------------------------


def test_an_invite_routes_like_the_event_acs_would_raise(app_routing: Routing) -> None:
    [invite, _] = sip.read_pasted(SNGREP)
    call = sip.incoming_call(invite, label="x")
    assert call.called_address == "+14255550100" and call.caller is not None
    assert call.caller.address == "+14255550177" and call.caller_display_name == "Retail IVR"
    assert (call.uui_header, call.event_id) == ("User-to-User", "a84b4c76e66710@ivr.example.com")
    assert [(h.name, h.value) for h in call.custom_headers] == [("Intent", "billing")]
    assert set(call.sip_headers) == {"User-to-User", "X-MS-Custom-Intent"}  # not Via, From, Content-Type...
    decision = routing.route(call, app_routing)
    assert (decision.workstream, decision.queue, decision.rule) == ("retail-ivr", "agents", "fallback")
    assert decision.context_text == {
        "AccountNumber": "500112233445",
        "Pin": "6789",
        "LanguageCode": "12",
        "Intent": "billing",
    }


@pytest.mark.parametrize(
    ("uri", "number"),
    [
        ("sip:+14255550100@sbc.example.com;user=phone", "+14255550100"),
        ("sips:+14255550100:secret@sbc.example.com", "+14255550100"),
        ("tel:+1-425-555-0100;phone-context=example.com", "+14255550100"),  # RFC 3966 visual separators
        ("sip:%2B14255550100@sbc", "+14255550100"),
        ("sip:+14255550100;isub=12@sbc", "+14255550100"),
        ("sip:4255550100@sbc", None),
        ("sip:sbc.example.com", None),
        ("mailto:a@b", None),
    ],
)
def test_the_e164_number_of_a_uri(uri: str, number: str | None) -> None:
    assert sip.phone_number(uri) == number


def test_a_called_number_without_plus_is_routed_as_unknown_with_a_warning(app_routing: Routing) -> None:
    [invite] = sip.read_pasted("INVITE sip:4255550100@sbc SIP/2.0\nTo: <sip:4255550100@sbc>\nFrom: <sip:+1@x>\n")
    call = sip.incoming_call(invite, label="x")
    assert call.called_address == "sip:4255550100@sbc"
    assert any("no E.164 number" in w for w in call.warnings)
    assert routing.route(call, app_routing).rule == "unknown-number"


def test_the_to_header_names_the_called_number_when_the_request_uri_does_not() -> None:
    [invite] = sip.read_pasted("INVITE sip:trunk@sbc SIP/2.0\nTo: <tel:+14255550100>\nFrom: <sip:+1@x>\n")
    assert sip.incoming_call(invite, label="x").called_address == "+14255550100"


@pytest.mark.parametrize(
    ("value", "display", "uri"),
    [
        ('"Doe, \\"J\\"" <sip:+1@x;user=phone>;tag=9', 'Doe, "J"', "sip:+1@x;user=phone"),
        ("Alice <sip:a@x>", "Alice", "sip:a@x"),
        ("sip:+1@x;tag=9", None, "sip:+1@x"),  # §20.10: without <>, ;tag belongs to the header
    ],
)
def test_name_addr(value: str, display: str | None, uri: str) -> None:
    assert sip.name_addr(value) == (display, uri)


def test_call_from_parts_is_an_invite_to_that_number() -> None:
    call = sip.call_from_parts("+14255550100", None, [("User-to-User", "a=1"), ("X-MS-Custom-B", "2")])
    assert call.called_address == "+14255550100" and call.caller is None and call.warnings == ()
    assert call.uui == "a=1" and [h.name for h in call.custom_headers] == ["B"]


def test_two_uui_rows_are_not_merged_into_one_value(app_routing: Routing) -> None:
    # Combined by §7.3.1 they would read "Intent=billing,Priority=9": one plain pair Intent with
    # the value "billing,Priority=9". Neither row is picked: the call goes on without UUI, saying why.
    [invite] = sip.read_pasted(
        "INVITE tel:+14255550100 SIP/2.0\nUser-to-User: Intent=billing\nuser-to-user: Priority=9\n"
    )
    call = sip.incoming_call(invite, label="x")
    assert call.uui is None
    decision = routing.route(call, app_routing)
    assert decision.rule == "fallback" and decision.context_text == {}
    assert any("2 User-to-User rows" in w.message for w in decision.warnings)


# Lines that look like SIP (start lines, known and compact headers, folding, blank lines) mixed with
# anything at all, so the search reaches the branches and not only the "not SIP" refusal.
SIP_LINES = st.one_of(
    st.sampled_from(
        [
            "INVITE sip:+14255550100@x;user=phone SIP/2.0",
            "OPTIONS tel:+1 SIP/2.0",
            "SIP/2.0 480 Temporarily Unavailable",
            "Via: SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1;rport",
            "v: SIP/2.0/TCP a;received=b",
            'From: "a\\"b" <sip:+1@x>;tag=1',
            "t: <sip:x@y",
            "i: id",
            "CSeq: 1 INVITE",
            "User-to-User: 3530;pd=4",
            "user-to-user: a=1",
            "X-MS-Custom-A: 1",
            "l: 9",
            " folded",
            "",
        ]
    ),
    st.text(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(SIP_LINES, max_size=12), st.sampled_from(["\r\n", "\n"]))
def test_any_text_is_read_or_refused_with_sip_error_never_a_crash(lines: list[str], end: str) -> None:
    text = end.join(lines)
    for message in sip.read_pasted(text):
        sip.incoming_call(message, label="x")
    try:
        message = sip.parse(text)
    except sip.SipError:
        return
    sip.transaction_key(message)
    sip.response(message, 480, to_tag="t", source=("127.0.0.1", 5060))
    with contextlib.suppress(sip.FramingError):
        sip.frame(text.encode("utf-8", "surrogatepass"))
