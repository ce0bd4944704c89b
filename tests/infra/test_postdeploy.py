"""The azd postdeploy hook in both shells: postdeploy.sh (run here, against a stand-in azd) and its
pwsh port postdeploy.ps1 (no pwsh here: read, and held to the same azd commands, checks and messages)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

HOOKS = ROOT / "infra" / "hooks"
SH = HOOKS / "postdeploy.sh"
PS1 = HOOKS / "postdeploy.ps1"

#: A stand-in azd: logs each command line, answers `env get-value`, fails `provision` on request.
FAKE_AZD = """#!/bin/sh
echo "$*" >> "$AZD_LOG"
case "$*" in
  provision*) exit "${FAKE_PROVISION_STATUS:-0}" ;;
  "env get-value EVENT_SUBSCRIPTION_DEPLOYED") echo "${FAKE_DEPLOYED:-true}" ;;
esac
"""
#: What the second pass runs when everything works, then the step that undoes the flag when it does not.
SECOND_PASS = [
    "env set DEPLOY_EVENT_SUBSCRIPTION true",
    "provision --no-prompt",
    "env get-value EVENT_SUBSCRIPTION_DEPLOYED",
]
UNDO = "env set DEPLOY_EVENT_SUBSCRIPTION false"


def azd_commands(text: str) -> list[str]:
    """The azd commands a script runs, in order (``Invoke-Azd`` is the pwsh script's azd); comments
    and the commands quoted in messages are not run, so they are left out."""
    found = []
    for line in text.splitlines():
        code = line.strip()
        if not code or code.startswith(("#", "echo ", "Write-Output ", "'", '"')):
            continue
        for match in re.finditer(r"(?:^|[\s(!])(?:azd|Invoke-Azd)((?:\s+[\w-]+)+)", code):
            found.append(" ".join(match.group(1).split()))
    return found


def messages(text: str) -> list[str]:
    """The postdeploy.sh messages, up to the first ``${`` (pwsh writes its variables without braces)."""
    said = re.findall(r'echo "(postdeploy: (?:[^"\\]|\\.)*)"', text)
    return [m.replace('\\"', '"').split("${")[0] for m in said]


def run_sh(tmp_path: Path, **env: str) -> tuple[int, list[str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    azd = bin_dir / "azd"
    azd.write_text(FAKE_AZD, encoding="utf-8")
    azd.chmod(0o755)
    log = tmp_path / "azd.log"
    log.write_text("", encoding="utf-8")
    result = subprocess.run(
        ["sh", str(SH)],
        # The stand-in first on PATH: the hook finds it, never a real azd.
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "AZD_LOG": str(log), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode, log.read_text(encoding="utf-8").splitlines(), result.stdout + result.stderr


def test_both_scripts_run_the_same_azd_commands_in_the_same_order() -> None:
    sh = azd_commands(SH.read_text(encoding="utf-8"))
    assert sh == [*SECOND_PASS, UNDO]
    assert azd_commands(PS1.read_text(encoding="utf-8")) == sh


def test_both_scripts_check_the_numbers_alike_and_say_the_same_things() -> None:
    sh, ps1 = SH.read_text(encoding="utf-8"), PS1.read_text(encoding="utf-8")
    e164 = r"'^\+[1-9][0-9]{6,14}$'"
    assert e164 in sh and e164 in ps1
    assert '"$count" -gt 25' in sh and "$count -gt 25" in ps1  # an advanced filter takes at most 25 values
    said = messages(sh)
    assert len(said) == 6
    for message in said:
        assert message in ps1, f"postdeploy.ps1 does not say: {message}"


def test_the_second_pass_provisions_the_subscription_for_valid_numbers(tmp_path: Path) -> None:
    status, azd, output = run_sh(tmp_path, IVR_TRANSFER_NUMBERS="+14255550100, +14255550101")
    assert status == 0, output
    assert azd == SECOND_PASS
    assert "subscription for 2 number(s) -> incoming_call" in output


def test_a_failed_second_pass_puts_the_flag_back_so_the_next_azd_up_starts_over(tmp_path: Path) -> None:
    status, azd, output = run_sh(tmp_path, IVR_TRANSFER_NUMBERS="+14255550100", FAKE_PROVISION_STATUS="1")
    assert status == 1 and "the second pass failed" in output
    assert azd == ["env set DEPLOY_EVENT_SUBSCRIPTION true", "provision --no-prompt", UNDO]
    status, azd, _ = run_sh(tmp_path, IVR_TRANSFER_NUMBERS="+14255550100", FAKE_DEPLOYED="false")
    assert (status, azd) == (1, [*SECOND_PASS, UNDO])


@pytest.mark.parametrize(
    "numbers",
    ["", "4255550100", "+14255550100,,+14255550101", ",".join(f"+1425555{n:04}" for n in range(26))],
)
def test_numbers_that_no_filter_could_take_stop_the_hook_before_azd_runs(tmp_path: Path, numbers: str) -> None:
    status, azd, output = run_sh(tmp_path, IVR_TRANSFER_NUMBERS=numbers)
    assert status == 1 and azd == [], output


def test_nothing_happens_when_the_subscription_was_provisioned_already(tmp_path: Path) -> None:
    status, azd, _ = run_sh(tmp_path, DEPLOY_EVENT_SUBSCRIPTION="true")
    assert (status, azd) == (0, [])
