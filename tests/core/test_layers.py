"""The import contract: imports point one way, and the core stays pure.

function_app → functions/ → shared/app.py → shared/adapters/ → shared/core/. The core imports no
adapter, no Azure SDK, no network library and nothing that reads the environment or files, so it
is fast to test and easy to reason about; the Call Automation adapter and telemetry do not know
each other (the composition root hands telemetry's policy to the client).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

CORE = ROOT / "shared" / "core"
ADAPTERS = ROOT / "shared" / "adapters"

#: What the core may import besides itself: the standard library's pure parts, the libraries that
#: read and validate the routing configuration (pydantic, yaml, re2 for linear-time patterns), and
#: cryptography's AES-GCM (sealing.py).
CORE_MAY_IMPORT = frozenset(
    {
        "__future__",
        "base64",
        "collections",
        "copy",
        "cryptography",
        "dataclasses",
        "datetime",
        "decimal",
        "enum",
        "hashlib",
        "hmac",
        "json",
        "math",
        "re",
        "secrets",
        "string",
        "typing",
        "urllib.parse",
        "pydantic",
        "re2",
        "yaml",
    }
)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from shared.adapters import telemetry" imports shared.adapters.telemetry too.
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def allowed_in_core(module: str) -> bool:
    if module == "shared.core" or module.startswith("shared.core."):
        return True
    return any(module == ok or module.startswith(ok + ".") for ok in CORE_MAY_IMPORT)


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_the_core_imports_only_itself_pure_stdlib_pydantic_and_yaml(path: Path) -> None:
    assert not sorted(m for m in imports_of(path) if not allowed_in_core(m))


def test_the_core_reads_no_environment_and_opens_no_file() -> None:
    io = re.compile(r"\bopen\(|\.environ\b|\bgetenv\(|\.read_(text|bytes)\(|\burlopen\(")
    for path in CORE.glob("*.py"):
        found = io.search(path.read_text(encoding="utf-8"))
        assert found is None, f"{path.name} uses {found.group() if found else ''}"


def test_importing_the_whole_core_loads_no_adapter_sdk_or_network_client() -> None:
    modules = [f"shared.core.{p.stem}" for p in sorted(CORE.glob("*.py")) if p.stem != "__init__"]
    script = (
        f"import sys\nimport {', '.join(modules)}\n"
        "bad = ('azure', 'shared.adapters', 'shared.app', 'http.client', 'urllib.request', 'requests',"
        " 'jwt', 'opentelemetry', 'functions')\n"
        "print(sorted(m for m in sys.modules if m.startswith(bad)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("path", sorted(ADAPTERS.rglob("*.py")), ids=lambda p: str(p.relative_to(ADAPTERS)))
def test_adapters_never_import_the_app_or_the_triggers(path: Path) -> None:
    assert not sorted(m for m in imports_of(path) if m.startswith(("shared.app", "functions", "function_app")))


def test_call_automation_and_telemetry_do_not_import_each_other() -> None:
    calls = imports_of(ADAPTERS / "call_automation.py")
    assert not [m for m in calls if m.startswith("shared.adapters.telemetry")]
    for path in (ADAPTERS / "telemetry").glob("*.py"):
        assert "shared.adapters.call_automation" not in imports_of(path), path.name


@pytest.mark.parametrize("path", sorted((ROOT / "functions").glob("*.py")), ids=lambda p: p.name)
def test_triggers_are_thin_they_hand_typed_input_to_the_app(path: Path) -> None:
    ours = {m for m in imports_of(path) if m.startswith(("shared", "functions", "local"))}
    assert all(m == "shared" or m.startswith(("shared.app", "shared.core.events")) for m in ours), ours
