"""bench/load.py, `make bench ARGS=load`: a short run of the whole bench passes and reports its figures.

It once failed before posting a call (the local host's HTTP functions had become objects while the
bench still unpacked tuples), which nothing noticed: this run keeps the bench runnable."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT


def test_a_short_run_gives_every_call_exactly_one_action_and_times_the_transfers() -> None:
    command = [sys.executable, "-m", "bench.load", "--calls", "40", "--workers", "4", "--fault-share", "0.1"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=100, check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    assert "calls with exactly one action: 40 / 40" in out
    # The callback timing (the part that broke) reports the app's share of each transfer.
    share = re.search(r"of which: CallConnected reaches host -> transfer\s+(\d+)\s", out)
    assert share is not None and int(share.group(1)) > 0
