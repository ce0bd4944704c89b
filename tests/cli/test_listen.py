"""handoff listen against a real SIP peer: SIPp (Debian package sip-tester, installed by `make sipp`)
sends INVITEs with each User-to-User form and custom headers over UDP and TCP on loopback; the
tests read SIPp's own verdict (exit status, message and error logs) and what listen printed.

Everything stays on 127.0.0.1: listen's default, SIPp bound there with -bind_local (SIP and media)
and -ci (its control socket). Every process and every read has a time limit.
"""

from __future__ import annotations

import io
import json
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import cli
from tests.conftest import ROOT

HANDOFF = str(Path(sys.executable).parent / "handoff")
CONFIG = str(ROOT / "routing.yaml")
SCENARIOS = Path(__file__).parent / "sipp"
LOOPBACK = "127.0.0.1"


def sipp_path() -> str:
    found = shutil.which("sipp")
    assert found, "SIPp is not installed: run `make sipp` (Debian package sip-tester)"
    return found


class Listener:
    """``handoff listen`` in its own process; its output read line by line on a thread."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [HANDOFF, "listen", "--port", "0", "--config", CONFIG, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._ended = False
        threading.Thread(target=self._pump, daemon=True).start()
        first = self.next_line(timeout=30)
        match = re.search(r"127\.0\.0\.1:(\d+)|\"port\": (\d+)", first)
        assert match, f"listen did not start: {first!r} {self.process.stderr.read() if self.process.stderr else ''}"
        self.port = int(match.group(1) or match.group(2))

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def next_line(self, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"listen printed nothing for {timeout} s; so far:\n{''.join(self.seen)}") from None
        if line is None:
            self._ended = True
            raise AssertionError(f"listen ended; it printed:\n{''.join(self.seen)}")
        self.seen.append(line)
        return line

    def read_until(self, pattern: str, timeout: float = 10.0) -> str:
        """The lines up to and including the first that matches ``pattern``."""
        deadline = time.monotonic() + timeout
        lines = []
        while True:
            lines.append(self.next_line(timeout=max(0.1, deadline - time.monotonic())))
            if re.search(pattern, lines[-1]):
                return "".join(lines)

    def block(self, call_id: str) -> str:
        """What listen printed for the INVITE with this Call-ID, from its first line to its answer."""
        self.read_until(rf"^INVITE over .*\(Call-ID {re.escape(call_id)}")
        first = self.seen[-1]
        return first + self.read_until(r"^  answered ")

    def stop(self) -> tuple[int, str]:
        """Ctrl-C, as an operator stops it; the exit status and the rest of its output."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        rest = []
        while not self._ended:
            try:
                line = self._lines.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                self._ended = True
            else:
                rest.append(line)
        self.seen += rest
        return self.process.returncode, "".join(rest)


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    probe = Listener("--timeout", "120")  # a backstop: the fixture stops it long before
    try:
        yield probe
    finally:
        probe.stop()


def run_sipp(scenario: str, transport: str, port: int, workdir: Path, call_id: str) -> subprocess.CompletedProcess[str]:
    """One call of a scenario (-m 1), SIPp's sockets on loopback only, bounded in time."""
    return subprocess.run(
        [
            sipp_path(), f"{LOOPBACK}:{port}", "-sf", str(SCENARIOS / f"{scenario}.xml"),
            "-t", transport, "-m", "1", "-nostdin",
            "-i", LOOPBACK, "-bind_local", "-ci", LOOPBACK, "-mi", LOOPBACK,
            "-cid_str", f"{call_id}-%u-%p@%s",
            "-recv_timeout", "5000", "-timeout", "20s", "-timeout_error",
            "-trace_err", "-error_file", str(workdir / "errors.log"),
            "-trace_msg", "-message_file", str(workdir / "messages.log"),
        ],
        cwd=workdir, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def sipp_succeeded(result: subprocess.CompletedProcess[str], workdir: Path) -> str:
    """SIPp's own verdict: exit status 0 (every call succeeded) and no unexpected message; returns
    its message log."""
    errors = workdir / "errors.log"
    assert result.returncode == 0, f"SIPp exit {result.returncode}: {errors.read_text() if errors.exists() else ''}"
    assert not errors.exists() or errors.read_text().strip() == ""
    return (workdir / "messages.log").read_text()


#: What listen must print for each scenario, and what must never appear without --reveal.
FORMS = {
    "uui-plain": {
        "lines": [
            "  User-to-User: *** (25 characters)\n",
            "  X-MS-Custom-IsVip: false\n",
            "  decoded: plain, 2 pair(s): Intent, Priority\n",
            "  +14255550100: workstream retail-ivr, rule billing-priority, queue billing, transfer +14255550123\n",
            "    context: Intent=billing, Priority=7, IsVip=false\n",
        ],
        "never": ["Intent=billing;Priority=7"],
    },
    "uui-hex": {
        "lines": [
            "  User-To-User: *** (50 characters);encoding=hex\n",
            "  X-MS-Custom-IsVip: true\n",
            "  decoded: hex, 2 pair(s): Intent, Priority\n",
            "rule vip-callers, queue vip, redirect 8:acs:",
            "    context: Intent=support, Priority=3, IsVip=true\n",
        ],
        "never": ["496E74656E74"],
    },
    "uui-pd4": {
        "lines": [
            "  user-to-user: *** (40 characters);pd=4\n",
            "  X-Intent: billing\n",
            "  decoded: hex, protocol discriminator 4, 3 positional value(s)\n",
            "  +14255550100: workstream retail-ivr, rule after-hours-line, queue closed, reject\n",
            "    context: AccountNumber=***, Pin=***, LanguageCode=99, Intent=billing\n",
        ],
        "never": ["500112233445", "6789", "3530303131"],
    },
}


@pytest.mark.parametrize("transport", ["u1", "t1"], ids=["udp", "tcp"])
@pytest.mark.parametrize("form", list(FORMS))
def test_sipp_invite_shows_headers_context_and_decision_then_gets_480(
    listener: Listener, tmp_path: Path, form: str, transport: str
) -> None:
    call_id = f"{form}-{transport}"
    log = sipp_succeeded(run_sipp(form, transport, listener.port, tmp_path, call_id), tmp_path)
    # SIPp received the final response and sent the ACK that ends the transaction.
    assert "SIP/2.0 480 Temporarily Unavailable" in log and "\nACK sip:+14255550100@" in log
    block = listener.block(call_id)
    over = "udp" if transport == "u1" else "tcp"
    assert block.startswith(f"INVITE over {over} from 127.0.0.1:")
    assert "  caller +14255550177\n" in block and block.endswith("  answered 480 Temporarily Unavailable\n")
    for line in FORMS[form]["lines"]:
        assert line in block
    for secret in FORMS[form]["never"]:
        assert secret not in block


@pytest.mark.parametrize("transport", ["u1", "t1"], ids=["udp", "tcp"])
def test_sipp_options_gets_200_with_allow(listener: Listener, tmp_path: Path, transport: str) -> None:
    log = sipp_succeeded(run_sipp("options", transport, listener.port, tmp_path, f"options-{transport}"), tmp_path)
    assert "SIP/2.0 200 OK" in log and "Allow: INVITE, ACK, CANCEL, OPTIONS" in log
    over = "udp" if transport == "u1" else "tcp"
    assert re.search(
        rf"^OPTIONS over {over} from 127\.0\.0\.1:\d+: answered 200 OK$", listener.read_until("^OPTIONS"), re.M
    )


def raw_request(method: str, call_id: str, *extra: str, body: str = "", length: int | None = None) -> bytes:
    lines = [
        f"{method} sip:+14255550100@127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{call_id}",
        "From: <sip:+14255550177@127.0.0.1>;tag=raw",
        "To: <sip:+14255550100@127.0.0.1>",
        f"Call-ID: {call_id}",
        f"CSeq: 1 {method}",
        *extra,
        f"Content-Length: {len(body) if length is None else length}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def udp_exchange(port: int, payload: bytes, expect_answer: bool = True) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind((LOOPBACK, 0))
        client.settimeout(5 if expect_answer else 0.3)
        client.sendto(payload, (LOOPBACK, port))
        try:
            return client.recv(65535)
        except TimeoutError:
            return None


def test_malformed_input_is_ignored_or_answered_400_and_the_probe_carries_on(listener: Listener) -> None:
    port = listener.port
    # A keep-alive (CRLFs, RFC 5626 §3.5.1) is absorbed without a word.
    assert udp_exchange(port, b"\r\n\r\n", expect_answer=False) is None
    # Not SIP at all: nothing could be answered, so nothing is.
    assert udp_exchange(port, b"\x00\xff\xfe garbage\r\n\r\n", expect_answer=False) is None
    note = listener.read_until(r"^note: udp: ")
    assert "udp: 15 bytes from 127.0.0.1:" in note and "ignored: not a SIP message" in note
    # A request without the headers a response copies: ignored, saying which are missing.
    assert udp_exchange(port, b"INVITE sip:x SIP/2.0\r\nCall-ID: q\r\n\r\n", expect_answer=False) is None
    assert "no Via, From, To, CSeq" in listener.read_until(r"^note: udp: INVITE .* ignored")
    # RFC 3261 §18.3: a datagram shorter than its Content-Length is answered 400.
    answer = udp_exchange(port, raw_request("INVITE", "short", body="v=0", length=50))
    assert answer is not None and answer.startswith(b"SIP/2.0 400 Bad Request\r\n")
    # A stream whose framing cannot be read is closed.
    with socket.create_connection((LOOPBACK, port), timeout=5) as stream:
        stream.sendall(b"INVITE sip:x SIP/2.0\r\nContent-Length: lots\r\n\r\n")
        assert stream.recv(100) == b""
    assert "closed: the Content-Length is not a number" in listener.read_until(r"^note: tcp: .* closed")
    # A control character in a header is printed as an escape, never passed to the terminal.
    answer = udp_exchange(port, raw_request("INVITE", "escape", "X-MS-Custom-Note: a\x1b[2Jb"))
    assert answer is not None and answer.startswith(b"SIP/2.0 480 ")
    block = listener.block("escape")
    assert "\x1b" not in block and "X-MS-Custom-Note: a\\x1b[2Jb" in block
    # Still answering.
    answer = udp_exchange(port, raw_request("OPTIONS", "alive"))
    assert answer is not None and answer.startswith(b"SIP/2.0 200 OK\r\n")


def test_a_retransmitted_invite_gets_the_same_answer_and_is_reported_once(listener: Listener) -> None:
    invite = raw_request("INVITE", "again")
    first, second = udp_exchange(listener.port, invite), udp_exchange(listener.port, invite)
    assert first is not None and first == second  # the same To tag: one transaction (§17.2.1)
    listener.block("again")
    assert "retransmitted (Call-ID again); answered again" in listener.read_until("retransmitted")


def test_count_stops_after_the_invites_and_their_acks_printing_json_lines(tmp_path: Path) -> None:
    probe = Listener("--count", "1", "--timeout", "30", "--json")
    try:
        sipp_succeeded(run_sipp("uui-pd4", "t1", probe.port, tmp_path, "counted"), tmp_path)
        probe.process.wait(timeout=20)  # it stops by itself
    finally:
        probe.stop()
    assert probe.process.returncode == 0
    objects = [json.loads(line) for line in probe.seen]
    assert objects[0]["listening"]["transports"] == ["udp", "tcp"]
    [invite] = [o for o in objects if o.get("method") == "INVITE"]
    assert (invite["transport"], invite["reply"], invite["queue"], invite["rule"]) == (
        "tcp",
        480,
        "closed",
        "after-hours-line",
    )
    assert invite["context"] == {"AccountNumber": "***", "Pin": "***", "LanguageCode": "99", "Intent": "billing"}
    assert invite["headers"]["user-to-user"] == "*** (40 characters);pd=4"
    assert [o.get("method") for o in objects[1:]] == ["INVITE", "ACK", None]
    assert objects[-1] == {"stopped": {"invites": 1}}
    assert "500112233445" not in "".join(probe.seen)


def test_reply_names_the_final_response_and_reveal_shows_the_values(tmp_path: Path) -> None:
    probe = Listener("--count", "1", "--timeout", "30", "--reply", "486", "--reveal")
    try:
        answer = udp_exchange(probe.port, raw_request("INVITE", "busy", "User-to-User: Intent=billing;Priority=7"))
        assert answer is not None and answer.startswith(b"SIP/2.0 486 Busy Here\r\n")
        block = probe.block("busy")
        udp_exchange(probe.port, raw_request("ACK", "busy"), expect_answer=False)
        probe.process.wait(timeout=20)
    finally:
        probe.stop()
    assert probe.process.returncode == 0
    assert "  User-to-User: Intent=billing;Priority=7\n" in block and block.endswith("answered 486 Busy Here\n")


def test_fewer_invites_than_count_before_the_timeout_exits_1() -> None:
    result = subprocess.run(
        [HANDOFF, "listen", "--port", "0", "--config", CONFIG, "--count", "1", "--timeout", "0.5"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "stopped: 0 INVITE(s) answered"
    assert "0 of 1 INVITE(s) arrived within 0.5 s" in result.stderr


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "option",
    [["--reply", "200"], ["--reply", "180"], ["--reply", "busy"], ["--port", "70000"], ["--timeout", "0"]],
    ids=["2xx", "provisional", "not-a-number", "port", "timeout"],
)
def test_listen_usage_errors_exit_2(option: list[str]) -> None:
    assert run("listen", "--config", CONFIG, *option)[0] == 2


def test_a_port_in_use_exits_1_with_a_message() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, out, err = run("listen", "--config", CONFIG, "--port", str(port), "--timeout", "1")
    assert (code, out) == (1, "") and err.startswith(f"handoff listen: cannot listen on 127.0.0.1 port {port}: ")


def test_a_bad_configuration_exits_1_before_listening(tmp_path: Path) -> None:
    code, out, err = run("listen", "--config", str(tmp_path / "missing.yaml"), "--timeout", "1")
    assert (code, out) == (1, "") and "cannot read the routing configuration" in err


def test_the_other_commands_start_without_the_socket_code() -> None:
    script = "import sys, shared.cli; print('shared.adapters.sip_probe' in sys.modules, 'selectors' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split()[0] == "False"
