"""Bounded load test on loopback: many IncomingCall deliveries, duplicates and transient faults mixed in.

Run:  make bench ARGS=load      (or .venv/bin/python -m bench.load [--calls N] [--workers W])

Starts the Call Automation emulator and the local Functions host (``LocalHost(function_app.app)``)
on 127.0.0.1, then posts IncomingCall deliveries to the host's Event Grid URL
(``aeg-event-type: Notification``) from several worker threads, each on its own keep-alive
connection. Every call is one of the bundled examples in ``examples/calls/`` (both event schemas,
all UUI forms, the numbers of routing.yaml; expected actions from their manifest) with a fresh event
id, correlation id, incomingCallContext and event time. Mixed in:

- duplicates: the same event re-posted after the first post returned (sequential) or at the same
  instant from two threads (concurrent), and the same correlation id and context under a new event
  id, sequential or concurrent;
- transient faults: before a few % of the calls the emulator is told to fail its next Call
  Automation request with 503, 500 or 429 (``Retry-After`` 0.05 s), sometimes twice in a row; they
  land on whatever request comes next (answer, redirect, reject or a transfer) and the SDK's retry
  policy must absorb them;
- Event Grid's own redelivery: a post answered with anything but 2xx is posted again (at most
  twice, 0.2 s later), as Event Grid retries a failed delivery.

Time to action is measured per call from the start of its first post to the emulator's record of
the first action it executed for that call (both ``time.monotonic()`` in this process); for
transfer queues also to the transfer. Everything (load generator, host, app, SDK, emulator) shares
one process and one GIL on a shared machine, so the latencies are pessimistic; they are not the
service's latency in Azure.

Passes (exit 0) only when every call got exactly one action as the emulator recorded it: answer,
redirect or reject, or for a transfer queue answer then transfer.
"""

from __future__ import annotations

import argparse
import collections
import copy
import dataclasses
import http.client
import json
import logging
import random
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
CALLS = ROOT / "examples" / "calls"

#: What the emulator must have executed for one call, in order.
WANTED = {
    "answer": ("answer",),
    "redirect": ("redirect",),
    "reject": ("reject",),
    "transfer": ("answer", "transfer"),
}
#: Share of calls per delivery pattern (the rest are delivered once).
PATTERNS = {
    "same-event-sequential": 0.05,
    "same-event-concurrent": 0.05,
    "same-correlation-sequential": 0.04,
    "same-correlation-concurrent": 0.04,
}
RUN_BUDGET_S = 100.0  # posting stops here; with the settling below the whole run stays under 2 minutes
SETTLE_S = 10.0


@dataclass
class Call:
    index: int
    template: str
    expected: str
    pattern: str
    event: dict[str, Any]
    context: str
    fault: tuple[int, int] | None = None  # (status, times) injected just before the first post
    started: float | None = None
    statuses: list[int] = field(default_factory=list)
    redeliveries: int = 0


class _Outcomes(logging.Handler):
    """Counts the outcome the app logs for every delivery (done, duplicate, already-handled, ...)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "handoff", None)
        if isinstance(fields, dict) and "outcome" in fields:
            with self._lock2:
                self.counts[str(fields["outcome"])] += 1


def _templates() -> list[tuple[str, dict[str, Any], str]]:
    manifest = json.loads((CALLS / "manifest.json").read_text())
    out = []
    for entry in manifest:
        events = json.loads((CALLS / entry["file"]).read_text())
        out.append((entry["file"].removesuffix(".json"), events[0], entry["expect"]["action"]))
    return out


def now_text(event: dict[str, Any]) -> None:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    event["time" if "specversion" in event else "eventTime"] = now


def build_calls(n: int, fault_share: float, seed: int) -> list[Call]:
    rng = random.Random(seed)
    templates = _templates()
    calls = []
    for i in range(n):
        name, template, expected = templates[i % len(templates)]
        event = copy.deepcopy(template)
        event["id"] = str(uuid.uuid4())
        data = event["data"]
        data["correlationId"] = str(uuid.uuid4())
        data["serverCallId"] = f"server-call-load-{i:05d}"
        data["incomingCallContext"] = f"ctx-load-{i:05d}-{uuid.uuid4().hex}"
        roll, pattern = rng.random(), "once"
        for candidate, share in PATTERNS.items():
            if roll < share:
                pattern = candidate
                break
            roll -= share
        fault = None
        if rng.random() < fault_share:
            fault = (rng.choice([503, 500, 429]), 2 if rng.random() < 0.2 else 1)
        calls.append(Call(i, name, expected, pattern, event, data["incomingCallContext"], fault))
    return calls


class Poster:
    """One keep-alive HTTP connection per thread to the host's Event Grid endpoint."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = f"{parts.path}?{parts.query}"
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            self._local.conn = conn
        return conn

    def post(self, events: list[dict[str, Any]]) -> int:
        body = json.dumps(events).encode()
        headers = {"Content-Type": "application/json", "aeg-event-type": "Notification"}
        for attempt in range(2):
            conn = self._conn()
            try:
                conn.request("POST", self.path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                return int(response.status)
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def deliver(poster: Poster, events: list[dict[str, Any]], call: Call, lock: threading.Lock) -> None:
    """One delivery, redelivered (at most twice, 0.2 s apart) while the host does not answer 2xx."""
    for attempt in range(3):
        status = poster.post(events)
        with lock:
            call.statuses.append(status)
            if attempt:
                call.redeliveries += 1
        if 200 <= status < 300:
            return
        time.sleep(0.2)


def ready(
    emu: Any, event: dict[str, Any], fault: tuple[int, int] | None, deadline: float, new_id: bool
) -> dict[str, Any] | None:
    """Ready a call's ``event`` to ring now: its time, its injected ``fault`` (status, times), and its
    second delivery (the same event, or the same call under a new event id). None once past the deadline."""
    if time.monotonic() > deadline:
        return None
    now_text(event)
    if fault is not None:
        status, times = fault
        emu.inject("*", status=status, retry_after=0.05 if status == 429 else None, times=times)
    if not new_id:
        return event
    second = copy.deepcopy(event)
    second["id"] = str(uuid.uuid4())
    return second


def run_call(poster: Poster, emu: Any, call: Call, deadline: float, lock: threading.Lock) -> None:
    second = ready(emu, call.event, call.fault, deadline, new_id=call.pattern.startswith("same-correlation"))
    if second is None:
        return
    call.started = time.monotonic()
    if call.pattern == "once":
        deliver(poster, [call.event], call, lock)
    elif call.pattern.endswith("sequential"):
        deliver(poster, [call.event], call, lock)
        deliver(poster, [second], call, lock)
    else:  # concurrent: both posts released at the same instant
        barrier = threading.Barrier(2)

        def twin() -> None:
            barrier.wait(5)
            try:
                deliver(poster, [second], call, lock)
            finally:
                poster.close()

        helper = threading.Thread(target=twin, name=f"twin-{call.index}")
        helper.start()
        barrier.wait(5)
        deliver(poster, [call.event], call, lock)
        helper.join(30)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run(n: int, workers: int, fault_share: float, seed: int) -> int:
    from local.stack import running_stack

    outcomes = _Outcomes()
    handoff_log = logging.getLogger("handoff")
    handoff_log.addHandler(outcomes)
    handoff_log.setLevel(logging.INFO)
    handoff_log.propagate = False  # a thousand structured log lines would drown the summary

    calls = build_calls(n, fault_share, seed)
    lock = threading.Lock()
    began = time.monotonic()
    with running_stack() as stack:
        emu, host = stack.emu, stack.host
        arrivals = _time_callbacks(host)
        poster = Poster(host.event_grid_url())
        deadline = time.monotonic() + RUN_BUDGET_S
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eventgrid") as pool:
            for future in [pool.submit(run_call, poster, emu, c, deadline, lock) for c in calls]:
                future.result()
        posting_s = time.monotonic() - t0
        # Transfers follow the CallConnected callback: wait (bounded) until every call is complete.
        settle_until = time.monotonic() + SETTLE_S
        while time.monotonic() < settle_until:
            if _complete(calls, emu.executed()):
                break
            time.sleep(0.05)
        time.sleep(0.3)  # a late duplicate action would show up here
        executed = emu.executed()
        everything = emu.actions
        callbacks = emu.callbacks_sent
        host_errors = list(host.errors)

    by_call = actions_by_call(calls, executed)
    connected_at = _connected_arrivals(arrivals)
    callback_to_transfer: list[float] = []
    failures = []
    to_first: list[float] = []
    to_transfer: list[float] = []
    by_kind: dict[str, list[float]] = collections.defaultdict(list)
    for call in calls:
        mine = by_call.get(call.context, [])
        ops = tuple(a.operation for a in mine)
        if call.started is None or ops != WANTED[call.expected]:
            failures.append((call, ops))
            continue
        first = (mine[0].at - call.started) * 1000
        to_first.append(first)
        by_kind[call.expected].append(first)
        if call.expected == "transfer":
            to_transfer.append((mine[-1].at - call.started) * 1000)
            arrived = connected_at.get(mine[0].call_connection_id or "")
            if arrived is not None:
                callback_to_transfer.append((mine[-1].at - arrived) * 1000)

    faults = collections.Counter(f"{a.operation} {a.status}" for a in everything if a.fault)
    refused = [a for a in everything if not a.fault and not a.succeeded]
    deliveries = sum(len(c.statuses) for c in calls)
    patterns = collections.Counter(c.pattern for c in calls)
    statuses = collections.Counter(s for c in calls for s in c.statuses)
    exactly_one = len(calls) - len(failures)

    def row(label: str, values: list[float]) -> str:
        return f"  {label:56} {len(values):6d} {percentile(values, 0.5):9.1f} {percentile(values, 0.99):9.1f}"

    print(f"load: {n} calls, {workers} concurrent posters, Python {sys.version.split()[0]}, loopback only")
    print(
        f"  {deliveries} deliveries posted in {posting_s:.1f} s ({deliveries / posting_s:.0f}/s); "
        f"total run {time.monotonic() - began:.1f} s"
    )
    print("  delivery patterns: " + ", ".join(f"{k} {v}" for k, v in sorted(patterns.items())))
    print("  host answers: " + ", ".join(f"{k} x{v}" for k, v in sorted(statuses.items())))
    redelivered = sum(c.redeliveries for c in calls)
    print(f"  Event Grid-style redeliveries after a non-2xx answer: {redelivered}")
    print(
        f"  injected faults that hit a request: {sum(faults.values())} "
        f"({', '.join(f'{k} x{v}' for k, v in sorted(faults.items())) or 'none'}) "
        f"= {100 * sum(faults.values()) / max(1, len(everything)):.1f}% of {len(everything)} Call Automation requests"
    )
    print(f"  service outcomes logged: {', '.join(f'{k} {v}' for k, v in sorted(outcomes.counts.items()))}")
    print(f"  requests the emulator refused (e.g. already handled): {len(refused)}")
    print(f"  callbacks delivered to the host: {len(callbacks)}; host invocation errors: {len(host_errors)}")
    print()
    print(f"  {'time to action (post start -> emulator action)':56} {'calls':>6} {'p50 ms':>9} {'p99 ms':>9}")
    print(row("first action, all calls", to_first))
    for kind in ("answer", "redirect", "reject", "transfer"):
        print(row(f"first action, {kind} queues", by_kind.get(kind, [])))
    print(row("transfer executed (transfer queues)", to_transfer))
    print(row("  of which: CallConnected reaches host -> transfer", callback_to_transfer))
    faulted_contexts = {
        context
        for context, actions in actions_by_call(calls, [a for a in everything if a.fault or a.succeeded]).items()
        if any(a.fault for a in actions)
    }
    fault_calls = [
        (acts[0].at - c.started) * 1000
        for c in calls
        if c.context in faulted_contexts and c.started is not None and (acts := by_call.get(c.context))
    ]
    print(row("first action, calls with a faulted request (SDK retried)", fault_calls))
    print()
    print(f"calls with exactly one action: {exactly_one} / {len(calls)}")
    for call, ops in failures[:20]:
        print(
            f"  BAD call {call.index} ({call.template}, {call.pattern}, fault {call.fault}): expected "
            f"{WANTED[call.expected]}, emulator executed {ops}, host answered {call.statuses}"
        )
    for error in host_errors[:5]:
        print(f"  host error: {error}")
    print("PASS" if not failures else "FAIL")
    return 0 if not failures else 1


def _time_callbacks(host: Any) -> list[tuple[float, bytes]]:
    """Note when each callback request reaches the app (the function itself still handles it)."""
    arrivals: list[tuple[float, bytes]] = []

    def timed(user: Any) -> Any:
        def wrapper(request: Any) -> Any:
            arrivals.append((time.monotonic(), request.get_body()))
            return user(request)

        return wrapper

    host.http = [dataclasses.replace(function, user=timed(function.user)) for function in host.http]
    return arrivals


def _connected_arrivals(arrivals: list[tuple[float, bytes]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for at, body in arrivals:
        try:
            events = json.loads(body)
        except ValueError:
            continue
        for event in events if isinstance(events, list) else [events]:
            data = event.get("data") if isinstance(event, dict) else None
            if isinstance(data, dict) and str(event.get("type", "")).endswith(".CallConnected"):
                out.setdefault(str(data.get("callConnectionId")), at)
    return out


class HasContext(Protocol):
    @property
    def context(self) -> str: ...


def actions_by_call(calls: Sequence[HasContext], executed: list[Any]) -> dict[str, list[Any]]:
    """Executed actions per incomingCallContext; mid-call actions follow the connection the answer made.
    (bench/scale.py judges its calls with it too.)"""
    contexts = {c.context for c in calls}
    by_call: dict[str, list[Any]] = collections.defaultdict(list)
    connection_to_context: dict[str, str] = {}
    for action in sorted(executed, key=lambda a: a.at):
        context = (action.body or {}).get("incomingCallContext") if isinstance(action.body, dict) else None
        if context in contexts:
            by_call[context].append(action)
            if action.operation == "answer" and action.call_connection_id:
                connection_to_context[action.call_connection_id] = context
        elif action.call_connection_id in connection_to_context:
            by_call[connection_to_context[action.call_connection_id]].append(action)
    return by_call


def _complete(calls: list[Call], executed: list[Any]) -> bool:
    by_call = actions_by_call(calls, executed)
    return all(len(by_call.get(c.context, [])) >= len(WANTED[c.expected]) for c in calls if c.started is not None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="distinct calls (default 1000)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent posting threads (default 8)")
    parser.add_argument("--fault-share", type=float, default=0.04, help="share of calls preceded by a fault")
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args(argv)
    return run(args.calls, args.workers, args.fault_share, args.seed)


if __name__ == "__main__":
    sys.exit(main())
