"""What telemetry costs: time per call and cold start, with and without it, side by side.

Run:  .venv/bin/python -m bench.telemetry [calls|cold|both] [--calls N] [--runs R]

``configure_azure_monitor()`` sets process-wide providers, so every side runs in its own process;
the parent only orchestrates and hosts the loopback ingestion endpoint (local/ingestion.py) the
exporters send to. Statsbeat, SDK stats and the control-plane settings fetch are off (offline); in
Azure they add background threads, not work on the call path.

(a) Time per call. A child process starts the Call Automation emulator, imports ``function_app``
    (the real start-up) and invokes the ``incoming_call`` function as the worker does: the event is
    decoded by azure-functions' ``EventGridEventInConverter`` outside the timed region, then the user
    function is called; it returns once the emulator has answered. Each call has a fresh
    incomingCallContext, event id and correlation id and is routed to the ``agents`` queue (answer).
    Logging is set up as the worker does it (root logger at INFO, each record formatted). Calls go
    back to back by default (the exporter's batches then fall between calls under load: the worst
    case for the tail); ``--interval-ms`` paces them.
    Sides: ``off`` (no connection string), ``on`` (telemetry with the distro's default sampler, at
    most 5 traces/s kept) and ``on-all`` (OTEL_TRACES_SAMPLER=always_on: every span recorded and
    exported, the worst case). The sides run as alternating blocks of child processes (ABC CBA ...);
    the samples of a side are pooled, warm-up calls dropped, and each block's median is paired with
    the ``off`` block next to it (the median of those ratios is the figure least moved by other load).
(b) Cold start. Fresh interpreters, one at a time, interleaved in a random order: ``import
    function_app`` without and with the connection string (configure_azure_monitor included), with
    the ACS access key (local runs) and with the managed identity (as in Azure: azure.identity, which
    the exporter imports too, is then loaded either way). Spawn → ready on stdout, and the
    in-process import time; medians.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.spawn import interleaved, until_ready

ROOT = Path(__file__).resolve().parent.parent
CALLED = "+14255550100"
CALLER = "+14255550177"
SIP_HEADERS = {"User-To-User": "sipkey1=sipval1;sipkey2=sipval2"}  # retail-ivr, no rule: agents (answer)

SIDES = ("off", "on", "on-all")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def base_env() -> dict[str, str]:
    """The parent's environment without any app, Application Insights or OpenTelemetry setting."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("ACS_", "HANDOFF_", "AZURE_", "APPLICATIONINSIGHTS_", "OTEL_", "PYTHON_APPLICATIONINSIGHTS")
        )
    }
    env.update(
        {
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
            "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
        }
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def side_env(side: str, connection_string: str) -> dict[str, str]:
    env = base_env()
    if side != "off":
        env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = connection_string
    if side == "on-all":
        env["OTEL_TRACES_SAMPLER"] = "always_on"
    return env


# --------------------------------------------------------------------------------------------------
# (a) time per call: the child


class _WorkerLikeHandler(logging.Handler):
    """Formats every record, as the worker's handler does before forwarding it to the host."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)
        self.count += 1


def child_calls(n: int, warmup: int, interval_ms: float = 0.0) -> dict[str, Any]:
    from azure.functions import meta
    from azure.functions.eventgrid import EventGridEventInConverter

    from local.stack import running_stack
    from shared.adapters import telemetry

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(_WorkerLikeHandler())
    samples: list[float] = []
    with running_stack() as stack:
        # Agents' callback URL is https on a non-loopback host: the emulator records, never sends.
        emu = stack.emu
        incoming_call = stack.function("incoming_call")
        answered = 0
        for i in range(warmup + n):
            event = emu.incoming_call(caller=CALLER, callee=CALLED, sip_headers=SIP_HEADERS)
            decoded = EventGridEventInConverter.decode(
                meta.Datum(type="json", value=json.dumps(event)), trigger_metadata=None
            )
            t0 = time.perf_counter_ns()
            incoming_call(decoded)
            elapsed = (time.perf_counter_ns() - t0) / 1000
            answered += 1
            deadline = time.monotonic() + 5
            while len(emu.callbacks_recorded) < answered:  # outside the timed region
                if time.monotonic() > deadline:
                    raise RuntimeError("the emulator did not record the CallConnected callback")
                time.sleep(0.0002)
            if i >= warmup:
                samples.append(elapsed)
            if answered >= 200:
                emu.clear()
                answered = 0
            if interval_ms:
                time.sleep(interval_ms / 1000)  # paced: the exporter's batches run between calls
        if len(emu.executed("answer")) != answered:
            raise RuntimeError("not every call was answered exactly once")
        flushed = telemetry.flush(30)
    return {"samples_us": samples, "telemetry": telemetry.enabled(), "flushed": flushed}


def spawn_calls(side: str, env: dict[str, str], n: int, warmup: int, interval_ms: float) -> dict[str, Any]:
    command = ["--child", "calls", "--calls", str(n), "--warmup", str(warmup), "--interval-ms", str(interval_ms)]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.telemetry", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"side {side} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["telemetry"] != (side != "off"):
        raise RuntimeError(f"side {side}: telemetry enabled is {result['telemetry']}")
    return result


def per_call(calls: int = 2000, blocks: int = 8, warmup: int = 200, interval_ms: float = 0.0) -> dict[str, Any]:
    from local.ingestion import IngestionEndpoint

    per_block = max(1, calls // blocks)
    pooled: dict[str, list[float]] = {side: [] for side in SIDES}
    block_p50: dict[str, list[float]] = {side: [] for side in SIDES}
    with IngestionEndpoint(lifetime=3600, max_bodies=100_000) as sink:
        for block in range(blocks):
            order = list(SIDES) if block % 2 == 0 else list(reversed(SIDES))
            for side in order:
                env = side_env(side, sink.connection_string)
                samples = spawn_calls(side, env, per_block, warmup, interval_ms)["samples_us"]
                pooled[side].extend(samples)
                block_p50[side].append(percentile(samples, 0.50))
        exported = len(sink.envelopes())
    out: dict[str, Any] = {
        "calls_per_side": per_block * blocks,
        "blocks": blocks,
        "interval_ms": interval_ms,
        "envelopes_exported": exported,
    }
    for side, values in pooled.items():
        out[side] = {
            "p50": percentile(values, 0.50),
            "p99": percentile(values, 0.99),
            "mean": statistics.fmean(values),
        }
    for side in SIDES[1:]:
        out[f"{side}/off p50"] = out[side]["p50"] / out["off"]["p50"]
        out[f"{side}/off p99"] = out[side]["p99"] / out["off"]["p99"]
        # Blocks next to each other share the machine's load of the moment: the paired ratio is the
        # figure least moved by other work on the machine.
        pairs = zip(block_p50[side], block_p50["off"], strict=True)
        out[f"{side}/off paired"] = statistics.median(a / b for a, b in pairs)
        out[f"{side} added p50 µs"] = statistics.median(
            a - b for a, b in zip(block_p50[side], block_p50["off"], strict=True)
        )
    return out


def print_per_call(r: dict[str, Any]) -> None:
    print(
        f"time per call: {r['calls_per_side']} calls per side in {r['blocks']} alternating blocks of processes, "
        + (f"one every {r['interval_ms']:g} ms" if r["interval_ms"] else "back to back")
        + f", Python {sys.version.split()[0]}"
    )
    labels = {
        "off": "off (no connection string)",
        "on": "on (default sampler, <= 5 traces/s)",
        "on-all": "on (always_on: every span exported)",
    }
    print(f"{'side':40} {'p50 µs':>9} {'p99 µs':>9} {'mean µs':>9}")
    for side in SIDES:
        s = r[side]
        print(f"{labels[side]:40} {s['p50']:9.0f} {s['p99']:9.0f} {s['mean']:9.0f}")
    for side in SIDES[1:]:
        print(
            f"ratio {side}/off: p50 {r[f'{side}/off p50']:.3f}, p99 {r[f'{side}/off p99']:.3f}; "
            f"median of per-block p50 ratios {r[f'{side}/off paired']:.3f} "
            f"(+{r[f'{side} added p50 µs']:.0f} µs)"
        )
    print(f"envelopes received by the loopback ingestion endpoint: {r['envelopes_exported']}")


# --------------------------------------------------------------------------------------------------
# (b) cold start

COLD_CHILD = (
    "import time as _t\n"
    "_s = _t.perf_counter()\n"
    "import function_app\n"
    "_e = _t.perf_counter()\n"
    "from shared.adapters import telemetry\n"
    "print(f'ready {_e - _s:.6f} {int(telemetry.enabled())}', flush=True)\n"
)


#: Cold-start sides: telemetry off/on, with the ACS access key (local runs) or the managed identity
#: (as in Azure, where call_automation.create_client imports azure.identity anyway; so does the exporter).
COLD_SIDES = {"off": ("off", "key"), "on": ("on", "key"), "off-mi": ("off", "mi"), "on-mi": ("on", "mi")}


def cold_env(side: str, connection_string: str) -> dict[str, str]:
    telemetry_side, credential = COLD_SIDES[side]
    env = side_env(telemetry_side, connection_string)
    env.update(
        {
            "ACS_ENDPOINT": "http://127.0.0.1:9",  # the discard port: a dummy, never contacted
            "ACS_RESOURCE_ID": "00000000-0000-0000-0000-000000000000",
            "HANDOFF_CALLBACK_URL": "http://127.0.0.1:9/api/callbacks",
            "HANDOFF_CONTEXT_KEY": "0123456789abcdef0123456789abcdef-bench-only",
            "HANDOFF_OPENID_CONFIG_URL": "http://127.0.0.1:9/calling/.well-known/acsopenidconfiguration",
        }
    )
    if credential == "key":
        env["ACS_ACCESS_KEY"] = "ZHVtbXktYWNjZXNzLWtleS1mb3ItdGhlLWNvbGQtc3RhcnQ="
    else:  # ManagedIdentityCredential is created, not used: no token is asked for
        env["AZURE_CLIENT_ID"] = "00000000-0000-0000-0000-000000000001"
    return env


def spawn_cold(side: str, env: dict[str, str]) -> tuple[float, float]:
    """(ms from spawn to ready, ms of the in-process import)."""
    wall, words = until_ready(COLD_CHILD, env, side)
    enabled = str(int(COLD_SIDES[side][0] == "on"))
    if len(words) < 2 or words[1] != enabled:
        raise RuntimeError(f"cold-start child {side}: telemetry enabled is {words[1:2]}, expected {enabled}")
    return wall, float(words[0]) * 1000


def cold(runs: int = 15, warmup: int = 2, seed: int = 3) -> dict[str, Any]:
    from local.ingestion import IngestionEndpoint

    with IngestionEndpoint(lifetime=3600, max_bodies=100_000) as sink:
        envs = {s: cold_env(s, sink.connection_string) for s in COLD_SIDES}
        results = interleaved(COLD_SIDES, lambda side: spawn_cold(side, envs[side]), runs, warmup, seed)
    wall = {s: [w for w, _ in r] for s, r in results.items()}
    inner = {s: [i for _, i in r] for s, r in results.items()}
    result: dict[str, Any] = {
        "runs": runs,
        "wall": {s: statistics.median(v) for s, v in wall.items()},
        "import": {s: statistics.median(v) for s, v in inner.items()},
        "wall_min": {s: min(v) for s, v in wall.items()},
    }
    for off, on in (("off", "on"), ("off-mi", "on-mi")):
        result[f"added {on}"] = {
            "wall_ms": result["wall"][on] - result["wall"][off],
            "import_ms": result["import"][on] - result["import"][off],
            "ratio": result["wall"][on] / result["wall"][off],
            "paired_ms": statistics.median(a - b for a, b in zip(wall[on], wall[off], strict=True)),
        }
    return result


def print_cold(r: dict[str, Any]) -> None:
    print(f"cold start: {r['runs']} fresh interpreters per side, interleaved, Python {sys.version.split()[0]}")
    print(f"{'import function_app':52} {'spawn→ready ms':>15} {'min ms':>8} {'import ms':>10}")
    labels = {
        "off": "telemetry off, ACS access key (local)",
        "on": "telemetry on, ACS access key (local)",
        "off-mi": "telemetry off, managed identity (as in Azure)",
        "on-mi": "telemetry on, managed identity (as in Azure)",
    }
    for side, label in labels.items():
        print(f"{label:52} {r['wall'][side]:15.1f} {r['wall_min'][side]:8.1f} {r['import'][side]:10.1f}")
    for on, what in (("on", "with the access key"), ("on-mi", "with the managed identity")):
        a = r[f"added {on}"]
        print(
            f"added by telemetry {what}: {a['wall_ms']:.1f} ms spawn→ready (ratio {a['ratio']:.3f}, "
            f"median of per-round differences {a['paired_ms']:.1f} ms), {a['import_ms']:.1f} ms of in-process import"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.telemetry", description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="?", choices=["calls", "cold", "both"], default="both")
    parser.add_argument("--calls", type=int, default=2000, help="measured calls per side for (a)")
    parser.add_argument("--blocks", type=int, default=8, help="alternating child processes per side for (a)")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up calls per child process for (a)")
    parser.add_argument(
        "--interval-ms", type=float, default=0.0, help="pause between calls for (a); 0: back to back (worst case)"
    )
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters per side for (b)")
    parser.add_argument("--child", choices=["calls"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "calls":
        print(json.dumps(child_calls(args.calls, args.warmup, args.interval_ms)))
        return 0
    if args.which in ("calls", "both"):
        print_per_call(per_call(args.calls, args.blocks, args.warmup, args.interval_ms))
    if args.which in ("cold", "both"):
        if args.which == "both":
            print()
        print_cold(cold(args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
