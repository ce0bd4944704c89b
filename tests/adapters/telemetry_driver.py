"""Drives the function app with telemetry on, in its own process, for tests/test_telemetry.py.

``configure_azure_monitor()`` sets process-wide providers once, so the telemetry scenarios run here,
in a fresh interpreter, and the test reads what reached its loopback ingestion endpoint.

Run by the test as ``python -m tests.adapters.telemetry_driver`` with the connection string of that endpoint
(and the other settings) in the environment. It starts the Call Automation emulator and the local
Functions host, configures telemetry (offline storage off), imports ``function_app`` (the real
start-up), posts every bundled call plus the failure paths through the host as Event Grid does,
waits for the callbacks to settle, flushes the providers and prints one JSON line describing what
it sent (event ids, correlation ids, raw UUI values, expectations).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from local.emulator import CallAutomationEmulator
from local.host import LocalHost
from local.stack import Stack, free_port, post_json, running_stack
from shared import app as handoff
from shared.adapters import settings, telemetry
from tests.conftest import ROOT

CALLS = ROOT / "examples" / "calls"

RETAIL = "+14255550100"  # retail-ivr in tests/data/telemetry-routing.yaml
NOBODY = "+14255550999"  # no workstream: the default queue
BILLING_TARGET = "+14255550123"

#: Sensitive values that must never leave the process (AccountNumber and Pin are sensitive).
ACCOUNT = "987654321012"
PIN = "4711"
SENTINEL_PAIRS = f"AccountNumber={ACCOUNT};Pin={PIN}"


def hex_uui(text: str, param: str = "encoding=hex") -> str:
    return text.encode().hex().upper() + ";" + param


class Driver:
    def __init__(self, emu: CallAutomationEmulator, host: LocalHost) -> None:
        self.emu = emu
        self.host = host
        self.sent: list[dict[str, Any]] = []
        self.first: dict[str, Any] = {}

    def post(self, events: list[dict[str, Any]]) -> int:
        return post_json(self.host.event_grid_url(), events, {"aeg-event-type": "Notification"})[0]

    def record(self, name: str, event: dict[str, Any], uui: str | None, expect: dict[str, Any], status: int) -> None:
        data = event["data"]
        self.sent.append(
            {
                "name": name,
                "event_id": event["id"],
                "correlation_id": data.get("correlationId"),
                "server_call_id": data.get("serverCallId"),
                "uui": uui,
                "expect": expect,
                "http_status": status,
            }
        )

    def call(
        self,
        name: str,
        uui: str | None,
        expect: dict[str, Any],
        *,
        to: str = RETAIL,
        extra_headers: dict[str, str] | None = None,
        prepare: Any = None,
    ) -> dict[str, Any]:
        sip = dict(extra_headers or {})
        if uui is not None:
            sip["User-To-User"] = uui
        event = self.emu.incoming_call(callee=to, sip_headers=sip or None)
        if prepare is not None:
            prepare(event)
        status = self.post([event])
        self.record(name, event, uui, expect, status)
        return event


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def bundled(driver: Driver) -> None:
    """Every call of examples/calls, with its event time moved to now (time to answer is then real)."""
    for entry in json.loads((CALLS / "manifest.json").read_text()):
        events = json.loads((CALLS / entry["file"]).read_text())
        for event in events:
            event["eventTime" if "eventTime" in event else "time"] = now_iso()
        status = driver.post(events)
        headers = events[0]["data"].get("customContext", {}).get("sipHeaders", {})
        uui = next((v for k, v in headers.items() if k.lower().replace("-", "") == "usertouser"), None)
        driver.record(entry["file"], events[0], uui, {**entry["expect"], "outcome": "done"}, status)


def wait(predicate: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def delivered(emu: CallAutomationEmulator, kind: str) -> int:
    return sum(1 for c in emu.callbacks_sent if c.status == 200 and f"Microsoft.Communication.{kind}" in c.types)


def scenarios(driver: Driver) -> None:
    emu = driver.emu
    fallback = {"queue": "agents", "action": "answer", "rule": "fallback", "outcome": "done"}
    invalid = {"queue": "agents", "action": "answer", "rule": "invalid-context", "outcome": "done"}

    # The first call of the process: answered before the exporter is set up (deferred.py), and still
    # exported later with its own times. The driver notes when it was posted and answered.
    before = time.time_ns()
    driver.call("first", f"Intent=support;{SENTINEL_PAIRS}", {**fallback, "uui_form": "plain"})
    driver.first = {
        "posted_ns": before,
        "answered_ns": time.time_ns(),
        "exporter_ready_when_answered": telemetry.state.runtime is not None,
    }

    # Transient: Call Automation answers 503 until the deadline; Event Grid's redelivery then succeeds.
    emu.inject("answer", status=503, times=50)
    transient = driver.call(
        "transient",
        f"Intent=support;{SENTINEL_PAIRS}",
        {**fallback, "outcome": "transient-failure", "http_status": 500},
    )
    emu.clear()  # the unused faults
    status = driver.post([transient])
    driver.record("transient-redelivered", transient, f"Intent=support;{SENTINEL_PAIRS}", fallback, status)

    bundled(driver)

    billing = {"queue": "billing", "action": "transfer", "rule": "billing-priority", "outcome": "done"}
    driver.call("sentinel-billing", f"Intent=billing;Priority=7;{SENTINEL_PAIRS}", {**billing, "uui_form": "plain"})
    driver.call(
        "sentinel-hex", hex_uui(f"{SENTINEL_PAIRS};Intent=support"), {**fallback, "uui_form": "hex", "decode": "ok"}
    )
    driver.call(
        "sentinel-pd4",
        f"{ACCOUNT};{PIN};12".encode().hex() + ";pd=4",
        {**fallback, "uui_form": "hex;pd=4", "decode": "ok"},
    )
    driver.call(
        "decode-error-encoding",
        f"{SENTINEL_PAIRS};encoding=base64",
        {**invalid, "uui_form": "invalid", "decode": "error", "decode_error": "unsupported_encoding"},
    )
    driver.call(
        "decode-error-hex",
        hex_uui(SENTINEL_PAIRS).replace(";", "ZZ;", 1),
        {**invalid, "uui_form": "invalid", "decode": "error", "decode_error": "non_hex_characters"},
    )
    driver.call(
        "type-error-sensitive",
        f"AccountNumber={ACCOUNT};Pin={PIN}+1;Intent=billing",
        {**invalid, "uui_form": "plain", "decode": "ok", "issues": "type_mismatch"},
    )
    driver.call(
        "type-error-plain",
        f"{SENTINEL_PAIRS};LanguageCode=abc",
        {**invalid, "uui_form": "plain", "decode": "ok", "issues": "type_mismatch"},
    )
    driver.call(
        "sentinel-header",
        f"Intent=support;Pin={PIN}",
        {**fallback, "uui_form": "plain"},
        extra_headers={"X-MS-Custom-AccountNumber": ACCOUNT},
    )
    driver.call(
        "unknown-number",
        SENTINEL_PAIRS,
        {"queue": "agents", "action": "answer", "rule": "unknown-number", "outcome": "done", "uui_form": "plain"},
        to=NOBODY,
    )

    # Stale: the ring is over when the answer arrives (400 IDX23010), not retried.
    driver.call(
        "stale",
        f"Intent=support;{SENTINEL_PAIRS}",
        {**fallback, "outcome": "stale"},
        prepare=lambda event: emu.expire_context(event["data"]["incomingCallContext"]),
    )

    # Duplicates: the same delivery twice, then a redelivery with a new event id.
    first = driver.call("duplicate-first", f"IsVip=1;{SENTINEL_PAIRS}", {"queue": "vip", "action": "redirect"})
    status = driver.post([first])
    driver.record("duplicate-again", first, None, {"outcome": "duplicate", "same_event": True}, status)
    again = json.loads(json.dumps(first))
    again["id"] = f"{first['id']}-redelivered"
    status = driver.post([again])
    driver.record("duplicate-new-id", again, None, {"outcome": "duplicate"}, status)

    # Both billing calls (bundled and sentinel) are transferred once their CallConnected arrives.
    wait(lambda: delivered(emu, "CallTransferAccepted") >= 2, "two accepted transfers")

    # A transfer that fails: no fallback target is left (agents answers), so the call is hung up.
    emu.fail_transfer_to(BILLING_TARGET)
    driver.call(
        "transfer-fails",
        f"Intent=payments;Priority=9;{SENTINEL_PAIRS}",
        {**billing, "transfer": "failed"},
    )
    wait(lambda: delivered(emu, "CallTransferFailed") >= 1, "the failed transfer's callback")
    wait(lambda: delivered(emu, "CallDisconnected") >= 1, "the hang-up's CallDisconnected")


def keys_unavailable(stack: Stack) -> int:
    """A fresh app whose signing keys cannot be fetched (nobody listens there) gets one callback."""
    handoff.start({**stack.env, "HANDOFF_OPENID_CONFIG_URL": f"http://127.0.0.1:{free_port()}/calling/keys"})
    event = {"type": "Microsoft.Communication.CallConnected", "data": {}}
    status, _ = stack.post_callback([event], "Bearer " + stack.emu.callback_token())
    return status


def store_lost(stack: Stack, driver: Driver) -> int:
    """A fresh app whose call records' store cannot be reached: one call's record is lost, counted."""
    from local.azurite import connection_string

    app = handoff.start({**stack.env, "HANDOFF_STORE": connection_string(free_port())})
    expect = {"action": "answer", "outcome": "done", "queue": "agents", "rule": "fallback"}
    driver.call("store-lost", f"Intent=support;{SENTINEL_PAIRS}", expect)
    assert app.records is not None
    app.records.flush(20)
    return app.records.lost


def main() -> int:
    report: dict[str, Any] = {}
    started: list[bool] = []

    def configure_telemetry() -> None:
        # Telemetry first, with offline storage off (nothing written under /tmp, nothing re-sent
        # from an earlier run); function_app's own start-up then finds it configured.
        started.append(telemetry.configure(settings.load(), disable_offline_storage=True))

    with running_stack(before_start=configure_telemetry) as stack:
        if started != [True]:
            print("telemetry did not start", file=sys.stderr)
            return 1
        driver = Driver(stack.emu, stack.host)
        scenarios(driver)
        report["hangups"] = len(stack.emu.executed("hangup"))
        report["transfers"] = len(stack.emu.executed("transfer"))
        report["keys_unavailable_status"] = keys_unavailable(stack)  # these two last: they replace the app
        report["store_lost"] = store_lost(stack, driver)
        report["calls"] = driver.sent
        report["first"] = driver.first
        report["host_errors"] = stack.host.errors
    report["flushed"] = telemetry.flush(20)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
