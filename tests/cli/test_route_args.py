"""handoff route takes a SIP INVITE, or the call described with --to/--from/--uui/--header, and
reads routing.yaml unless told otherwise; several calls in one file are labelled."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from shared import cli
from tests.conftest import EXAMPLES, ROOT, load_json

CONFIG = str(ROOT / "routing.yaml")
PD4_ACCOUNT = "3530303131323233333434353b363738393b3939;pd=4"  # 500112233445;6789;99

INVITE = (
    "INVITE sip:+14255550100@sbc.example.com;user=phone SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
    "From: <sip:+14255550177@ivr.example.com>;tag=1\r\n"
    "To: <sip:+14255550100@sbc.example.com>\r\n"
    "Call-ID: {call_id}\r\n"
    "CSeq: 1 INVITE\r\n"
    "{headers}"
    "Content-Length: 0\r\n"
    "\r\n"
)


def invite(call_id: str, *headers: str) -> str:
    return INVITE.format(call_id=call_id, headers="".join(h + "\r\n" for h in headers))


def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err, stdin=io.StringIO(stdin))
    return code, out.getvalue(), err.getvalue()


def test_a_sip_invite_is_routed_like_its_incoming_call(tmp_path: Path) -> None:
    path = tmp_path / "invite.txt"
    path.write_text(invite("c1", "User-to-User: Intent=billing;Priority=7"))
    code, out, _ = run("route", "--config", CONFIG, str(path))
    assert code == 0
    assert out == (
        "+14255550100: workstream retail-ivr, rule billing-priority, queue billing, transfer +14255550123\n"
        "  context: Intent=billing, Priority=7\n"
    )


def test_an_invite_on_standard_input_as_json_masks_sensitive_values() -> None:
    code, out, _ = run("route", "--config", CONFIG, "-", "--json", stdin=invite("c2", f"User-to-User: {PD4_ACCOUNT}"))
    view = json.loads(out)
    assert code == 0 and (view["event_id"], view["queue"], view["rule"]) == ("c2", "closed", "after-hours-line")
    assert view["context"] == {"AccountNumber": "***", "Pin": "***", "LanguageCode": "99"}
    assert "500112233445" not in out and "6789" not in out


def test_the_call_can_be_given_with_options_instead_of_a_file() -> None:
    code, out, _ = run(
        "route", "--config", CONFIG, "--to", "+14255550100", "--from", "+14255550177",
        "--uui", "Intent=billing", "--header", "X-MS-Custom-Priority: 9", "--header", "x-IsVip:false", "--json",
    )  # fmt: skip
    view = json.loads(out)
    assert code == 0 and (view["queue"], view["rule"]) == ("billing", "billing-priority")
    assert view["context"] == {"Intent": "billing", "Priority": "9", "IsVip": "false"}
    assert view["warnings"] == []


def test_options_mask_and_reveal_like_an_event() -> None:
    argv = ("route", "--config", CONFIG, "--to", "+14255550101", "--uui", PD4_ACCOUNT)
    code, out, _ = run(*argv)
    assert code == 0 and "queue closed" in out and "AccountNumber=***, Pin=***, LanguageCode=99" in out
    assert "500112233445" not in out
    assert "AccountNumber=500112233445" in run(*argv, "--reveal")[1]


def test_config_defaults_to_routing_yaml_here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = run("route", "--to", "+14255550199")  # default_queue: agents is only in routing.yaml
    assert code == 0 and "rule unknown-number, queue agents" in out
    monkeypatch.chdir(tmp_path)
    code, _, err = run("route", "--to", "+14255550199")
    assert code == 1 and "routing.yaml: cannot read the routing configuration" in err


def test_several_events_in_one_file_are_labelled(tmp_path: Path) -> None:
    events = [load_json(EXAMPLES / "calls" / f)[0] for f in ("plain-uui.json", "x-ms-custom-vip.json")]
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(events))
    code, out, _ = run("route", "--config", CONFIG, str(path))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"event 1 of 2 (id {events[0]['id']})"
    assert f"event 2 of 2 (id {events[1]['id']})" in lines
    assert lines.index(f"event 2 of 2 (id {events[1]['id']})") > 1


def test_several_invites_in_one_paste_are_each_routed_and_labelled(tmp_path: Path) -> None:
    path = tmp_path / "trace.txt"
    path.write_text(
        "10:00:00.000 -> INVITE\n"
        + invite("first", "X-MS-Custom-IsVip: true")
        + "SIP/2.0 480 Temporarily Unavailable\r\nCall-ID: first\r\n\r\n"
        + invite("second", "User-to-User: Intent=billing;Priority=7")
    )
    code, out, _ = run("route", "--config", CONFIG, str(path))
    assert code == 0
    first, second = out.split("event 2 of 2 (id second)\n")
    assert first.startswith("event 1 of 2 (id first)\n") and "queue vip" in first
    assert "queue billing" in second


def test_a_single_event_is_not_labelled() -> None:
    code, out, _ = run("route", "--config", CONFIG, str(EXAMPLES / "calls" / "plain-uui.json"))
    assert code == 0 and out.startswith("+14255550100: ")


def test_text_that_is_neither_an_event_nor_an_invite_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("the IVR sent something\nbut this is no SIP message\n")
    code, out, err = run("route", "--config", CONFIG, str(path))
    assert (code, out) == (1, "") and "neither IncomingCall JSON nor a SIP INVITE" in err


@pytest.mark.parametrize(
    "argv",
    [
        ("route", "--config", CONFIG),
        ("route", "--config", CONFIG, "event.json", "--to", "+14255550100"),
        ("route", "--config", CONFIG, "event.json", "--uui", "a=1"),
        ("route", "--config", CONFIG, "--to", "+14255550100", "--header", "no colon here"),
    ],
    ids=["no-call", "event-and-to", "uui-without-to", "header-without-colon"],
)
def test_usage_mistakes_exit_2(argv: tuple[str, ...]) -> None:
    code, out, err = run(*argv)
    assert (code, out) == (2, "") and err.startswith("handoff route: ")
