"""`pip install .` (or `pipx install .`) gives a working handoff command, and builds without warnings.

This test installs into a fresh virtual environment from PyPI (pip's cache makes a second run
quick). It builds a copy of the repository, so the build's `build/` and `*.egg-info` stay out of
the working tree.
"""

from __future__ import annotations

import email
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT

_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv*", "__pycache__", "*.egg-info", "build", "dist", ".*_cache", ".hypothesis"
)


def _requirement(text: str) -> tuple[str, frozenset[str]]:
    """A requirement as (name[extras], {specifiers}): the order of the specifiers does not matter."""
    found = re.fullmatch(r"\s*([A-Za-z0-9._-]+(?:\[[^\]]*\])?)\s*(.*?)\s*", text)
    assert found, text
    return found.group(1), frozenset(s.strip() for s in found.group(2).split(",") if s.strip())


def run(args: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"}}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_pip_install_gives_a_working_handoff_command(tmp_path: Path) -> None:
    source = tmp_path / "handoff"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCES)
    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", venv], tmp_path).returncode == 0
    python = venv / "bin" / "python"

    # The build, verbose so that everything setuptools prints is shown: no deprecation boxes.
    wheels = tmp_path / "wheels"
    built = run([python, "-m", "pip", "wheel", "-v", "--no-deps", "--wheel-dir", wheels, source], tmp_path)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    output = built.stdout + built.stderr
    assert "SetuptoolsDeprecationWarning" not in output
    assert not re.search(r"deprecat", output, re.IGNORECASE), output

    [wheel] = wheels.glob("handoff-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        [metadata_name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(metadata_name))
        assert metadata["License-Expression"] == "MIT"
        assert (
            "Copyright (c) 2026 The Handoff authors"
            in archive.read(metadata_name.replace("METADATA", "licenses/LICENSE")).decode()
        )
    # The runtime dependencies are requirements.txt's, exactly.
    requirements = [line.split("#")[0] for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert {_requirement(r) for r in metadata.get_all("Requires-Dist") or []} == {
        _requirement(r) for r in requirements if r.strip()
    }

    installed = run([python, "-m", "pip", "install", "--disable-pip-version-check", wheel], tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]

    handoff = venv / "bin" / "handoff"
    version = run([handoff, "--version"], tmp_path)
    assert (version.returncode, version.stdout) == (0, f"handoff {metadata['Version']}\n"), version.stderr
    decoded = run([handoff, "decode", "a=b", "--json"], tmp_path)
    assert decoded.returncode == 0, decoded.stderr
    assert json.loads(decoded.stdout)["pairs"] == {"a": "b"}
