"""Where the ``incoming_call`` function's own time goes, measured in place (a diagnostic for
BENCHMARKS.md, "Handler overhead"): ``perf_counter_ns`` marks around each step of the function as
deployed, on calls made one at a time against the loopback emulator, as bench/handler.py's side A.

Run:  make bench ARGS=phases       (or .venv/bin/python -m bench.phases [--calls N])

The marks wrap module and instance attributes of this process only (each adds well under a
microsecond); the medians are over the calls after warm-up.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.handler import CALLED, CALLER, SIP_HEADERS, _caught_up, _configure_logging, _wait_until

STEPS = (
    ("reading the event", "parse>", "parse<"),
    ("routing (decode, context, rules)", "route>", "route<"),
    ("the dedupe claim", "claim>", "claim<"),
    ("the signed operation context", "opctx>", "opctx<"),
    ("the SDK's answer_call", "sdk>", "sdk<"),
    ("the log line (after the request)", "log>", "log<"),
)


def measure(calls: int, warmup: int) -> dict[str, float]:
    from azure.functions import meta
    from azure.functions.eventgrid import EventGridEventInConverter

    import shared.app as app_module
    from local.stack import running_stack
    from shared.core import events, routing
    from shared.core.decision import OperationContext

    marks: dict[str, int] = {}

    def mark(owner: Any, name: str, label: str) -> None:
        inner: Callable[..., Any] = getattr(owner, name)

        def marked(*args: Any, **kwargs: Any) -> Any:
            marks[label + ">"] = time.perf_counter_ns()
            try:
                return inner(*args, **kwargs)
            finally:
                marks[label + "<"] = time.perf_counter_ns()

        setattr(owner, name, marked)

    # shared.app reads events.incoming_call and routing.route through their modules at each call.
    mark(routing, "route", "route")
    mark(events, "incoming_call", "parse")
    mark(OperationContext, "to_json", "opctx")
    rows: list[dict[str, float]] = []
    with running_stack() as stack:
        emu = stack.emu
        app = app_module.current()
        mark(app.actions.client, "answer_call", "sdk")
        mark(app, "_log_call", "log")
        mark(app.claims, "claim", "claim")
        function = stack.function("incoming_call")
        answered = 0
        for i in range(warmup + calls):
            event = emu.incoming_call(caller=CALLER, callee=CALLED, sip_headers=SIP_HEADERS)
            decoded = EventGridEventInConverter.decode(
                meta.Datum(type="json", value=json.dumps(event)), trigger_metadata=None
            )
            marks.clear()
            t0 = time.perf_counter_ns()
            function(decoded)
            t1 = time.perf_counter_ns()
            answered += 1
            _wait_until(functools.partial(_caught_up, emu, answered))
            if answered >= 100:
                emu.clear()
                answered = 0
                gc.collect()
            if i >= warmup:
                row = {label: (marks[end] - marks[start]) / 1000 for label, start, end in STEPS}
                row["the function, in all"] = (t1 - t0) / 1000
                rows.append(row)
    return {label: statistics.median(row[label] for row in rows) for label in rows[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.phases", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1200)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args(argv)
    _configure_logging("worker")
    medians = measure(args.calls, args.warmup)
    print(f"incoming_call's steps in place: median of {args.calls} calls, Python {sys.version.split()[0]}")
    for label, value in medians.items():
        print(f"{label:36} {value:8.1f} µs")
    own = medians["the function, in all"] - medians["the SDK's answer_call"]
    print(f"{'everything but the SDK call':36} {own:8.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
