"""`make package`: dist/function-app.zip holds exactly what a deployment ships, and runs read-only.

The expected contents are derived here from the source tree and from the installed wheels' own
RECORD files, not from local/package.py. The import check runs the unzipped package the way Flex
Consumption does: a directory Python cannot write to, a fresh interpreter that sees only the
package and the standard library, and bytecode writing disabled. An audit hook records every
``compile`` of a file: a module whose ``.pyc`` were missing or stale would be compiled from source.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import re
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from local.package import PackageError, runtime_python
from tests.conftest import ROOT, START_SETTINGS

SITE = ".python_packages/lib/site-packages"
TAG = sys.implementation.cache_tag  # cpython-311: the runtime the Bicep deploys (checked in test_infra)
SETTINGS = START_SETTINGS


def build(output: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``make package`` with the output elsewhere, without the caller's PYTHON_VERSION."""
    base = {k: v for k, v in os.environ.items() if k != "PYTHON_VERSION"}
    return subprocess.run(
        [sys.executable, "-m", "local.package", "--output", str(output)],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="session")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("package") / "function-app.zip"
    result = build(output)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r".*function-app\.zip: \d+ files \(.*\), [\d.]+ MB\n", result.stdout), result.stdout
    return output


def pyc(source: str) -> str:
    path = Path(source)
    return (path.parent / "__pycache__" / f"{path.stem}.{TAG}.pyc").as_posix()


def expected_app_files() -> set[str]:
    sources = ["function_app.py"]
    for package in ("functions", "shared"):
        sources += [
            p.relative_to(ROOT).as_posix() for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts
        ]
    data = {"host.json", "requirements.txt", "routing.yaml", "routing.yaml.prebuilt", "LICENSE"}
    return data | set(sources) | {pyc(s) for s in sources}


def expected_dependency_files(archive: zipfile.ZipFile) -> set[str]:
    """What each wheel's RECORD says it installed (console scripts left out), with bytecode for its .py."""
    expected: set[str] = set()
    for record in (n for n in archive.namelist() if re.fullmatch(rf"{SITE}/[^/]+\.dist-info/RECORD", n)):
        for row in csv.reader(io.StringIO(archive.read(record).decode())):
            if row and not row[0].startswith("../"):  # ../../bin/…: scripts, not shipped
                expected.add(f"{SITE}/{row[0]}")
                if row[0].endswith(".py"):
                    expected.add(f"{SITE}/{pyc(row[0])}")
    return expected


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def test_the_zip_holds_exactly_the_app_its_dependencies_and_their_bytecode(package: Path) -> None:
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
        assert len(names) == len(archive.namelist()), "duplicate entries"
        app = {n for n in names if not n.startswith(SITE + "/")}
        assert app == expected_app_files()
        assert names - app == expected_dependency_files(archive)
        # Every requirement is there, for Linux x86-64.
        installed = {
            normalized(n.split("/")[3].removesuffix(".dist-info").rsplit("-", 1)[0])
            for n in names
            if ".dist-info/" in n
        }
        for line in (ROOT / "requirements.txt").read_text().splitlines():
            if requirement := re.match(r"[A-Za-z0-9._-]+", line.split("#")[0].strip()):
                assert normalized(requirement.group(0)) in installed, f"{requirement.group(0)} is not shipped"
        binaries = [n for n in names if n.endswith(".so")]
        assert binaries and all(re.search(r"(cpython-311-x86_64-linux-gnu|abi3)\.so$", n) for n in binaries)
        # Nothing the deployment must not carry.
        for name in names:
            top = name.split("/")[0]
            assert top not in {"tests", "local", "bench", "infra", "docs", "examples", "dist", "bin"}, name
            assert not top.startswith((".venv", ".git", ".azure")), name
            assert name not in {"azure.yaml", "pyproject.toml", "Makefile", ".funcignore", "local.settings.json"}
            if "/__pycache__/" in f"/{name}":
                assert name.endswith(f".{TAG}.pyc"), f"{name}: bytecode of another interpreter or a stray file"


def test_all_bytecode_is_unchecked_hash_for_this_runtime(package: Path) -> None:
    with zipfile.ZipFile(package) as archive:
        headers = {n: archive.read(n)[:8] for n in archive.namelist() if n.endswith(".pyc")}
    assert headers
    for name, header in headers.items():
        assert header[:4] == importlib.util.MAGIC_NUMBER, name
        # PEP 552 flags: bit 0 hash-based, bit 1 check_source. 0b01 is unchecked-hash.
        assert int.from_bytes(header[4:8], "little") == 0b01, name


def test_entries_are_sorted_with_a_fixed_timestamp_and_plain_permissions(package: Path) -> None:
    with zipfile.ZipFile(package) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {stat.S_IMODE(i.external_attr >> 16) for i in infos} <= {0o644, 0o755}


def test_two_builds_are_byte_identical(package: Path, tmp_path: Path) -> None:
    again = tmp_path / "function-app.zip"
    assert build(again).returncode == 0
    assert again.read_bytes() == package.read_bytes()


_IMPORT_EVERYTHING = """
import importlib, json, os, pkgutil, sys

compiled = []
sys.addaudithook(lambda event, args: event == "compile" and compiled.append(args[1]))

import function_app  # start-up: settings, routing.yaml, the Call Automation client

names = ["function_app"]
for package in ("functions", "shared"):
    module = importlib.import_module(package)
    names += [package] + [info.name for info in pkgutil.walk_packages(module.__path__, package + ".")]
for name in names:
    importlib.import_module(name)

modules = {
    name: {"file": getattr(m, "__file__", None), "cached": getattr(m, "__cached__", None)}
    for name, m in list(sys.modules.items())
}
print(json.dumps({
    "app": names,
    "modules": modules,
    "compiled": [c for c in compiled if isinstance(c, str) and c.endswith(".py")],
    "dont_write_bytecode": sys.dont_write_bytecode,
    "stdlib": [os.path.realpath(sys.base_prefix)],
}))
"""


def run_in_package(root: Path, code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter that sees only the unzipped package at ``root`` and the standard
    library (-S: no site-packages of this environment), bytecode writing off, as Flex runs it."""
    return subprocess.run(
        [sys.executable, "-S", "-s", "-c", code],
        cwd=root,
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": os.pathsep.join([str(root), str(root / SITE)]),
            **SETTINGS,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def tree(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*")}


def test_every_module_imports_from_the_read_only_package_using_its_bytecode(package: Path, tmp_path: Path) -> None:
    root = tmp_path / "wwwroot"
    with zipfile.ZipFile(package) as archive:
        archive.extractall(root)
    for path in [root, *root.rglob("*")]:  # the way Flex mounts it: nothing can be written
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = tree(root)
    try:
        result = run_in_package(root, _IMPORT_EVERYTHING)
        assert result.returncode == 0, result.stderr[-3000:]
        report: dict[str, Any] = json.loads(result.stdout)
        assert tree(root) == before, "the import wrote into the package"
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)

    assert report["dont_write_bytecode"] is True
    assert report["compiled"] == [], "compiled from source at start-up (no usable .pyc)"
    expected_app = {"function_app"} | {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for package in ("functions", "shared")
        for p in (ROOT / package).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert set(report["app"]) == expected_app
    stdlib = report["stdlib"][0]
    for name, module in report["modules"].items():
        file = module["file"]
        if file is None or os.path.realpath(file).startswith(stdlib + os.sep):
            continue  # built-in, namespace package, or the standard library
        assert Path(file).is_relative_to(root), f"{name} was imported from outside the package: {file}"
        if file.endswith(".py"):
            cached = Path(module["cached"])
            assert cached.is_relative_to(root) and cached.is_file(), f"{name}: no bytecode at {cached}"
    for name in expected_app:
        assert Path(report["modules"][name]["file"]).is_relative_to(root), name


def test_a_build_for_another_python_than_azure_runs_is_refused(tmp_path: Path) -> None:
    output = tmp_path / "function-app.zip"
    result = build(output, PYTHON_VERSION="3.12")
    assert result.returncode == 1
    assert "the function app runs Python 3.12 (PYTHON_VERSION), but this build runs Python 3.11" in result.stderr
    assert not output.exists()


def test_the_package_targets_the_python_the_bicep_deploys() -> None:
    bicep = (ROOT / "infra" / "bicep" / "main.bicep").read_text(encoding="utf-8")
    [default] = re.findall(r"^param pythonVersion string = '([\d.]+)'$", bicep, re.M)
    assert runtime_python({}) == default  # what azd passes when PYTHON_VERSION is not set
    assert runtime_python({"PYTHON_VERSION": "3.12"}) == "3.12"
    assert runtime_python({"PYTHON_VERSION": "3.11.7"}) == "3.11"  # as the python Docker images set it
    with pytest.raises(PackageError, match="is not a Python version"):
        runtime_python({"PYTHON_VERSION": "latest"})


_START_UP = """
import dataclasses, json, sys
import function_app
from shared import app
loaded = app.current().routing
validator = sorted(m for m in ("pydantic", "yaml", "shared.core.config", "shared.core.yaml_source") if m in sys.modules)
from shared.core import config
with open("routing.yaml", encoding="utf-8") as fh:
    fresh = config.parse(fh.read(), source=loaded.source)
def plain(v):  # comparable: sets sorted (their order follows hashing), dataclasses with their type
    if dataclasses.is_dataclass(v):
        return (type(v).__name__, [plain(getattr(v, f.name)) for f in dataclasses.fields(v)])
    if isinstance(v, dict):
        return [[k, plain(x)] for k, x in v.items()]
    if isinstance(v, frozenset):
        return sorted(map(repr, v))
    if isinstance(v, (tuple, list)):
        return [plain(x) for x in v]
    return repr(v)
print(json.dumps({"validator_at_start": validator, "same_table": plain(loaded) == plain(fresh)}))
"""


def test_start_up_from_the_package_uses_the_prebuilt_table_without_loading_the_validator(
    package: Path, tmp_path: Path
) -> None:
    # The cold start's largest saving (BENCHMARKS.md, "Cold first answer"): routing.yaml's table is
    # built by make package, so the worker imports neither pydantic nor the YAML parser before the
    # first call is answered; the table is the one the validator builds from the same file.
    root = tmp_path / "wwwroot"
    with zipfile.ZipFile(package) as archive:
        archive.extractall(root)
    result = run_in_package(root, _START_UP)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout) == {"validator_at_start": [], "same_table": True}


def test_an_invalid_routing_yaml_is_never_packaged(tmp_path: Path) -> None:
    from local.package import prebuild_routing

    text = (ROOT / "routing.yaml").read_text(encoding="utf-8")
    (tmp_path / "routing.yaml").write_text(text.replace("fallback_queue: agents", "fallback_queue: gone", 1))
    with pytest.raises(
        PackageError, match=r"(?s)routing\.yaml is invalid, so it is not packaged:\n.*\n  routing\.yaml:\d+: workstream"
    ):
        prebuild_routing(tmp_path)
    assert not (tmp_path / "routing.yaml.prebuilt").exists()
