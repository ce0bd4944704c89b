"""Build dist/function-app.zip: exactly what a deployment ships, ready to run from a read-only mount.

    make package            (python -m local.package [--output PATH])

The package holds:

- the project's files that `.funcignore` keeps (gitignore syntax, local/funcignore.py);
- the runtime dependencies of requirements.txt, as Linux x86-64 wheels for the Python version the
  function app runs (PYTHON_VERSION, as azd passes it to the Bicep; default in
  infra/bicep/main.parameters.json), in `.python_packages/lib/site-packages`, where the Functions
  Python worker looks for them (https://learn.microsoft.com/azure/azure-functions/python-build-options);
- bytecode for every ``.py`` file, compiled with ``--invalidation-mode unchecked-hash``;
- ``routing.yaml.prebuilt``: routing.yaml validated and compiled here (an invalid routing.yaml stops
  the build with its report), so a cold start loads the table without importing pydantic or the
  YAML parser. The app uses it only while its hash matches routing.yaml's bytes
  (shared/adapters/settings.py, ``load_routing``).

Why the bytecode: Flex Consumption apps run from their package, mounted read-only as wwwroot
(https://learn.microsoft.com/azure/azure-functions/run-functions-from-deployment-package), so
Python can never write ``__pycache__`` there and compiles every module without a usable ``.pyc``
again on every cold start. Timestamp-based ``.pyc`` files are checked against the source's modification time, which a
zip stores with two-second resolution and no time zone, so after the round trip many no longer
match; unchecked-hash ``.pyc`` files are used as they are (PEP 552). They stay correct because the
package is built in one go and never edited in place.

The zip is reproducible: entries sorted, one fixed timestamp, permissions reduced to 644/755, and
bytecode that records paths relative to the package root. Two builds from the same tree and the
same resolved dependencies are byte-identical. Development only: local/ is not deployed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from local.funcignore import FuncIgnore
from shared.adapters import settings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "dist" / "function-app.zip"
#: Where the Python worker adds dependencies to sys.path in a deployed function app.
SITE_PACKAGES = ".python_packages/lib/site-packages"
#: The routing file the app reads by default (HANDOFF_CONFIG): the one make package prebuilds.
ROUTING_FILE = "routing.yaml"
#: Flex Consumption runs Linux x86-64; manylinux2014 (glibc 2.17) wheels load on any newer glibc.
PLATFORM = "manylinux2014_x86_64"
#: The earliest timestamp a zip entry can carry: any fixed value makes builds reproducible.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
_PARAMETER_DEFAULT = re.compile(r"\$\{PYTHON_VERSION=(\d+\.\d+)\}")
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.\d+)?")


_PREBUILD = """
import sys
from shared.adapters import settings
from shared.core.routing_table import ConfigError
try:
    sys.stdout.buffer.write(settings.prebuild_routing(sys.argv[1], source=sys.argv[2]))
except ConfigError as exc:
    sys.exit(str(exc))
"""


class PackageError(Exception):
    """The package cannot be built as asked; the message says why and what to do."""


def runtime_python(env: Mapping[str, str], root: Path = ROOT) -> str:
    """The Python version the function app runs: azd's PYTHON_VERSION, else the Bicep parameter's default.

    Only major.minor matters (bytecode and wheel tags); a patch level, as the python Docker images
    put in PYTHON_VERSION, is dropped.
    """
    if value := env.get("PYTHON_VERSION", "").strip():
        found = _VERSION.fullmatch(value)
        if found is None:
            raise PackageError(f"PYTHON_VERSION={value!r} is not a Python version such as 3.11")
        return f"{found.group(1)}.{found.group(2)}"
    parameters = (root / "infra" / "bicep" / "main.parameters.json").read_text(encoding="utf-8")
    found = _PARAMETER_DEFAULT.search(parameters)
    if found is None:
        raise PackageError("infra/bicep/main.parameters.json: no ${PYTHON_VERSION=x.y} default for pythonVersion")
    return found.group(1)


def check_interpreter(version: str) -> None:
    """Bytecode and binary wheels are per minor version: build with the version Azure runs."""
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running != version:
        raise PackageError(
            f"the function app runs Python {version} (PYTHON_VERSION), but this build runs Python {running}: "
            f"its .pyc files would be ignored there. Build with Python {version}, for example "
            f"`make clean && make package PYTHON=python{version}`."
        )


def project_files(root: Path, output: Path) -> list[str]:
    """The project's files that .funcignore keeps; the output must not be one of them."""
    ignore = FuncIgnore.read(root)
    target, base = output.resolve(), root.resolve()
    if target.is_relative_to(base) and not ignore.excludes(target.relative_to(base).as_posix()):
        raise PackageError(f"{target.relative_to(base)} would end up in the package: add its folder to .funcignore")
    return list(ignore.walk(root))


def prebuild_routing(stage: Path) -> None:
    """routing.yaml's prebuilt table, beside it. Another routing file named by HANDOFF_CONFIG is
    validated at start-up instead (correct, only slower to the first answer).

    Built in a child interpreter with a fixed PYTHONHASHSEED: a pickled set lists its items in
    hash order, which otherwise changes from one process to the next, and the package must come
    out byte-identical from the same tree."""
    source = stage / ROUTING_FILE
    if not source.is_file():
        return
    result = subprocess.run(
        [sys.executable, "-c", _PREBUILD, str(source), ROUTING_FILE],
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        report = result.stderr.decode("utf-8", "replace").strip()
        raise PackageError(f"{ROUTING_FILE} is invalid, so it is not packaged:\n{report}")
    (stage / (ROUTING_FILE + settings.PREBUILT_SUFFIX)).write_bytes(result.stdout)


def install_dependencies(root: Path, stage: Path, version: str) -> None:
    """requirements.txt as wheels for the Azure runtime, whatever machine builds the package."""
    target = stage / SITE_PACKAGES
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",  # compiled below, with unchecked hashes
        "--only-binary=:all:",  # nothing is built here for another platform
        "--platform",
        PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        version,
        "--abi",
        "cp" + version.replace(".", ""),
        "--target",
        str(target),
        "--requirement",
        str(root / "requirements.txt"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PackageError(f"pip could not install requirements.txt for {PLATFORM}:\n{result.stderr.strip()}")
    # Console scripts: not needed by the app, and their first line names this machine's interpreter.
    shutil.rmtree(target / "bin", ignore_errors=True)


def compile_tree(stage: Path) -> int:
    """Unchecked-hash bytecode next to every .py file, recording the path relative to the package."""
    sources = sorted(stage.rglob("*.py"))
    for source in sources:
        py_compile.compile(
            str(source),
            cfile=importlib.util.cache_from_source(str(source)),
            dfile=source.relative_to(stage).as_posix(),
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
    return len(sources)


def write_zip(stage: Path, output: Path) -> list[str]:
    names = sorted(path.relative_to(stage).as_posix() for path in stage.rglob("*") if path.is_file())
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in names:
            path = stage / name
            info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the permissions below are honoured when extracted
            mode = 0o755 if os.stat(path).st_mode & 0o111 else 0o644
            info.external_attr = (0o100000 | mode) << 16
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    partial.replace(output)
    return names


def build(output: Path = DEFAULT_OUTPUT, root: Path = ROOT, env: Mapping[str, str] | None = None) -> list[str]:
    """Build the package at ``output`` and return its entries."""
    version = runtime_python(os.environ if env is None else env, root)
    check_interpreter(version)
    files = project_files(root, output)
    with tempfile.TemporaryDirectory(prefix="handoff-package-") as tmp:
        stage = Path(tmp)
        for name in files:
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, stage / name)
        prebuild_routing(stage)
        install_dependencies(root, stage, version)
        compile_tree(stage)
        return write_zip(stage, output)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="default: dist/function-app.zip")
    args = parser.parse_args(argv)
    try:
        names = build(args.output)
    except PackageError as exc:
        print(f"make package: {exc}", file=sys.stderr)
        return 1
    dependencies = sum(1 for name in names if name.startswith(SITE_PACKAGES + "/"))
    shown = args.output.resolve()
    shown_text = str(shown.relative_to(ROOT)) if shown.is_relative_to(ROOT) else str(shown)
    print(
        f"{shown_text}: {len(names)} files ({len(names) - dependencies} of the app, {dependencies} of its "
        f"dependencies for Python {sys.version_info.major}.{sys.version_info.minor} on {PLATFORM}), "
        f"{shown.stat().st_size / 1e6:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
