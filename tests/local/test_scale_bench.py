"""bench/scale.py's own machinery: the verdict on what the emulator executed, the callback forwarder
that makes callbacks cross instances, and a short run of the whole bench (two instances, one store)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bench import scale
from local.emulator import RecordedAction
from local.stack import post_json

ROOT = scale.ROOT


def _call(expected: str, index: int = 0) -> scale.Call:
    event = {"data": {"incomingCallContext": f"ctx-{index}", "correlationId": f"corr-{index}"}}
    call = scale.Call(index, "t", expected, "once", "none", event)
    call.started = 1.0
    return call


def _action(operation: str, at: float, context: str | None = None, connection: str | None = None) -> RecordedAction:
    body = {"incomingCallContext": context} if context else {}
    return RecordedAction(operation, "/p", {}, {}, body, 200, None, connection, at)


# ---- the verdict ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "operations", "wrong"),
    [
        ("answer", ("answer",), None),
        ("reject", ("reject",), None),
        ("transfer", ("answer", "transfer"), None),
        ("answer", ("answer", "answer"), "expected answer, executed answer + answer"),
        ("redirect", (), "no action"),
        ("transfer", ("answer",), "answered, never transferred"),
        ("transfer", ("answer", "transfer", "transfer"), "transferred 2 times"),
        ("transfer", ("answer", "transfer", "hangup"), "transferred, then hung up by the sweep"),
    ],
)
def test_the_verdict_wants_exactly_one_action_and_one_transfer(
    expected: str, operations: tuple[str, ...], wrong: str | None
) -> None:
    assert scale.problem(_call(expected), operations) == wrong


def test_a_call_never_posted_is_a_failure_not_a_pass() -> None:
    call = _call("answer")
    call.started = None
    assert scale.problem(call, ()) is not None


def test_mid_call_actions_count_for_the_call_whose_answer_made_the_connection() -> None:
    calls = [_call("transfer", 0), _call("transfer", 1)]
    executed = [
        _action("transfer", 3.0, connection="conn-0"),
        _action("answer", 1.0, context="ctx-0", connection="conn-0"),
        _action("answer", 2.0, context="ctx-1", connection="conn-1"),
        _action("transfer", 4.0, connection="conn-0"),
        _action("answer", 5.0, context="ctx-other", connection="conn-x"),  # not one of the bench's calls
        _action("transfer", 6.0, connection="conn-x"),
    ]
    by_call = scale.actions_by_call(calls, executed)
    assert [a.operation for a in by_call["ctx-0"]] == ["answer", "transfer", "transfer"]
    assert [a.operation for a in by_call["ctx-1"]] == ["answer"]
    assert set(by_call) == {"ctx-0", "ctx-1"}
    assert not scale.complete(calls, executed)  # call 1 still waits for its transfer
    assert scale.complete(calls, [*executed, _action("transfer", 7.0, connection="conn-1")])


def test_only_a_second_step_after_a_callback_in_the_store_window_counts_as_the_outage() -> None:
    window = scale.StoreWindow(0.5, began=10.0, stopped=11.0, ended=12.0)
    call = _call("transfer")

    def connected(at: float, done: float) -> scale.Forwarded:
        return scale.Forwarded(at, done, 0, ("CallConnected",), "conn-0", call.correlation_id, 200)

    assert scale.in_store_outage(call, "transferred 2 times", [connected(11.5, 11.6)], window)
    assert scale.in_store_outage(call, "transferred, then hung up by the sweep", [connected(9.0, 10.2)], window)
    assert not scale.in_store_outage(call, "transferred 2 times", [connected(12.5, 12.6)], window)
    assert not scale.in_store_outage(call, "answered, never transferred", [connected(11.5, 11.6)], window)
    assert not scale.in_store_outage(call, "transferred 2 times", [connected(11.5, 11.6)], scale.StoreWindow(0.5))


# ---- the callback forwarder ------------------------------------------------------------------------


class _Receiver:
    """A stand-in instance: records each POST and answers with ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.got: list[tuple[str, str | None, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.got.append((self.path, self.headers.get("Authorization"), body))
                data = json.dumps({"by": receiver.url}).encode()
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[_Receiver]]:
    running = [_Receiver(200), _Receiver(503)]
    yield running
    for receiver in running:
        receiver.close()


def _connected(correlation: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "Microsoft.Communication.CallConnected",
            "data": {"callConnectionId": f"conn-{correlation}", "correlationId": correlation},
        }
    ]


def test_the_forwarder_hands_callbacks_round_robin_intact_and_relays_the_answer(receivers: list[_Receiver]) -> None:
    instances = scale.Instances()
    for receiver in receivers:
        instances.add(receiver.url)
    with scale.CallbackForwarder(instances, lambda: "fresh") as forwarder:
        answers = [
            post_json(forwarder.url, _connected(f"c{n}"), {"Authorization": f"Bearer token-{n}"}) for n in range(4)
        ]
    instances.close()
    # Each callback went to the next instance, with its own token and body, and its answer came back.
    assert [status for status, _ in answers] == [200, 503, 200, 503]
    assert [json.loads(body)["by"] for _, body in answers] == [r.url for r in receivers] * 2
    assert [(auth, json.loads(body)) for _, auth, body in receivers[0].got] == [
        ("Bearer token-0", _connected("c0")),
        ("Bearer token-2", _connected("c2")),
    ]
    assert {path for r in receivers for path, _, _ in r.got} == {scale.CALLBACK_PATH}
    assert [(f.instance, f.correlation_id, f.status, f.kinds) for f in forwarder.log] == [
        (n % 2, f"c{n}", 200 if n % 2 == 0 else 503, ("CallConnected",)) for n in range(4)
    ]


def test_an_at_once_call_has_its_call_connected_posted_to_the_other_instance_too(receivers: list[_Receiver]) -> None:
    instances = scale.Instances()
    for receiver in receivers:
        instances.add(receiver.url)
    with scale.CallbackForwarder(instances, lambda: "fresh") as forwarder:
        forwarder.at_once.add("twice")
        assert post_json(forwarder.url, _connected("twice"), {"Authorization": "Bearer first"})[0] == 200
        assert post_json(forwarder.url, _connected("twice"), {"Authorization": "Bearer again"})[0] == 503
    instances.close()
    # The first delivery went to #0 and, with a fresh token, to #1 at the same time; only once.
    assert [auth for _, auth, _ in receivers[0].got] == ["Bearer first"]
    assert sorted(auth or "" for _, auth, _ in receivers[1].got) == ["Bearer again", "Bearer fresh"]
    assert sorted((f.instance, f.repeat) for f in forwarder.log) == [(0, ""), (1, ""), (1, "at-once")]


def test_instances_are_on_loopback_only() -> None:
    with pytest.raises(ValueError):
        scale.Instances().add("http://10.0.0.1:7071")


# ---- a short run of the whole bench ----------------------------------------------------------------


def test_a_short_run_across_two_instances_passes_and_reports_its_figures() -> None:
    """40 calls on two instances and one Azurite, duplicates on both instances, callbacks crossing
    them, CallConnected repeated, Call Automation faults, and the store slow for a second (each
    request held 0.3 s: slower, not failing, so exactly-once must hold and the run must pass)."""
    command = [sys.executable, "-m", "bench.scale", "--calls", "40", "--instances", "2", "--workers", "4"]
    command += ["--fault-share", "0.1", "--store-slow", "1", "--store-slow-each", "0.3", "--store-stopped", "0"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=100)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    assert "calls with exactly one action: 40 / 40" in out
    transfers = re.search(r"transfer calls with exactly one answer and one transfer: (\d+) / (\d+)", out)
    assert transfers is not None and transfers.group(1) == transfers.group(2) != "0"
    assert re.search(r"CallConnected repeated to another instance: [1-9]", out)
    assert re.search(r"calls delivered to more than one instance: [1-9]", out)
    assert re.search(r"callbacks: \d+ sent .*, [1-9]\d* of \d+ to another instance", out)
    assert re.search(r"store fault window: slow \(0\.3 s per request\)", out)
    for label in (
        "first action, all calls",
        "transfer executed (transfer queues)",
        "store write, answer/redirect/reject records",
    ):
        figures = re.search(re.escape(label) + r"\s+(\d+)\s+([\d.]+)\s+([\d.]+)$", out, re.MULTILINE)
        assert figures is not None, (label, out)
        assert int(figures.group(1)) > 0 and float(figures.group(2)) <= float(figures.group(3))
    assert re.search(r"records: 40 in the table for 40 calls acted on; lost .*: 0", out)
    assert out.rstrip().endswith("PASS")
