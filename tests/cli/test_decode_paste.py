"""handoff decode takes what people paste: a value, a header line, or a whole INVITE, from an
argument, a file or standard input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared import cli

HANDOFF = str(Path(sys.executable).parent / "handoff")
PD4 = "3530303131323233333434353b363738393b3132;pd=4"  # 500112233445;6789;12


def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err, stdin=io.StringIO(stdin))
    return code, out.getvalue(), err.getvalue()


# Wireshark "Follow SIP call" / "Follow UDP stream" as text: CRLF line ends, the INVITE, the
# SDP, then the responses, one after another.
WIRESHARK = (
    "INVITE sip:+14255550100@sbc.example.com:5061;transport=tls SIP/2.0\r\n"
    "Via: SIP/2.0/TLS 10.1.2.3:5061;branch=z9hG4bKac1\r\n"
    "Max-Forwards: 69\r\n"
    'From: "IVR" <sip:+14255550177@ivr.example.com>;tag=1c2\r\n'
    "To: <sip:+14255550100@sbc.example.com>\r\n"
    "Call-ID: 8d1e@10.1.2.3\r\n"
    "CSeq: 1 INVITE\r\n"
    "User-To-User: 7369706B6579313D73697076616C313B7369706B6579323D73697076616C32;encoding=hex\r\n"
    "X-MS-Custom-Intent: billing\r\n"
    "X-MS-Teams-Tenant: reserved\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 10\r\n"
    "\r\n"
    "v=0\r\ns=-\r\n"
    "SIP/2.0 100 Trying\r\n"
    "Via: SIP/2.0/TLS 10.1.2.3:5061;branch=z9hG4bKac1\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)


def test_a_header_line_decodes_its_value_in_any_case_and_spacing() -> None:
    for line in (f"User-to-User: {PD4}", f"user-to-user:{PD4}", f"USER-TO-USER :  {PD4}"):
        code, out, _ = run("decode", line)
        assert code == 0
        assert "protocol discriminator: 4" in out and "[1] 500112233445" in out


def test_a_folded_header_line_is_one_value() -> None:
    # RFC 3261 §7.3.1: folding where whitespace is allowed (before ";encoding=hex") changes nothing.
    code, out, _ = run("decode", "User-to-User: 7369706B6579313D73697076616C31\r\n ;encoding=hex")
    assert code == 0 and "sipkey1 = sipval1" in out


def test_a_pasted_invite_shows_the_uui_and_each_custom_header() -> None:
    code, out, _ = run("decode", WIRESHARK)
    assert code == 0
    assert out.startswith("INVITE sip:+14255550100@sbc.example.com:5061;transport=tls SIP/2.0 (line 1, Call-ID 8d1e")
    assert "  encoding: hex\n" in out and "    sipkey1 = sipval1\n" in out and "    sipkey2 = sipval2\n" in out
    assert "X-MS-Custom-Intent: billing\n  context variable Intent = billing\n" in out
    assert "X-MS-Teams-Tenant: reserved\n  not context" in out
    assert "100 Trying" not in out  # a response carries no caller's context


def test_a_pasted_invite_as_json_is_a_list_of_messages() -> None:
    code, out, _ = run("decode", WIRESHARK, "--json")
    [view] = json.loads(out)
    assert code == 0
    assert view["uui_header"] == "User-To-User" and view["uui"]["pairs"] == {"sipkey1": "sipval1", "sipkey2": "sipval2"}
    assert view["custom_headers"][0] == {"header": "X-MS-Custom-Intent", "variable": "Intent", "value": "billing"}
    assert view["custom_headers"][1]["variable"] is None  # X-MS-* other than X-MS-Custom-* is reserved


def test_an_sngrep_paste_with_lf_line_ends_and_compact_names_decodes() -> None:
    text = (
        "2026/11/30 10:00:00.123 10.0.0.1:5060 -> 10.0.0.2:5060\n"
        "INVITE tel:+14255550100 SIP/2.0\n"
        "v: SIP/2.0/UDP 10.0.0.1\n"
        "i: abc\n"
        f"user-to-user: {PD4}\n"
        "X-Intent: billing\n"
    )
    code, out, _ = run("decode", "-", "--positional", "AccountNumber,Pin,LanguageCode", stdin=text)
    assert code == 0
    assert "(line 2, Call-ID abc)" in out and "[2] Pin = 6789" in out and "context variable Intent = billing" in out


def test_stdin_and_a_file_give_the_same_as_the_argument(tmp_path: Path) -> None:
    path = tmp_path / "invite.txt"
    path.write_bytes(WIRESHARK.encode())
    by_argument = run("decode", WIRESHARK)
    assert run("decode", "-", stdin=WIRESHARK) == by_argument
    assert run("decode", "--file", str(path)) == by_argument


def test_the_installed_command_reads_a_paste_from_standard_input() -> None:
    result = subprocess.run(
        [HANDOFF, "decode", "-", "--json"], input=WIRESHARK, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and json.loads(result.stdout)[0]["uui"]["ok"] is True


def test_binary_on_standard_input_is_shown_not_a_crash() -> None:
    result = subprocess.run(
        [HANDOFF, "decode", "-"], input=b"User-to-User: a=\xff\xfe\n", capture_output=True, timeout=60, check=False
    )
    assert b"Traceback" not in result.stderr and result.returncode in (0, 1)
    assert b"\\udcff" in result.stdout


def test_x_user_to_user_is_named_as_the_stand_in_it_is() -> None:
    code, out, _ = run("decode", "User-to-User: a=1\nX-User-To-User: b=2\n")
    assert code == 0 and "  a = 1" in out
    assert "X-User-To-User: b=2\n  not read: X-User-To-User stands in only when no User-to-User header came" in out
    code, out, _ = run("decode", "X-User-To-User: b=2\n")
    assert code == 0 and out.startswith("X-User-To-User: b=2\n") and "  b = 2" in out


def test_several_invites_are_labelled() -> None:
    second = WIRESHARK.replace("8d1e@10.1.2.3", "second@x")
    code, out, _ = run("decode", WIRESHARK + second)
    assert code == 0
    assert out.startswith("message 1 of 2: INVITE") and "\nmessage 2 of 2: INVITE" in out


def test_headers_without_uui_or_x_headers_exit_1() -> None:
    code, out, _ = run("decode", "Via: SIP/2.0/UDP a\nCall-ID: b\n")
    assert code == 1 and "no User-to-User or X- header found" in out


def test_an_undecodable_uui_in_a_paste_exits_1() -> None:
    code, out, _ = run("decode", "User-to-User: 7369706G;encoding=hex")
    assert code == 1 and "  cannot decode (non_hex_characters)" in out


def test_two_uui_rows_are_several_values_not_one_picked() -> None:
    code, out, _ = run("decode", "User-to-User: a=1\nUser-to-User: b=2\n")
    assert code == 1 and "cannot decode (multiple_values)" in out


@pytest.mark.parametrize(
    ("argv", "stdin"),
    [(("decode",), ""), (("decode", "a=1", "--file", "x"), ""), (("decode", "-", "--file", "x"), "")],
    ids=["nothing", "value-and-file", "stdin-and-file"],
)
def test_one_input_exactly_or_a_usage_error(argv: tuple[str, ...], stdin: str) -> None:
    code, out, err = run(*argv, stdin=stdin)
    assert (code, out) == (2, "")
    assert err.startswith("handoff decode: give one of VALUE, - (standard input) or --file FILE")


def test_an_unreadable_file_exits_1(tmp_path: Path) -> None:
    code, out, err = run("decode", "--file", str(tmp_path / "missing.txt"))
    assert (code, out) == (1, "") and err.startswith("handoff decode: cannot read")


def test_an_input_over_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "capture.pcap"
    path.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\x00" * cli.MAX_INPUT_BYTES)
    code, _, err = run("decode", "--file", str(path))
    assert code == 1 and "over 1024 KiB" in err


def test_pasted_control_characters_are_shown_as_escapes() -> None:
    code, out, _ = run("decode", "INVITE sip:+1@x SIP/2.0\r\nX-Note: a\x1b[2Jb\u202e\r\n")
    assert code == 0 and "\x1b" not in out and "\u202e" not in out and "a\\x1b[2Jb\\u202e" in out


# ---- bare hex, positional names, pd4 with keys ----------------------------------------------


def test_bare_hex_reads_as_plain_with_a_hint_to_use_default_encoding_hex() -> None:
    code, out, _ = run("decode", "7369706B6579313D73697076616C31")
    assert code == 0 and "encoding: plain" in out
    assert "hint: " in out and "--default-encoding hex" in out
    code, out, _ = run("decode", "7369706B6579313D73697076616C31", "--default-encoding", "hex")
    assert code == 0 and "sipkey1 = sipval1" in out and "hint" not in out


@pytest.mark.parametrize(
    "value",
    ["Intent=billing", "500112233445", "ABC", "7369706B;encoding=hex", "FFFE"],
    ids=["pairs", "digits-not-hex-text", "odd-length", "parameters", "hex-but-not-text"],
)
def test_no_hint_where_hex_is_not_the_likely_mistake(value: str) -> None:
    assert "hint" not in run("decode", value)[1]


def test_positional_names_label_the_values() -> None:
    code, out, _ = run("decode", PD4, "--positional", "AccountNumber, Pin")
    assert code == 0
    assert "  [1] AccountNumber = 500112233445\n  [2] Pin = 6789\n  [3] 12\n" in out
    result = json.loads(run("decode", PD4, "--positional", "AccountNumber,Pin", "--json")[1])
    assert result["positional_names"] == ["AccountNumber", "Pin"] and result["positional"][0] == "500112233445"


def test_encode_pd4_refuses_keyed_items_as_a_usage_error() -> None:
    code, out, err = run("encode", "--format", "pd4", "Intent=billing", "Priority=7")
    assert (code, out) == (2, "")
    assert "--format pd4 carries positional values" in err and "--format hex" in err
    assert run("encode", "--format", "pd4", "500112233445", "6789")[0] == 0
