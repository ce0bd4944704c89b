"""Fresh interpreters for cold-start benchmarks: spawn one until it says it is ready, interleaved."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
_R = TypeVar("_R")


def until_ready(code: str, env: dict[str, str], what: str) -> tuple[float, list[str]]:
    """Run ``python -c code``; (ms from spawn to its first line starting "ready", that line's words after it)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline() if proc.stdout else ""
    elapsed_ms = (time.perf_counter() - t0) * 1000
    _, err = proc.communicate(timeout=60)
    words = line.split()
    if proc.returncode != 0 or not words or words[0] != "ready":
        raise RuntimeError(f"cold-start child {what} failed ({proc.returncode}): {line!r} {err.strip()[-2000:]}")
    return elapsed_ms, words[1:]


def interleaved(
    sides: Iterable[str], run: Callable[[str], _R], runs: int, warmup: int, seed: int
) -> dict[str, list[_R]]:
    """``run(side)`` for every side, ``runs`` rounds in a random order each, after ``warmup`` rounds
    that write bytecode caches and fill the page cache (their results are dropped)."""
    order = list(sides)
    for _ in range(warmup):
        for side in order:
            run(side)
    rng = random.Random(seed)
    results: dict[str, list[_R]] = {side: [] for side in order}
    for _ in range(runs):
        rng.shuffle(order)
        for side in order:
            results[side].append(run(side))
    return results
