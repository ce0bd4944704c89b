"""Decode + map + route per event: the pure core's share of the time between event and answer.

Run:  make bench ARGS=core     (or .venv/bin/python -m bench.core)

For each bundled transferred call (several UUI forms), times ``parse_events`` + ``route`` on the
event as Event Grid delivers it (parsed JSON), many times, and prints p50/p99 per form and overall.
Target (issue: core): p99 under 100 µs per event.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
from pathlib import Path

from shared import config, events, routing

ROOT = Path(__file__).resolve().parent.parent


def percentile(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000.0


def main(iterations: int = 20_000) -> dict[str, dict[str, float]]:
    table = config.load_file(str(ROOT / "routing.yaml"))
    manifest = json.loads((ROOT / "examples" / "calls" / "manifest.json").read_text())
    payloads = {
        m["file"].removesuffix(".json"): json.loads((ROOT / "examples/calls" / m["file"]).read_text()) for m in manifest
    }
    results: dict[str, dict[str, float]] = {}
    everything: list[int] = []
    gc.collect()
    for name, payload in payloads.items():
        for _ in range(500):  # warm-up
            routing.route(events.parse_events(payload)[0], table)
        samples = []
        for _ in range(iterations):
            t0 = time.perf_counter_ns()
            routing.route(events.parse_events(payload)[0], table)
            samples.append(time.perf_counter_ns() - t0)
        samples.sort()
        everything.extend(samples)
        results[name] = {
            "p50_us": percentile(samples, 0.50),
            "p99_us": percentile(samples, 0.99),
            "mean_us": statistics.fmean(samples) / 1000.0,
        }
    everything.sort()
    results["all"] = {
        "p50_us": percentile(everything, 0.50),
        "p99_us": percentile(everything, 0.99),
        "mean_us": statistics.fmean(everything) / 1000.0,
    }
    return results


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    out = main(n)
    print(f"decode + map + route per event, {n} iterations per form, Python {sys.version.split()[0]}")
    print(f"{'call':24} {'p50 µs':>8} {'p99 µs':>8} {'mean µs':>8}")
    for name, r in out.items():
        print(f"{name:24} {r['p50_us']:8.1f} {r['p99_us']:8.1f} {r['mean_us']:8.1f}")
    verdict = "PASS" if out["all"]["p99_us"] < 100 else "FAIL"
    print(f"target p99 < 100 µs: {verdict}")
