"""``make run``: the function app on loopback against the local Call Automation emulator.

1. starts the Call Automation emulator and the local Functions host (127.0.0.1);
2. imports ``function_app`` with settings pointing at them (the real start-up path);
3. replays transferred calls through ``POST /runtime/webhooks/eventgrid?functionName=incoming_call``,
   as Event Grid does: the bundled ones in ``examples/calls/``, or your own (``--calls DIR``);
4. prints a block per event: called number, UUI form, context variables (sensitive ones masked),
   rule, queue, and the action **as the emulator recorded it** (local/report.py);
5. keeps serving until Ctrl-C and prints the same block for every event posted to it — or, with
   ``--once``, exits after the replay: status 0 only if every call got what its manifest expects.

``--calls DIR`` replays ``DIR/manifest.json`` (``[{"file": ..., "expect": {"action", "queue", "rule"}}]``,
each part of ``expect`` optional) or, without one, every ``*.json`` (Event Grid or CloudEvents schema,
one event or an array) and every ``*.txt`` / ``*.sip`` SIP INVITE in DIR, by name; then each call
must get its action. ``--config FILE`` routes with FILE instead of ``routing.yaml``.

Nothing leaves the machine: callbacks for hosts other than loopback (agents.example.com) are
recorded by the emulator, not sent.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local import loopback
from local.azurite import Azurite, AzuriteError
from local.host import LocalHost
from local.report import EXPECT_KEYS, OPERATIONS, Claim, Reporter
from local.stack import post_json, running_stack
from shared import app as handoff
from shared.adapters.settings import SettingsError
from shared.core.acs import CUSTOM_HEADER_PREFIXES
from shared.core.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CALLS = ROOT / "examples" / "calls"
#: SIP INVITE text files (everything else replayed is event JSON).
INVITE_SUFFIXES = (".txt", ".sip")


class CallsError(ValueError):
    """The calls directory or its manifest cannot be used; the message says why."""


@dataclass(frozen=True)
class CallFile:
    """One file to replay: its events, what its manifest entry expects, or why it cannot be replayed."""

    file: str
    events: list[Any]
    expect: dict[str, str] | None = None
    problem: str | None = None


def load_calls(directory: Path) -> list[CallFile]:
    """The files to replay from ``directory``: its manifest.json's entries, else every event and INVITE file."""
    if not directory.is_dir():
        raise CallsError(f"{directory}: not a directory")
    manifest_path = directory / "manifest.json"
    if not manifest_path.exists():
        names = sorted(p.name for p in directory.iterdir() if p.suffix in (".json", *INVITE_SUFFIXES) and p.is_file())
        if not names:
            raise CallsError(f"{directory}: no manifest.json, *.json event or *.txt/*.sip INVITE file")
        return [_read(directory, name, None) for name in names]
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CallsError(f"{manifest_path}: cannot read it as JSON: {exc}") from None
    if not isinstance(manifest, list) or not manifest:
        raise CallsError(f'{manifest_path}: must be a non-empty array of {{"file": ..., "expect": {{...}}}}')
    calls = []
    for i, entry in enumerate(manifest):
        where = f"{manifest_path}: entry {i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise CallsError(f'{where}: needs "file", the name of an event or INVITE file beside the manifest')
        expect = entry.get("expect")
        if expect is not None:
            if not isinstance(expect, dict) or not expect or set(expect) - set(EXPECT_KEYS):
                raise CallsError(f'{where}: "expect" takes {", ".join(EXPECT_KEYS)}, got {expect!r}')
            if not all(isinstance(v, str) for v in expect.values()):
                raise CallsError(f'{where}: every value of "expect" is text')
            if "action" in expect and expect["action"] not in OPERATIONS:
                raise CallsError(f'{where}: "action" is one of {", ".join(OPERATIONS)}, got {expect["action"]!r}')
        calls.append(_read(directory, entry["file"], expect))
    return calls


def _read(directory: Path, name: str, expect: dict[str, str] | None) -> CallFile:
    path = directory / name
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix in INVITE_SUFFIXES:
            events = _events_from_invite(text)
        else:
            parsed = json.loads(text)
            events = parsed if isinstance(parsed, list) else [parsed]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return CallFile(name, [], expect, f"cannot read it: {exc}")
    if not events:
        return CallFile(name, [], expect, "it holds no event")
    return CallFile(name, events, expect)


# ---- SIP INVITE files ------------------------------------------------------------------------
# Kept to one small function on purpose: the lead may swap it for the core SIP parser
# (shared/core/sip.py, being written for `handoff listen`) once that lands.

#: RFC 3261 §7.3.3: the compact forms of the two headers read here.
_COMPACT = {"t": "to", "f": "from"}


def _events_from_invite(text: str) -> list[dict[str, Any]]:
    """The IncomingCall event (Event Grid schema) ACS raises for this SIP INVITE from the SBC.

    A minimal reading of RFC 3261 §7: the request line, then ``name: value`` header lines up to the
    first empty line (the body follows), a line starting with a space or tab continuing the previous
    header (§7.3.1), names case-insensitive, repeated headers joined with commas (§7.3.1). What ACS
    hands over, per its direct routing SIP specification: the called number is the Request-URI's
    user part, the caller the From header's; ``customContext.sipHeaders`` holds ``User-to-User`` and
    the custom ``X-*`` / ``X-MS-Custom-*`` headers, named as the SBC wrote them. Raises ValueError
    when the text is not an INVITE.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    request = lines[0].split() if lines else []
    if len(request) != 3 or request[0] != "INVITE" or not request[2].upper().startswith("SIP/"):
        raise ValueError("the first line is not a SIP INVITE request line (INVITE <Request-URI> SIP/2.0)")
    headers: list[list[str]] = []
    for line in lines[1:]:
        if not line.strip():
            break
        if line[0] in " \t" and headers:
            headers[-1][1] = f"{headers[-1][1]} {line.strip()}"
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise ValueError(f"not a SIP header line: {line[:40]!r}")
        headers.append([name.strip(), value.strip()])
    sip_headers: dict[str, str] = {}
    caller = ""
    for name, value in headers:
        low = _COMPACT.get(name.lower(), name.lower())
        if low == "from" and not caller:
            caller = value
        # Every X- header goes in: the app itself keeps X-MS-Custom-* and X-* and skips the reserved X-MS-*.
        if low == "user-to-user" or low.startswith(CUSTOM_HEADER_PREFIXES):
            sip_headers[name] = f"{sip_headers[name]}, {value}" if name in sip_headers else value
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()

    def party(number: str) -> dict[str, Any]:
        return {"kind": "phoneNumber", "rawId": f"4:{number}", "phoneNumber": {"value": number}}

    called = _sip_user(request[1])
    data: dict[str, Any] = {
        "to": party(called),
        "serverCallId": f"invite-{digest[:16]}",
        "callerDisplayName": caller.split("<", 1)[0].strip().strip('"') if "<" in caller else "",
        "customContext": {"sipHeaders": sip_headers, "voipHeaders": {}},
        # The same file replayed again is the same ringing call, as a redelivery would be.
        "incomingCallContext": f"invite-{digest[:32]}",
        "correlationId": str(uuid.UUID(digest[32:64])),
    }
    if caller:
        data["from"] = party(_sip_user(caller))
    return [
        {
            "id": str(uuid.UUID(digest[:32])),
            "topic": "/subscriptions/{subscription-id}/resourceGroups/{group-name}/providers/"
            "Microsoft.Communication/communicationServices/{communication-services-resource-name}",
            "subject": f"/caller/{data.get('from', {}).get('rawId', '')}/recipient/4:{called}",
            "data": data,
            "eventType": "Microsoft.Communication.IncomingCall",
            "dataVersion": "1.0",
            "metadataVersion": "1",
            "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
    ]


def _sip_user(uri: str) -> str:
    """The user part of a SIP or tel URI, with or without a display name and angle brackets."""
    if "<" in uri and ">" in uri:
        uri = uri[uri.index("<") + 1 : uri.index(">")]
    rest = uri.strip().partition(":")[2]
    return rest.split("@", 1)[0].split(";", 1)[0]


# ---- the replay ------------------------------------------------------------------------------


def replay(host: LocalHost, reporter: Reporter, calls: list[CallFile], source: Path) -> bool:
    """Post each file's events as Event Grid does; the reporter prints and judges each. True if all OK."""
    shown = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
    reporter.write(f"Replaying {len(calls)} transferred calls from {shown} through {host.event_grid_url()}\n\n")
    all_ok = True
    for call in calls:
        if call.problem is not None:
            reporter.write(f"BAD {call.file:22} {call.problem}\n")
            all_ok = False
            continue
        # A file's first event is the call its manifest entry describes; later ones (a redelivery) are shown.
        claims = [Claim(call.file, call.expect)] + [
            Claim(f"{call.file} #{i + 1}", checked=False) for i in range(1, len(call.events))
        ]
        reporter.claim(claims)
        status, body = post_json(host.event_grid_url(), call.events, {"aeg-event-type": "Notification"})
        left = reporter.unclaim()  # the host answers after invoking every event it took
        if left:
            reporter.write(f"BAD {call.file:22} the host answered {status}: {body.decode('utf-8', 'replace')[:200]}\n")
            all_ok = False
        for claim in claims:
            if claim in left:
                continue
            if not claim.done.wait(reporter.settle + 10):
                reporter.write(f"BAD {claim.label:22} nothing was printed for it in time\n")
            all_ok &= claim.ok
    return all_ok


def main(argv: list[str] | None = None) -> int:
    loopback.direct()  # before any client reads the proxy variables
    parser = argparse.ArgumentParser(prog="make run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--once", action="store_true", help="exit after the replay (status 0 if every call got what it expects)"
    )
    parser.add_argument(
        "--calls",
        metavar="DIR",
        type=Path,
        default=CALLS,
        help="replay DIR/manifest.json, or every *.json event and *.txt/*.sip INVITE in DIR, instead of examples/calls",
    )
    parser.add_argument("--config", metavar="FILE", type=Path, help="the routing file (default: routing.yaml)")
    parser.add_argument("--port", type=int, default=0, help="the local host's port (default: any free one)")
    parser.add_argument(
        "--no-store", action="store_true", help="run without the call records (no Azurite; lookups answer 503)"
    )
    args = parser.parse_args(argv)

    try:
        calls = load_calls(args.calls.resolve())
    except CallsError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 2
    settings = {"HANDOFF_CONFIG": str(args.config.resolve())} if args.config else {}
    logger = logging.getLogger("handoff")
    logger.setLevel(logging.INFO)
    try:
        with contextlib.ExitStack() as running:
            store = None
            if not args.no_store:
                try:
                    store = running.enter_context(Azurite())
                except AzuriteError as exc:
                    print(f"make run: {exc}", file=sys.stderr)
                    return 2
                settings["HANDOFF_STORE"] = store.connection_string
            stack = running.enter_context(running_stack(settings, port=args.port or None))
            reporter = Reporter(stack.emu, sys.stdout).start()
            logger.addHandler(reporter)
            stack.host.observers.append(reporter.observe)
            try:
                return _run(args, stack.host, reporter, calls, store)
            finally:
                stack.host.observers.remove(reporter.observe)
                logger.removeHandler(reporter)
                reporter.close()
    except (ConfigError, SettingsError) as exc:  # the app's own report, naming every problem and where
        print(f"make run: the app cannot start.\n{exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(f"make run: cannot serve on port {args.port}: {exc.strerror}", file=sys.stderr)
        return 2


def _run(
    args: argparse.Namespace, host: LocalHost, reporter: Reporter, calls: list[CallFile], store: Azurite | None
) -> int:
    ok = replay(host, reporter, calls, args.calls.resolve())
    verdict = "Every call got its expected action." if ok else "Some calls did NOT get their expected action."
    reporter.write(f"\n{verdict}\n")
    records = handoff.current().records
    if records is not None:
        records.flush(10)
        reporter.write(f"Call records: {records.written} written, {records.lost} lost.\n")
    if args.once:
        return 0 if ok else 1
    if store is not None:
        host.start_timers(60)  # the stranded-call sweep, every minute as in Azure
        reporter.write(
            f"\nCall records: Azurite on 127.0.0.1:{store.port} (in memory, gone when this stops). Look a call up"
            f" by its correlation id:\n  curl -H 'x-functions-key: {host.function_key}'"
            f" {host.url}/api/calls/<correlationId>\n"
            f"  HANDOFF_STORE='{store.connection_string}' .venv/bin/handoff calls list\n"
        )
    reporter.write(
        f"\nServing. Post IncomingCall events (header aeg-event-type: Notification) to:\n  {host.event_grid_url()}\n"
        f"Each one prints its block here. Ctrl-C to stop.\n\n"
    )
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        reporter.write("\nstopped\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
