"""Cold first answer, as deployed: from a fresh interpreter's start until the answer request reaches ACS.

Run:  make bench ARGS=cold        (or .venv/bin/python -m bench.cold [--runs N])

The package is built as ``make package`` builds it (dist/function-app.zip: the app, its
dependencies for Linux x86-64, unchecked-hash bytecode), unzipped into a temporary directory and
made read-only, as Flex Consumption mounts it. Every side runs in a fresh interpreter from that
tree (``python -S``, ``PYTHONPATH`` = the package and its ``.python_packages``,
``PYTHONDONTWRITEBYTECODE=1``), so all of them load the same dependencies the same way, and
talks to a loopback stand-in for Call Automation in this process, which notes when the answer
request arrives (one clock for spawn and arrival). The child exits as soon as its answer returns.

- A: this app. ``import function_app`` (settings, routing, client), the worker's indexing and
  Event Grid conversion, then the ``incoming_call`` function on one IncomingCall → answer.
- A+telemetry: the same with ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set (a loopback ingestion
  endpoint): turning Application Insights on must not make the first caller wait.
- A, validated (diagnostic): A with HANDOFF_CONFIG naming a copy of routing.yaml outside the
  package, so no prebuilt table matches and the file is validated at start-up (pydantic and the
  YAML parser loaded): what the prebuilt table saves.
- B: the card's dependencies put to their least use: import ``azure.functions``, ``pydantic``,
  ``yaml``; read routing.yaml with yaml's C loader; validate the called party with one pydantic
  model; one ``answer_call``.

Targets: A/B <= 1.10, and A+telemetry/B <= 1.15 (B without telemetry). Ratios of medians over
interleaved runs in a random order; the peak memory (max RSS) of each side is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_OFF, TARGET_ON = 1.10, 1.15
SIDES = ("A", "A+telemetry", "B", "A, validated")
ACCESS_KEY = "YmVuY2gtYWNjZXNzLWtleS1mb3ItdGhlLWNvbGQtc3RhcnQ="

#: The child's own peak resident memory, then exit at once. Read from /proc (VmHWM, this process's
#: memory since exec): getrusage's ru_maxrss would report the benchmark's own size, since Linux
#: carries the high-water mark of the forked copy of the parent across exec.
_PEAK = """
with open("/proc/self/status") as fh:
    peak = [line.split()[1] for line in fh if line.startswith("VmHWM:")]
os.write(1, (peak[0] if peak else "0").encode())
os._exit(0)
"""

CHILD_A = (
    """
import json, os, sys
import function_app
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
[incoming_call] = [f for f in function_app.app.get_functions() if f.get_function_name() == "incoming_call"]
datum = meta.Datum(type="json", value=os.environ["BENCH_EVENT"])
incoming_call.get_user_function()(EventGridEventInConverter.decode(datum, trigger_metadata=None))
"""
    + _PEAK
)

CHILD_B = (
    """
import json, os
import azure.functions, pydantic, yaml
from azure.communication.callautomation import CallAutomationClient
from azure.core.credentials import AzureKeyCredential
with open("routing.yaml", encoding="utf-8") as fh:
    routing = yaml.load(fh.read(), Loader=yaml.CSafeLoader)
class Party(pydantic.BaseModel):
    kind: str
    rawId: str
    phoneNumber: dict[str, str] | None = None
event = json.loads(os.environ["BENCH_EVENT"])
called = Party.model_validate(event["data"]["to"])
client = CallAutomationClient(os.environ["ACS_ENDPOINT"], AzureKeyCredential(os.environ["ACS_ACCESS_KEY"]))
client.answer_call(event["data"]["incomingCallContext"], os.environ["HANDOFF_CALLBACK_URL"])
"""
    + _PEAK
)


class _Arrivals:
    """The loopback Call Automation: when each incomingCallContext's answer request arrived."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.changed = threading.Condition()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        arrivals = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                arrived = time.perf_counter()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                context = json.loads(body).get("incomingCallContext", "")
                with arrivals.changed:
                    arrivals.at[context] = arrived
                    arrivals.changed.notify_all()
                reply = json.dumps({"callConnectionId": "bench", "serverCallId": "bench"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def wait(self, context: str, timeout: float = 60.0) -> float:
        with self.changed:
            if not self.changed.wait_for(lambda: context in self.at, timeout):
                raise TimeoutError("the answer request never arrived")
            return self.at.pop(context)


@contextmanager
def read_only_package() -> Iterator[Path]:
    """``make package`` into a temporary directory, unzipped and made read-only."""
    from local.package import build

    with tempfile.TemporaryDirectory(prefix="handoff-cold-") as tmp:
        zip_path = Path(tmp) / "function-app.zip"
        build(zip_path)
        tree = Path(tmp) / "wwwroot"
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(tree)
        shutil.copy(tree / "routing.yaml", Path(tmp) / "routing-copy.yaml")  # the diagnostic side's file
        for path in [tree, *tree.rglob("*")]:
            mode = path.stat().st_mode
            path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            yield tree
        finally:
            for path in [tree, *tree.rglob("*")]:
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
            shutil.rmtree(tree, ignore_errors=True)


def event(context: str) -> str:
    [template] = json.loads((ROOT / "examples" / "calls" / "plain-uui.json").read_text())
    template["data"]["incomingCallContext"] = context
    template["data"]["correlationId"] = context
    return json.dumps(template)


def run_child(side: str, tree: Path, env: dict[str, str], arrivals: _Arrivals, n: int) -> tuple[float, int]:
    """(ms from spawn to the answer request's arrival, peak RSS in KiB) of one fresh interpreter."""
    context = f"cold-{side}-{n}-{time.monotonic_ns()}"
    child_env = {**env, "BENCH_EVENT": event(context)}
    if side != "A+telemetry":
        child_env.pop("APPLICATIONINSIGHTS_CONNECTION_STRING", None)
    if side == "A, validated":
        child_env["HANDOFF_CONFIG"] = str(tree.parent / "routing-copy.yaml")
    code = CHILD_B if side == "B" else CHILD_A
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-S", "-c", code], cwd=tree, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    arrived = arrivals.wait(context)
    out, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"side {side} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return (arrived - started) * 1000, int(out.decode().strip() or 0)


def child_env(tree: Path, endpoint: str, ingestion: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(tree), str(tree / ".python_packages" / "lib" / "site-packages")]),
            "PYTHONDONTWRITEBYTECODE": "1",
            "ACS_ENDPOINT": endpoint,
            "ACS_ACCESS_KEY": ACCESS_KEY,
            "ACS_RESOURCE_ID": "00000000-0000-0000-0000-000000000000",
            "HANDOFF_CALLBACK_URL": "https://handoff.example.com/api/callbacks",
            "HANDOFF_CONTEXT_KEY": "bench-context-key-0123456789abcdef0123456789",
            # Every deployment keeps call records; the record is written after the answer request
            # (here: never, the child exits at the answer), so nobody needs to serve this store.
            "HANDOFF_STORE": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;",
            "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion,
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
            "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
        }
    )
    return env


def measure(runs: int, warmup: int, seed: int) -> dict[str, Any]:
    from local.ingestion import IngestionEndpoint

    arrivals = _Arrivals()
    server = ThreadingHTTPServer(("127.0.0.1", 0), arrivals.handler())
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink = IngestionEndpoint(lifetime=3600).start()
    try:
        with read_only_package() as tree:
            env = child_env(tree, f"http://127.0.0.1:{server.server_address[1]}", sink.connection_string)
            rng = random.Random(seed)
            results: dict[str, list[tuple[float, int]]] = {side: [] for side in SIDES}
            order = list(SIDES)
            for round_number in range(warmup + runs):
                rng.shuffle(order)
                for side in order:
                    sample = run_child(side, tree, env, arrivals, round_number)
                    if round_number >= warmup:
                        results[side].append(sample)
    finally:
        server.shutdown()
        server.server_close()
        sink.stop()
    ms = {side: [s[0] for s in samples] for side, samples in results.items()}
    med = {side: statistics.median(values) for side, values in ms.items()}
    return {
        "runs": runs,
        "median_ms": med,
        "min_ms": {side: min(values) for side, values in ms.items()},
        "rss_mib": {side: statistics.median(s[1] for s in samples) / 1024 for side, samples in results.items()},
        "ratio_off": med["A"] / med["B"],
        "ratio_on": med["A+telemetry"] / med["B"],
        "paired_off": statistics.median(a / b for a, b in zip(ms["A"], ms["B"], strict=True)),
        "paired_on": statistics.median(a / b for a, b in zip(ms["A+telemetry"], ms["B"], strict=True)),
    }


def report(r: dict[str, Any]) -> bool:
    print(f"cold first answer: {r['runs']} fresh interpreters per side, interleaved, Python {sys.version.split()[0]}")
    print(f"{'side':16} {'median ms':>10} {'min ms':>8} {'peak RSS MiB':>13}")
    for side in SIDES:
        print(f"{side:16} {r['median_ms'][side]:10.1f} {r['min_ms'][side]:8.1f} {r['rss_mib'][side]:13.1f}")
    ok_off = bool(r["ratio_off"] <= TARGET_OFF)
    ok_on = bool(r["ratio_on"] <= TARGET_ON)
    print(
        f"A/B of medians {r['ratio_off']:.3f} (target <= {TARGET_OFF}: {'PASS' if ok_off else 'FAIL'});"
        f" median of paired ratios {r['paired_off']:.3f}"
    )
    print(
        f"A+telemetry/B of medians {r['ratio_on']:.3f} (target <= {TARGET_ON}: {'PASS' if ok_on else 'FAIL'});"
        f" median of paired ratios {r['paired_on']:.3f}"
    )
    validated = r["median_ms"]["A, validated"]
    print(
        f"A, validated (diagnostic): routing.yaml validated at start-up instead of the prebuilt table,"
        f" +{validated - r['median_ms']['A']:.1f} ms ({validated / r['median_ms']['B']:.3f} of B)"
    )
    return ok_off and ok_on


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cold", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="measured fresh interpreters per side")
    parser.add_argument("--warmup", type=int, default=2, help="rounds first, not measured (page cache)")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    return 0 if report(measure(args.runs, args.warmup, args.seed)) else 1


if __name__ == "__main__":
    sys.exit(main())
