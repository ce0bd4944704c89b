"""How low the handler ratio can go: the ``incoming_call`` function with parts of its own work taken
away, against the same bare ``answer_call`` (a diagnostic for BENCHMARKS.md, "Handler overhead").

Run:  make bench ARGS=floor        (or .venv/bin/python -m bench.floor [--rounds N])

Three variants, each in its own pass, interleaved with C (a bare ``answer_call`` on the app's own
client, so that only our Python work differs; bench/handler.py's C) round by round, as
bench/handler.py does:

- full: the function as deployed;
- no-routing: ``routing.route`` returns a decision computed once beforehand (no UUI decode, no
  context mapping, no rules);
- no-own-work: that, and the operation context's JSON computed once beforehand, and no log line.

What is left in no-own-work is the part no routing or signing change can remove: the function and
the app's wrappers, reading the event, the dedupe claim, the result, and the SDK's request made
after that work instead of back to back. The patches replace module attributes for this process
only; nothing here is used by the app.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from bench.handler import AGENTS_CALLBACK, CALLED, CALLER, SIP_HEADERS, _configure_logging, interleaved

VARIANTS = ("full", "no-routing", "no-own-work")


def measure(variant: str, rounds: int, warmup: int, seed: int) -> dict[str, float]:
    from azure.functions import meta
    from azure.functions.eventgrid import EventGridEventInConverter

    import shared.app as app_module
    from local.stack import running_stack
    from shared.core import events, routing
    from shared.core.decision import OperationContext

    rng = random.Random(seed)
    saved_route, saved_json = routing.route, OperationContext.to_json
    with running_stack() as stack:
        emu = stack.emu
        app = app_module.current()
        function = stack.function("incoming_call")
        bare = app.actions.client  # the same client: the ratio is our Python work's alone
        first = emu.incoming_call(caller=CALLER, callee=CALLED, sip_headers=SIP_HEADERS)
        [envelope] = events.envelopes([first])
        call = events.incoming_call(envelope)
        decision = saved_route(call, app.routing)
        if variant in ("no-routing", "no-own-work"):
            setattr(routing, "route", lambda _call, _routing: decision)  # noqa: B010 - shared.app reads it there
        if variant == "no-own-work":
            text = OperationContext.for_call(call.correlation_id, decision, call.leg).to_json(app.actions.sealer)
            setattr(OperationContext, "to_json", lambda _self, _sealer, deterministic=False: text)  # noqa: B010
            app._log_call = lambda *_args: None  # type: ignore[method-assign]

        def ringing() -> tuple[str, Any]:
            event = emu.incoming_call(caller=CALLER, callee=CALLED, sip_headers=SIP_HEADERS)
            decoded = EventGridEventInConverter.decode(
                meta.Datum(type="json", value=json.dumps(event)), trigger_metadata=None
            )
            return event["data"]["incomingCallContext"], decoded

        def side_fn() -> Callable[[], Any]:
            return functools.partial(function, ringing()[1])

        def side_c() -> Callable[[], Any]:
            return functools.partial(bare.answer_call, ringing()[0], AGENTS_CALLBACK)

        try:
            samples = interleaved(emu, {"fn": side_fn, "C": side_c}, rounds, warmup, rng)
        finally:
            setattr(routing, "route", saved_route)  # noqa: B010
            setattr(OperationContext, "to_json", saved_json)  # noqa: B010
    return {side: statistics.median(values) for side, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--variant", choices=VARIANTS, help="one variant, in this process (else each in its own)")
    args = parser.parse_args(argv)
    if args.variant:
        _configure_logging("worker")
        medians: dict[str, Any] = measure(args.variant, args.rounds, args.warmup, args.seed)
        print(f"{args.variant:14} {medians['fn']:16.0f} {medians['C']:14.0f} {medians['fn'] / medians['C']:7.3f}")
        return 0
    print(f"handler floor: {args.rounds} interleaved rounds per variant, Python {sys.version.split()[0]}")
    print(f"{'variant':14} {'function p50 µs':>16} {'bare C p50 µs':>14} {'ratio':>7}", flush=True)
    for variant in VARIANTS:  # each in a fresh interpreter: the app indexes its functions once
        command = [sys.executable, "-m", "bench.floor", "--variant", variant, "--rounds", str(args.rounds)]
        command += ["--warmup", str(args.warmup), "--seed", str(args.seed)]
        if subprocess.run(command, check=False).returncode != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
