"""`make run`: the replay of transferred calls, and what the serving stack prints, as a user runs it."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.run import CallsError, _events_from_invite, load_calls
from local.stack import post_json
from shared.core import events, routing
from tests.adapters.loopback import RecordingServer
from tests.conftest import DATA, EXAMPLES, ROOT, run_python

CALLS = EXAMPLES / "calls"
INVITES = EXAMPLES / "invites"
#: A transferred call's INVITE as an SBC sends it to ACS: CRLF line ends, a folded header, the compact
#: form of To, a pd=4 User-to-User (AccountNumber 500112233445, Pin 6789, LanguageCode 99) and a body.
INVITE = (
    "INVITE sip:+14255550101@sip.pstnhub.microsoft.com:5061;user=phone SIP/2.0\r\n"
    "Via: SIP/2.0/TLS sbc1.contoso.com:5061;branch=z9hG4bKac2121518978\r\n"
    'From: "Front Desk" <sip:+14255550177@sbc1.contoso.com>;tag=1c2135\r\n'
    "t: <sip:+14255550101@sip.pstnhub.microsoft.com>\r\n"
    "Call-ID: 57af8d1c@sbc1.contoso.com\r\n"
    "CSeq: 1 INVITE\r\n"
    "User-to-User: 3530303131323233333434353b363738393b3939\r\n"
    " ;pd=4\r\n"
    "X-MS-Custom-Intent: billing\r\n"
    "X-MS-SBC: contoso-sbc\r\n"
    "Content-Type: application/sdp\r\n"
    "\r\n"
    "v=0\r\n"
    "X-Not-A-Header: from the body\r\n"
)


def copy_call(directory: Path, name: str) -> None:
    shutil.copy(CALLS / name, directory / name)


def write_manifest(directory: Path, entries: list[dict[str, Any]]) -> None:
    (directory / "manifest.json").write_text(json.dumps(entries), encoding="utf-8")


# ---- the replay ---------------------------------------------------------------------------------


def test_make_run_once_replays_every_bundled_call_and_exits_0_when_each_got_its_action() -> None:
    result = run_python(["-m", "local.run", "--once"])
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((CALLS / "manifest.json").read_text())
    lines = result.stdout.splitlines()
    for entry in manifest:
        [line] = [i for i, text in enumerate(lines) if f" {entry['file']} " in text]
        assert lines[line].startswith("OK ")
        assert f"rule {entry['expect']['rule']} → queue {entry['expect']['queue']}" in lines[line + 2]
    assert "500112233445" not in result.stdout  # sensitive values are masked
    assert "AccountNumber=***" in result.stdout
    assert "Every call got its expected action." in result.stdout


def test_make_run_stays_on_loopback_when_the_shell_names_a_proxy() -> None:
    """A corporate shell's HTTP_PROXY without NO_PROXY: before local/loopback.py, the replay's posts to
    the local host went to the proxy (urllib and requests both proxy 127.0.0.1 unless told not to),
    and so would the app's requests to the emulator and the store's to Azurite."""
    proxy = RecordingServer()  # on loopback too: what reaches it would have left the machine
    try:
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy")}
        env |= {"HTTP_PROXY": proxy.url, "http_proxy": proxy.url, "HTTPS_PROXY": proxy.url}
        result = subprocess.run(
            [sys.executable, "-m", "local.run", "--once"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        proxy.stop()
    assert proxy.seen == []
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Every call got its expected action." in result.stdout


def test_make_run_with_an_invalid_configuration_prints_the_report_not_a_traceback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "routing.yaml"
    bad.write_text((EXAMPLES / "routing.example.yaml").read_text().replace("queue: vip", "queue: nope"))
    result = run_python(["-m", "local.run", "--once"], {"HANDOFF_CONFIG": str(bad)})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{bad}:38: workstream 'retail-ivr', rule 'vip-callers': queue 'nope' is not a queue" in result.stderr


def test_every_bundled_call_expects_an_action_a_queue_and_a_rule() -> None:
    for entry in json.loads((CALLS / "manifest.json").read_text()):
        assert set(entry["expect"]) == {"action", "queue", "rule"}, entry["file"]


def test_the_replay_fails_a_call_routed_to_another_queue_or_rule_even_when_its_action_is_right(
    tmp_path: Path,
) -> None:
    # vip-callers and billing-priority both end in an action the emulator carries out; only the
    # queue and rule tell them apart.
    copy_call(tmp_path, "x-ms-custom-vip.json")
    copy_call(tmp_path, "plain-uui.json")
    write_manifest(
        tmp_path,
        [
            {
                "file": "x-ms-custom-vip.json",
                "expect": {"action": "redirect", "queue": "billing", "rule": "vip-callers"},
            },
            {"file": "plain-uui.json", "expect": {"action": "answer", "queue": "agents", "rule": "billing-priority"}},
        ],
    )
    result = run_python(["-m", "local.run", "--once", "--calls", str(tmp_path)])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BAD x-ms-custom-vip.json" in result.stdout
    assert "expected queue billing, got vip" in result.stdout
    assert "BAD plain-uui.json" in result.stdout
    assert "expected rule billing-priority, got fallback" in result.stdout
    assert "Some calls did NOT get their expected action." in result.stdout


def test_your_own_calls_replay_with_your_configuration_and_a_sip_invite_routes_like_its_event(
    tmp_path: Path,
) -> None:
    shutil.copy(INVITES / "after-hours.sip", tmp_path / "after-hours.sip")
    copy_call(tmp_path, "billing-priority.json")
    # Your configuration: the after-hours line answers for a night queue instead of rejecting.
    config = tmp_path / "night.yaml"
    config.write_text(
        (ROOT / "routing.yaml")
        .read_text(encoding="utf-8")
        .replace(
            "  closed:\n    action: reject\n    reason: busy\n",
            '  closed:\n    action: redirect\n    target: "+14255550155"\n',
        ),
        encoding="utf-8",
    )
    result = run_python(["-m", "local.run", "--once", "--calls", str(tmp_path), "--config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    [at] = [i for i, text in enumerate(lines) if " after-hours.sip " in text]
    assert lines[at].startswith("OK ") and "to +14255550101  uui hex;pd=4" in lines[at]
    assert lines[at + 1] == "    context: AccountNumber=***, Pin=***, LanguageCode=99, Intent=billing"
    assert lines[at + 2] == "    rule after-hours-line → queue closed → emulator: redirect to 4:+14255550155"
    assert any(text.startswith("OK  billing-priority.json") for text in lines)
    assert "500112233445" not in result.stdout and "6789" not in result.stdout


def test_a_manifest_expectation_that_cannot_be_checked_stops_make_run_before_anything_starts(tmp_path: Path) -> None:
    copy_call(tmp_path, "plain-uui.json")
    write_manifest(tmp_path, [{"file": "plain-uui.json", "expect": {"queue": "agents", "rul": "fallback"}}])
    result = run_python(["-m", "local.run", "--once", "--calls", str(tmp_path)])
    assert result.returncode == 2
    assert 'entry 0: "expect" takes action, queue, rule' in result.stderr


def test_load_calls_reads_a_directory_without_a_manifest_and_names_unreadable_files(tmp_path: Path) -> None:
    copy_call(tmp_path, "plain-uui.json")
    (tmp_path / "invite.txt").write_text(INVITE, encoding="utf-8")
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not a call", encoding="utf-8")
    calls = {c.file: c for c in load_calls(tmp_path)}
    assert sorted(calls) == ["broken.json", "invite.txt", "plain-uui.json"]
    assert calls["plain-uui.json"].expect is None and len(calls["plain-uui.json"].events) == 1
    assert calls["broken.json"].problem is not None and calls["broken.json"].problem.startswith("cannot read it")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CallsError, match=r"no manifest\.json"):
        load_calls(tmp_path / "empty")


# ---- SIP INVITE files -----------------------------------------------------------------------------


def test_an_invite_becomes_the_incoming_call_event_acs_raises_for_it() -> None:
    [event] = _events_from_invite(INVITE)
    data = event["data"]
    assert data["to"]["phoneNumber"]["value"] == "+14255550101"  # the Request-URI's user part
    assert data["from"]["phoneNumber"]["value"] == "+14255550177"
    assert data["callerDisplayName"] == "Front Desk"
    # The folded User-to-User line is one header; X-MS-SBC goes in too (the app skips reserved names),
    # and nothing from the body does.
    assert data["customContext"]["sipHeaders"] == {
        "User-to-User": "3530303131323233333434353b363738393b3939 ;pd=4",
        "X-MS-Custom-Intent": "billing",
        "X-MS-SBC": "contoso-sbc",
    }
    [envelope] = events.envelopes([event])
    call = events.incoming_call(envelope)
    assert call.called_address == "+14255550101"
    assert [h.name for h in call.custom_headers] == ["Intent"]
    assert call.uui == "3530303131323233333434353b363738393b3939 ;pd=4"


def test_the_bundled_invite_routes_as_its_manifest_says(app_routing: Any) -> None:
    [entry] = json.loads((INVITES / "manifest.json").read_text(encoding="utf-8"))
    [event] = _events_from_invite((INVITES / entry["file"]).read_text(encoding="utf-8"))
    [envelope] = events.envelopes([event])
    decision = routing.route(events.incoming_call(envelope), app_routing)
    assert {"action": str(decision.action), "queue": decision.queue, "rule": decision.rule} == entry["expect"]


def test_the_same_invite_is_the_same_ringing_call_and_another_invite_is_another() -> None:
    first, again = _events_from_invite(INVITE)[0], _events_from_invite(INVITE)[0]
    other = _events_from_invite(INVITE.replace("Call-ID: 57af8d1c", "Call-ID: 99"))[0]
    assert first["data"]["incomingCallContext"] == again["data"]["incomingCallContext"]
    assert first["data"]["incomingCallContext"] != other["data"]["incomingCallContext"]


def test_an_invite_with_a_tel_uri_and_lf_line_ends_and_repeated_headers_reads_too() -> None:
    text = (
        "INVITE tel:+14255550100 SIP/2.0\n"
        "f: sip:+14255550177@sbc1.contoso.com;tag=9\n"
        "X-Intent: billing\n"
        "x-intent: payments\n"
        "X-Intent: refunds\n"
    )
    [event] = _events_from_invite(text)
    assert event["data"]["to"]["phoneNumber"]["value"] == "+14255550100"
    assert event["data"]["from"]["phoneNumber"]["value"] == "+14255550177"
    # RFC 3261 §7.3.1: headers of one name combine, in order, with commas.
    assert event["data"]["customContext"]["sipHeaders"] == {"X-Intent": "billing, refunds", "x-intent": "payments"}


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0 200 OK\r\nTo: <sip:+14255550100@x>\r\n",
        "BYE sip:+14255550100@x SIP/2.0\r\n",
        "INVITE sip:+14255550100@x SIP/2.0\r\nthis line has no colon\r\n",
        "",
    ],
)
def test_text_that_is_not_an_invite_is_refused_with_the_reason(text: str) -> None:
    with pytest.raises(ValueError, match=r"INVITE|SIP header"):
        _events_from_invite(text)


# ---- the serving stack --------------------------------------------------------------------------


class Serving:
    """`make run` serving in its own process; its stdout lines arrive on a queue (read by a thread)."""

    def __init__(self, args: list[str]) -> None:
        from shared.adapters.settings import SETTINGS

        names = {s.name for s in SETTINGS}
        env = {k: v for k, v in os.environ.items() if k not in names}
        env["PYTHONPATH"] = str(ROOT)
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "local.run", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, text: str, timeout: float = 60.0) -> list[str]:
        """Lines up to and including the first containing ``text`` (fails after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        start = len(self.seen)
        while not any(text in line for line in self.seen[start:]):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line with {text!r} within {timeout} s; output:\n" + "\n".join(self.seen))
            try:
                self.seen.append(self.lines.get(timeout=min(remaining, 1.0)))
            except queue.Empty:
                continue
        return self.seen[start:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # Ctrl-C
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[Serving, str]]:
    copy_call(tmp_path, "plain-uui.json")
    run = Serving(["--calls", str(tmp_path)])
    try:
        lines = run.until("Serving.")
        [url] = [
            m.group(0)
            for line in run.until("functionName=incoming_call")
            for m in [re.search(r"http://\S+", line)]
            if m
        ]
        assert any(line.startswith("OK  plain-uui.json") for line in lines)
        yield run, url
    finally:
        run.stop()


def incoming(event_id: str, context: str, uui: str) -> list[dict[str, Any]]:
    [event] = json.loads((CALLS / "billing-priority.json").read_text())
    event["id"] = event["subject"] = event_id
    event["data"]["incomingCallContext"] = context
    event["data"]["customContext"]["sipHeaders"] = {"User-To-User": uui}
    return [event]


def test_every_event_posted_to_the_serving_stack_prints_what_happened_to_it(serving: tuple[Serving, str]) -> None:
    run, url = serving
    notify = {"aeg-event-type": "Notification"}
    call = incoming("live-1", "ctx-live-1", "Intent=billing;Priority=9;AccountNumber=777788889999")
    assert post_json(url, call, notify)[0] == 202
    block = run.until("emulator:")
    assert block[-3].endswith("event live-1 to +14255550100  uui plain")
    assert block[-2] == "    context: Intent=billing, Priority=9, AccountNumber=***"
    assert block[-1].startswith(
        "    rule billing-priority → queue billing → emulator: answer (callback http://127.0.0.1:"
    )
    assert block[-1].endswith(" → transfer to 4:+14255550123")  # printed once the callback's transfer happened

    # The same call again: a duplicate, which Call Automation never hears of.
    assert post_json(url, call, notify)[0] == 202
    block = run.until("duplicate")
    assert block[-2] == "    rule billing-priority → queue billing → emulator: nothing"
    assert "warning: call 00000000-0000-0000-0000-000000002004 to +14255550100" in block[-1]

    ended = json.loads((DATA / "incoming-call.eventgrid-schema.json").read_text())
    ended["id"], ended["eventType"] = "not-a-call", "Microsoft.Communication.CallEnded"
    assert post_json(url, [ended], notify)[0] == 202
    assert run.until("ignored")[-1] == (
        "    warning: event not-a-call of type Microsoft.Communication.CallEnded ignored: only IncomingCall is handled"
    )

    unreadable = incoming("no-context", "ctx", "Intent=billing")
    del unreadable[0]["data"]["incomingCallContext"]
    assert post_json(url, unreadable, notify)[0] == 202
    assert "error: IncomingCall no-context cannot be read" in run.until("cannot be read")[-1]

    assert post_json(url, "not an event array", {"aeg-event-type": "Nope"})[0] == 400
    assert run.until("request refused")[-1].endswith(
        "request refused (400): aeg-event-type must be Notification or SubscriptionValidation"
    )

    validation = json.loads((DATA / "eventgrid-subscription-validation.json").read_text())
    assert post_json(url, validation, {"aeg-event-type": "SubscriptionValidation"})[0] == 200
    run.until("subscription validation for incoming_call")

    callbacks = url.split("/runtime/")[0] + "/api/callbacks"
    assert post_json(callbacks, [], {})[0] == 401
    block = run.until("callback refused")
    assert block[-2].endswith("POST /api/callbacks → 401")
    assert block[-1] == "    warning: callback refused (401): no Bearer token"
    assert "777788889999" not in "\n".join(run.seen)


def test_make_run_keeps_call_records_and_prints_how_to_look_one_up(serving: tuple[Serving, str]) -> None:
    run, _ = serving
    assert "Call records: 1 written, 0 lost." in run.seen
    [curl] = [line.strip() for line in run.seen if line.strip().startswith("curl -H 'x-functions-key: ")]
    key = re.search(r"x-functions-key: ([^']+)'", curl)
    url = re.search(r"(http://127\.0\.0\.1:\d+/api/calls/)<correlationId>", curl)
    assert key and url
    [event] = json.loads((CALLS / "plain-uui.json").read_text())
    request = urllib.request.Request(
        url.group(1) + event["data"]["correlationId"], headers={"x-functions-key": key.group(1)}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        record = json.loads(response.read())
    assert (record["queue"], record["action"], record["context"]) == (
        "agents",
        "answer",
        {"sipkey1": "sipval1", "sipkey2": "sipval2"},
    )
    unauthorized = urllib.request.Request(url.group(1) + event["data"]["correlationId"])
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(unauthorized, timeout=10)
    assert refused.value.code == 401
