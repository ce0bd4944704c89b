"""`make run`: the replay of the bundled transferred calls, as a user runs it."""

from __future__ import annotations

import json

from tests.conftest import EXAMPLES, run_python


def test_make_run_once_replays_every_bundled_call_and_exits_0_when_each_got_its_action() -> None:
    result = run_python(["-m", "local.run", "--once"])
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


def test_make_run_with_an_invalid_configuration_prints_the_report_not_a_traceback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "routing.yaml"
    bad.write_text((EXAMPLES / "routing.example.yaml").read_text().replace("queue: vip", "queue: nope"))
    result = run_python(["-m", "local.run", "--once"], {"HANDOFF_CONFIG": str(bad)})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{bad}:38: workstream 'retail-ivr', rule 'vip-callers': queue 'nope' is not a queue" in result.stderr
