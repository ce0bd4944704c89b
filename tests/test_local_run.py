"""`make run`: the replay of the bundled transferred calls, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import EXAMPLES, ROOT


def test_make_run_once_replays_every_bundled_call_and_exits_0_when_each_got_its_action() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACS_", "HANDOFF_", "APPLICATIONINSIGHTS_"))}
    result = subprocess.run(
        [sys.executable, "-m", "local.run", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((EXAMPLES / "calls" / "manifest.json").read_text())
    lines = result.stdout.splitlines()
    for entry in manifest:
        [line] = [i for i, text in enumerate(lines) if f" {entry['file']} " in text]
        assert lines[line].startswith("OK ")
        assert f"rule {entry['expect']['rule']} → queue {entry['expect']['queue']}" in lines[line + 2]
    assert "500112233445" not in result.stdout  # sensitive values are masked
    assert "AccountNumber=***" in result.stdout
    assert "Every call got its expected action." in result.stdout
