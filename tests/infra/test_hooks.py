"""The azd hooks, run with a stand-in for azd: the deploy's numbers come from routing.yaml."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

from shared import cli
from tests.conftest import EXAMPLES, ROOT

FAKE_AZD = """#!/bin/sh
# Records every azd call; answers get-value from AZD_VALUES (name=value lines).
echo "$*" >> "$AZD_LOG"
if [ "$1 $2" = "env get-value" ]; then
    value=$(grep "^$3=" "$AZD_VALUES" 2>/dev/null | head -1 | cut -d= -f2-)
    [ -n "$value" ] || exit 1
    echo "$value"
fi
exit 0
"""


def run_preprovision(tmp_path: Path, values: str = "") -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    azd = bin_dir / "azd"
    azd.write_text(FAKE_AZD)
    azd.chmod(0o755)
    (tmp_path / "values").write_text(values)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.update({"AZD_LOG": str(tmp_path / "log"), "AZD_VALUES": str(tmp_path / "values")})
    result = subprocess.run(
        ["sh", "infra/hooks/preprovision.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    log = (tmp_path / "log").read_text().splitlines() if (tmp_path / "log").exists() else []
    return result, log


def test_preprovision_sets_the_event_grid_numbers_from_routing_yaml(tmp_path: Path) -> None:
    result, log = run_preprovision(tmp_path, "HANDOFF_CONTEXT_KEY=" + "k" * 64 + "\n")
    assert result.returncode == 0, result.stderr
    assert "env set IVR_TRANSFER_NUMBERS +14255550100,+14255550101" in log  # routing.yaml's workstream
    assert not any(line.startswith("env set HANDOFF_CONTEXT_KEY") for line in log)  # kept, never replaced


def test_preprovision_generates_a_context_key_once(tmp_path: Path) -> None:
    result, log = run_preprovision(tmp_path)
    assert result.returncode == 0, result.stderr
    [generated] = [line for line in log if line.startswith("env set HANDOFF_CONTEXT_KEY ")]
    key = generated.split()[-1]
    assert len(key) == 64 and int(key, 16) >= 0


def test_the_numbers_command_lists_every_phone_number_a_workstream_owns(tmp_path: Path) -> None:
    text = (
        (EXAMPLES / "routing.example.yaml")
        .read_text()
        .replace(
            'numbers: ["+14255550100", "+14255550101"]',
            'numbers: ["+14255550101", "+14255550100", "8:acs:resource_frontdesk"]',
        )
    )
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["numbers", "--config", str(path)], out=out, err=err) == 0
    assert out.getvalue() == "+14255550100,+14255550101\n"
    assert "8:acs:resource_frontdesk is not a phone number" in err.getvalue()
