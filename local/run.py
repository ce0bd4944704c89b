"""``make run``: the function app on loopback against the local Call Automation emulator.

1. starts the Call Automation emulator and the local Functions host (127.0.0.1, ephemeral ports);
2. imports ``function_app`` with settings pointing at them (the real start-up path);
3. replays the bundled transferred calls in ``examples/calls/`` through
   ``POST /runtime/webhooks/eventgrid?functionName=incoming_call``, as Event Grid does;
4. prints one line per call: called number, UUI form, context variables (sensitive ones masked),
   rule, queue, and the action **as the emulator recorded it**;
5. keeps serving until Ctrl-C, printing the URL to post more events to — or, with ``--once``,
   exits after the replay: status 0 only if every call got its expected action.

Nothing leaves the machine: callbacks for hosts other than loopback (agents.example.com) are
recorded by the emulator, not sent.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from local.emulator import CallAutomationEmulator, RecordedAction
from local.host import LocalHost
from local.stack import actions_for_call, post_json, running_stack
from shared.adapters.settings import SettingsError
from shared.core.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CALLS = ROOT / "examples" / "calls"


class _Collector(logging.Handler):
    """Keeps the structured fields the app logs for each call, by event id."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.by_event: dict[str, dict[str, Any]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "handoff", None)
        if isinstance(fields, dict) and fields.get("event_id"):
            self.by_event[fields["event_id"]] = fields


def describe_actions(actions: list[RecordedAction]) -> str:
    """What the emulator executed for one call, e.g. 'answer → transfer to 4:+14255550123'."""
    parts = []
    for action in actions:
        if action.operation == "redirect":
            parts.append(f"redirect to {(action.body or {}).get('target', {}).get('rawId')}")
        elif action.operation == "reject":
            parts.append(f"reject ({action.body.get('callRejectReason', 'none')})")
        elif action.operation == "answer":
            parts.append(f"answer (callback {action.body.get('callbackUri')})")
        elif action.operation == "transfer":
            parts.append(f"transfer to {action.body.get('targetParticipant', {}).get('rawId')}")
        else:
            parts.append(action.operation)
    return " → ".join(parts) or "nothing"


def replay(host: LocalHost, emu: CallAutomationEmulator, collector: _Collector, out: Any) -> bool:
    manifest = json.loads((CALLS / "manifest.json").read_text())
    all_ok = True
    out.write(f"Replaying {len(manifest)} transferred calls through {host.event_grid_url()}\n\n")
    for entry in manifest:
        events = json.loads((CALLS / entry["file"]).read_text())
        status, _ = post_json(host.event_grid_url(), events, {"aeg-event-type": "Notification"})
        event = events[0]
        context_token = event["data"]["incomingCallContext"]
        expected = entry["expect"]["action"]
        # A transfer queue is answered first; the transfer follows the CallConnected callback.
        wanted = {
            "answer": ["answer"],
            "redirect": ["redirect"],
            "reject": ["reject"],
            "transfer": ["answer", "transfer"],
        }
        deadline = time.monotonic() + 5
        while True:
            mine = actions_for_call(emu, context_token)
            if [a.operation for a in mine] == wanted[expected] or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        fields = collector.by_event.get(event["id"], {})
        shown = (fields.get("context") or {}).items()
        context = ", ".join(f"{k}={v}" for k, v in shown) or "(none)"  # as received; sensitive ones masked
        ok = status in (200, 202) and [a.operation for a in mine] == wanted[expected]
        all_ok &= ok
        out.write(
            f"{'OK ' if ok else 'BAD'} {entry['file']:22} to {fields.get('called', '?')}"
            f"  uui {fields.get('uui_form', '?')}\n"
            f"    context: {context}\n"
            f"    rule {fields.get('rule')} → queue {fields.get('queue')} → emulator: {describe_actions(mine)}\n"
        )
        for message in (fields.get("errors") or []) + (fields.get("warnings") or []):
            out.write(f"    note: {message}\n")
    return all_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--once", action="store_true", help="exit after the replay (status 0 if every call got its action)"
    )
    args = parser.parse_args(argv)

    collector = _Collector()
    logging.getLogger("handoff").addHandler(collector)
    logging.getLogger("handoff").setLevel(logging.INFO)
    with running_stack() as stack:
        host = stack.host
        ok = replay(host, stack.emu, collector, sys.stdout)
        print(f"\n{'Every call got its expected action.' if ok else 'Some calls did NOT get their expected action.'}")
        if args.once:
            return 0 if ok else 1
        print(f"\nServing. Post IncomingCall events to:\n  {host.event_grid_url()}")
        print("  (header aeg-event-type: Notification). Ctrl-C to stop.")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            print("\nstopped")
    return 0


def run(argv: list[str] | None = None) -> int:
    """``main``, with a configuration or setting the app refuses shown as its report, not a traceback."""
    try:
        return main(argv)
    except (ConfigError, SettingsError) as exc:
        print(f"make run: the app cannot start.\n{exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run())
