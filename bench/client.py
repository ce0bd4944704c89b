"""What each of the Call Automation client's HTTP settings saves (a diagnostic for BENCHMARKS.md,
"Handler overhead"): the same bare ``answer_call`` on four clients, interleaved round by round in a
random order against one loopback emulator, with logging set up as the Functions worker does.

Run:  make bench ARGS=client       (or .venv/bin/python -m bench.client [--rounds N])

- defaults: ``CallAutomationClient(endpoint, key)``, the SDK's defaults (bench/handler.py's B);
- env-once: the proxy and CA-bundle variables read once (``use_env_settings=False``), header logs as default;
- quiet-log: azure-core's header logs to the silent ``handoff.wire`` logger, the environment read per request;
- app: both, exactly as shared/adapters/transport.py builds them (what the app's client uses).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import random
import statistics
import sys
from collections.abc import Callable
from typing import Any

from bench.handler import AGENTS_CALLBACK, CALLED, CALLER, _configure_logging, interleaved


def measure(rounds: int, warmup: int, seed: int) -> dict[str, float]:
    from azure.communication.callautomation import CallAutomationClient
    from azure.core.credentials import AzureKeyCredential
    from azure.core.pipeline.policies import HttpLoggingPolicy
    from azure.core.pipeline.transport import RequestsTransport

    from local.stack import running_stack
    from shared.adapters import transport

    rng = random.Random(seed)
    with running_stack() as stack:
        emu = stack.emu
        key = AzureKeyCredential(emu.access_key)
        app_options = transport.client_options(emu.endpoint, connection_timeout=3.0, read_timeout=3.0)
        quiet = HttpLoggingPolicy(logger=logging.getLogger(transport.WIRE_LOGGER))
        clients: dict[str, Any] = {
            "defaults": CallAutomationClient(emu.endpoint, key),
            "env-once": CallAutomationClient(emu.endpoint, key, transport=RequestsTransport(use_env_settings=False)),
            "quiet-log": CallAutomationClient(emu.endpoint, key, http_logging_policy=quiet),
            "app": CallAutomationClient(emu.endpoint, key, **app_options),
        }

        def side(client: Any) -> Callable[[], Callable[[], Any]]:
            def prepare() -> Callable[[], Any]:
                context = emu.incoming_call(caller=CALLER, callee=CALLED)["data"]["incomingCallContext"]
                return functools.partial(client.answer_call, context, AGENTS_CALLBACK)

            return prepare

        samples = interleaved(emu, {name: side(c) for name, c in clients.items()}, rounds, warmup, rng, block=50)
    return {name: statistics.median(values) for name, values in samples.items()}


def environment_read_us(endpoint: str, trust_env: bool, number: int = 20000) -> float:
    """What requests' per-request read of the environment (proxies, CA bundle, netrc) costs, in µs."""
    import timeit

    import requests

    session = requests.Session()
    session.trust_env = trust_env
    seconds = timeit.timeit(lambda: session.merge_environment_settings(endpoint, {}, None, None, None), number=number)
    return seconds / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.client", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    _configure_logging("worker")
    medians = measure(args.rounds, args.warmup, args.seed)
    print(f"client settings: {args.rounds} interleaved rounds, bare answer_call, Python {sys.version.split()[0]}")
    print(f"{'client':10} {'p50 µs':>8} {'ratio':>7}")
    for name, median in medians.items():
        print(f"{name:10} {median:8.0f} {median / medians['defaults']:7.3f}")
    endpoint = "http://127.0.0.1:8080/calling/callConnections:answer"
    print(
        f"requests' merge_environment_settings with this environment's {len(os.environ)} variables:"
        f" {environment_read_us(endpoint, True):.1f} µs per request read from it (trust_env),"
        f" {environment_read_us(endpoint, False):.1f} µs when not"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
