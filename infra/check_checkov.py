"""Run checkov over infra/bicep and fail on anything it did not check or did not pass.

checkov's Bicep parser is older than the Bicep language: a file it cannot parse is silently
left out of the scan and only listed under ``parsing_errors`` in its JSON report. So this
script runs ``checkov --framework bicep --skip-download --directory infra/bicep -o json`` and
fails when:

* any file had a parsing error, or no Bicep resource was scanned at all;
* any check failed that is not in the skip list of .checkov.yaml;
* a skip in .checkov.yaml has no reason, or matches no failure any more (a stale skip);
* a template carries an inline ``checkov:skip`` (all skips live in .checkov.yaml).

checkov runs without the skip list (so stale skips show) and this script applies it; a
developer running checkov by hand at the repo root gets the same result from .checkov.yaml.
It runs offline: ``--skip-download``, no Bridgecrew/Prisma API key, no package update check.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".checkov.yaml"
BICEP_DIR = ROOT / "infra" / "bicep"
SKIP_LINE = re.compile(r"^\s*-\s*(CKV\w*_\d+)\s*(?:#\s*(.*))?$")
MIN_REASON = 20  # characters: a reason, not a placeholder


def config_skips(text: str) -> dict[str, str]:
    """The skip-check entries of .checkov.yaml and their reasons (end-of-line comments)."""
    skips: dict[str, str] = {}
    in_skips = False
    for line in text.splitlines():
        if re.match(r"^\S", line):
            in_skips = line.startswith("skip-check:")
            continue
        match = SKIP_LINE.match(line) if in_skips else None
        if match:
            skips[match.group(1)] = (match.group(2) or "").strip()
    return skips


def config_problems(text: str, skips: dict[str, str]) -> list[str]:
    """Check .checkov.yaml says what this script runs (when PyYAML is there: checkov's venv has it)."""
    try:
        import yaml
    except ImportError:
        return []
    config = yaml.safe_load(text)
    expected = {
        "framework": ["bicep"],
        "skip-download": True,
        "directory": ["infra/bicep"],
        "skip-check": sorted(skips),
    }
    actual = {key: config.get(key) for key in expected}
    if isinstance(actual["skip-check"], list):
        actual["skip-check"] = sorted(actual["skip-check"])
    return [
        f".checkov.yaml: {key} is {actual[key]!r}, expected {value!r}"
        for key, value in expected.items()
        if actual[key] != value
    ]


def offline_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in list(env):
        if name in ("BC_API_KEY", "BC_API_URL", "PRISMA_API_URL"):
            del env[name]
    env["BC_SKIP_MAPPING"] = "TRUE"  # no guideline/policy-metadata download
    env["CKV_SKIP_PACKAGE_UPDATE_CHECK"] = "true"  # no version check against PyPI
    env.setdefault("LOG_LEVEL", "WARNING")
    return env


def run_checkov(checkov: str) -> list[dict[str, Any]]:
    cmd = [checkov, "--framework", "bicep", "--skip-download", "--directory", str(BICEP_DIR)]
    cmd += ["--output", "json", "--compact"]
    # checkov reads .checkov.yaml from the working directory: run it elsewhere so that it
    # reports every failure, skipped ones included, and apply the skip list here.
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run(cmd, cwd=cwd, env=offline_env(), capture_output=True, text=True, timeout=900, check=False)
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"checkov produced no JSON report (exit {proc.returncode})") from None
    items = data if isinstance(data, list) else [data]
    return [item for item in items if isinstance(item, dict) and item.get("check_type") == "bicep"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Offline checkov scan of infra/bicep.")
    parser.add_argument(
        "--checkov",
        default=str(Path(sys.executable).parent / "checkov"),
        help="checkov executable (default: the one beside this Python, as in .venv-checkov)",
    )
    args = parser.parse_args(argv)
    checkov = str(Path(args.checkov).resolve()) if os.sep in args.checkov else args.checkov

    config_text = CONFIG.read_text(encoding="utf-8")
    skips = config_skips(config_text)
    problems = config_problems(config_text, skips)
    for check_id, reason in sorted(skips.items()):
        if len(reason) < MIN_REASON:
            problems.append(f".checkov.yaml: skip {check_id} has no reason (end-of-line comment)")
    for path in sorted(BICEP_DIR.rglob("*.bicep")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "checkov:skip" in line:
                rel = path.relative_to(ROOT)
                problems.append(f"{rel}:{number}: inline checkov:skip; put skips in .checkov.yaml")

    reports = run_checkov(checkov)
    if not reports:
        problems.append("checkov scanned no Bicep resource (no bicep report in its output)")
    matched: set[str] = set()
    passed = skipped = 0
    for report in reports:
        summary = report.get("summary", {})
        body = report.get("results", {})
        passed += summary.get("passed", 0)
        for error in body.get("parsing_errors", []) or []:
            problems.append(f"checkov could not parse {error}: it leaves such a file out of the scan")
        if summary.get("parsing_errors", 0) and not body.get("parsing_errors"):
            problems.append(f"checkov reports {summary['parsing_errors']} parsing error(s)")
        for failed in body.get("failed_checks", []):
            if failed["check_id"] in skips:
                matched.add(failed["check_id"])
                skipped += 1
                continue
            problems.append(
                f"FAILED {failed['check_id']} {failed['check_name']}: "
                f"infra/bicep{failed['file_path']} {failed['resource']}"
            )
        print(
            f"checkov {summary.get('checkov_version', '?')} bicep: {summary.get('resource_count', 0)} "
            f"resources, parsing errors {summary.get('parsing_errors', 0)}"
        )
    for check_id in sorted(set(skips) - matched):
        problems.append(f".checkov.yaml: skip {check_id} matches no failure any more; remove it")

    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"infra-check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"infra-check: passed {passed}, skipped {skipped} by .checkov.yaml, failed 0, parsing errors 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
