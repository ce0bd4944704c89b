from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from local import loopback

# Every test talks to loopback only, whatever proxy the shell running them names (local/loopback.py).
loopback.direct()

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
EXAMPLES = ROOT / "examples"


#: The example routing whose workstream falls back to a queue that transfers too (overflow), so a
#: failed transfer has a fallback transfer to try.
ROUTING_WITH_TRANSFER_FALLBACK = (
    (EXAMPLES / "routing.example.yaml")
    .read_text(encoding="utf-8")
    .replace(
        "  closed:\n",
        '  overflow:\n    action: transfer\n    target: "+14255550188"\n    uui_format: plain\n  closed:\n',
    )
    .replace("fallback_queue: agents", "fallback_queue: overflow")
)


#: A workstream behind an Avaya trunk in shared UUI mode: the UCID routes, the ASAI user data (item
#: C8) is named UserData, and a queue forwards both on in the same format.
AVAYA_NUMBER = "+14255550130"
ROUTING_AVAYA = f"""
queues:
  avaya-agents: {{action: transfer, target: "+14255550140", uui_format: avaya-shared}}
  agents: {{action: answer, callback_url: "https://agents.example.com/api/callbacks"}}
  review: {{action: answer, callback_url: "https://review.example.com/api/callbacks"}}
workstreams:
  - name: avaya-ivr
    numbers: ["{AVAYA_NUMBER}"]
    uui: {{profile: avaya-shared, items: {{c8: UserData}}}}
    context_variables:
      - {{name: UCID, type: text}}
      - {{name: UserData, type: text, sensitive: true}}
      - {{name: Intent, type: text}}
    rules:
      - {{name: tracked-call, when: {{UCID: {{exists: true}}}}, queue: avaya-agents}}
    fallback_queue: agents
    invalid_context_queue: review
"""


#: Settings with which function_app starts on routing.yaml, pointing nowhere (127.0.0.1:9, the
#: discard port: nothing is contacted). routing.yaml has a transfer queue, so its callbacks need a
#: resource id and a context key (shared/adapters/settings.py, check_for_routing).
START_SETTINGS = {
    "ACS_ENDPOINT": "http://127.0.0.1:9",
    "ACS_ACCESS_KEY": "a2V5",
    "HANDOFF_CALLBACK_URL": "https://x.example/api/callbacks",
    "ACS_RESOURCE_ID": "00000000-0000-0000-0000-000000000000",
    "HANDOFF_CONTEXT_KEY": "0123456789abcdef0123456789abcdef-test-only",
}


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def example_routing():  # type: ignore[no-untyped-def]
    from shared.adapters.settings import load_routing

    return load_routing(str(EXAMPLES / "routing.example.yaml"))


@pytest.fixture(scope="session")
def app_routing():  # type: ignore[no-untyped-def]
    from shared.adapters.settings import load_routing

    return load_routing(str(ROOT / "routing.yaml"))


@pytest.fixture(scope="session")
def stack_session():  # type: ignore[no-untyped-def]
    from local.stack import running_stack

    with running_stack() as stack:
        yield stack


@pytest.fixture(scope="session")
def azurite():  # type: ignore[no-untyped-def]
    """One Azurite (Table Storage emulator) for the session, on loopback, in memory; each test that
    writes records uses a table of its own."""
    from local.azurite import Azurite

    with Azurite() as running:
        yield running


@pytest.fixture
def stack(stack_session):  # type: ignore[no-untyped-def]
    """The running local stack with a fresh app and a clean emulator record."""
    stack_session.restart()
    yield stack_session
    stack_session.restart()


def run_python(args: list[str], settings: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter at the repository root, with none of the app's settings inherited from
    this process (so a developer's or CI's environment cannot change the outcome) plus ``settings``."""
    from shared.adapters.settings import SETTINGS

    names = {s.name for s in SETTINGS}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**env, **(settings or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
