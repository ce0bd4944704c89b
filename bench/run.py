"""``make bench ARGS=...``: run one benchmark, or all of them, each in a fresh interpreter.

    make bench ARGS=core       decode + map + route per event (bench/core.py)
    make bench ARGS=handler    ratio (a): handler overhead vs a bare answer_call (bench/handler.py)
    make bench ARGS=cold       cold first answer as deployed, telemetry off and on (bench/cold.py)
    make bench ARGS=load       bounded load test on loopback (bench/load.py)
    make bench ARGS=floor      how low the handler ratio can go, parts of the work taken away (bench/floor.py)
    make bench ARGS=client     what each of the Call Automation client's HTTP settings saves (bench/client.py)
    make bench ARGS=phases     the handler's own steps, timed in place (bench/phases.py)
    make bench ARGS=scale      2-4 app instances sharing one store, duplicates, callbacks and faults
                               crossing instances (bench/scale.py)
    make bench ARGS=all        core, handler, cold and load, one after the other (the default)

Any other ``bench/<name>.py`` runs as ``python -m bench.<name>``. Anything after the name is passed
on, e.g. ``make bench ARGS="load --calls 2000"``. Each benchmark runs in its own interpreter so that
none inherits another's imports, settings or emulator. The exit status is non-zero when any
benchmark missed its target or failed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from local import loopback

ROOT = Path(__file__).resolve().parent.parent

COMMANDS: dict[str, list[str]] = {
    "core": ["-m", "bench.core"],
    "handler": ["-m", "bench.handler", "overhead"],
    "cold": ["-m", "bench.cold"],
    "load": ["-m", "bench.load"],
    "scale": ["-m", "bench.scale"],
}


def main(argv: list[str] | None = None) -> int:
    loopback.direct()  # every benchmark runs on loopback; its interpreters inherit this
    args = list(sys.argv[1:] if argv is None else argv)
    name = args.pop(0) if args else "all"
    if name in ("-h", "--help"):
        print(__doc__)
        return 0
    if name != "all" and name not in COMMANDS:
        if not name.isidentifier() or not (ROOT / "bench" / f"{name}.py").is_file():
            print(f"unknown benchmark {name!r}; choose one of {', '.join([*COMMANDS, 'all'])}", file=sys.stderr)
            return 2
        COMMANDS[name] = ["-m", f"bench.{name}"]  # any other bench/<name>.py runs as python -m bench.<name>
    names = ["core", "handler", "cold", "load"] if name == "all" else [name]
    worst = 0
    for current in names:
        if len(names) > 1:
            print(f"\n=== {current} ===", flush=True)
        command = [sys.executable, *COMMANDS[current], *(args if name != "all" else [])]
        worst = max(worst, subprocess.run(command, cwd=ROOT).returncode)
    return worst


if __name__ == "__main__":
    sys.exit(main())
