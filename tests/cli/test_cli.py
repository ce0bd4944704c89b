"""The handoff command, as an integrator uses it before go-live."""

from __future__ import annotations

import importlib.metadata
import io
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from shared import cli
from shared.core import uui
from tests.conftest import DATA, EXAMPLES, ROOT, load_json

VECTORS = load_json(DATA / "uui-public.json")
REQUIRED_DECODE_KEYS = {"ok", "encoding", "params", "pd", "text", "pairs", "positional", "warnings", "error"}


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_decode_json_prints_exactly_one_object_matching_the_vector(vector: dict) -> None:
    code, out, _ = run("decode", vector["header_value"], "--json")
    result = json.loads(out)  # exactly one JSON document, or this raises
    expected = vector["expected"]
    assert set(result) == REQUIRED_DECODE_KEYS
    assert code == (0 if expected["ok"] else 1)
    assert result["ok"] is expected["ok"]
    assert result["encoding"] == expected["encoding"]
    assert result["pd"] == expected["pd"]
    assert result["pairs"] == expected["pairs"]
    assert result["positional"] == expected["positional"]
    assert (result["error"] or {}).get("kind") == expected["error_kind"]


def test_decode_without_json_lists_the_positional_values() -> None:
    code, out, _ = run("decode", "3530303131323233333434353b363738393b3132;pd=4")
    assert code == 0
    assert "encoding: hex" in out and "protocol discriminator: 4" in out
    assert "[1] 500112233445" in out and "[3] 12" in out


def test_decode_of_a_bad_value_says_why_and_exits_1() -> None:
    code, out, _ = run("decode", "7369706G;encoding=hex")
    assert code == 1 and out.startswith("cannot decode (non_hex_characters):")


def test_version_is_the_installed_distributions() -> None:
    assert run("--version") == (0, f"handoff {importlib.metadata.version('handoff')}\n", "")


def test_version_from_a_checkout_that_is_not_installed_is_pyprojects(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert run("--version") == (0, f"handoff {declared}\n", "")


def test_usage_errors_exit_2() -> None:
    assert run("decode")[0] == 2
    assert run("nonsense")[0] == 2
    assert run("encode", "--format", "hex", "a=1", "positional")[0] == 2


@pytest.mark.parametrize("fmt", ["plain", "hex", "pd4"])
def test_encode_then_decode_gives_the_pairs_back(fmt: str) -> None:
    code, out, _ = run("encode", "--format", fmt, "Intent=billing", "Priority=7")
    assert code == 0
    decoded = uui.decode(out.strip())
    assert decoded.pairs == {"Intent": "billing", "Priority": "7"}


def test_encode_positional_values_as_pd4_gives_the_product_doc_example() -> None:
    code, out, _ = run("encode", "--format", "pd4", "500112233445", "6789", "12")
    assert code == 0
    assert out.strip().lower() == "3530303131323233333434353b363738393b3132;pd=4"


def test_encode_refuses_what_acs_would_refuse_with_exit_1() -> None:
    code, out, err = run("encode", "--format", "hex", "Note=" + "x" * 200)
    assert code == 1 and out == "" and "256" in err


def test_route_json_has_the_documented_fields_and_masks_sensitive_values() -> None:
    event = EXAMPLES / "calls" / "pd4-after-hours.json"
    code, out, _ = run("route", "--config", str(EXAMPLES / "routing.example.yaml"), str(event), "--json")
    view = json.loads(out)
    assert code == 0
    assert set(view) == {
        "event_id",
        "correlation_id",
        "called",
        "workstream",
        "uui",
        "context",
        "queue",
        "action",
        "target",
        "rule",
        "warnings",
        "errors",
    }
    assert (view["queue"], view["action"], view["rule"]) == ("closed", "reject", "after-hours-line")
    assert view["context"] == {"AccountNumber": "***", "Pin": "***", "LanguageCode": "99"}  # as received
    assert "500112233445" not in out and "6789" not in out
    assert view["uui"]["positional"] == ["***", "***", "99"]
    assert view["uui"]["text"] == "*** (20 characters)"


def test_route_reveal_shows_sensitive_values() -> None:
    event = EXAMPLES / "calls" / "pd4-after-hours.json"
    _, out, _ = run("route", "--config", str(ROOT / "routing.yaml"), str(event), "--json", "--reveal")
    assert json.loads(out)["context"]["AccountNumber"] == "500112233445"


def test_route_of_an_array_prints_one_object_per_event(tmp_path: Path) -> None:
    events = [load_json(EXAMPLES / "calls" / f)[0] for f in ("plain-uui.json", "x-ms-custom-vip.json")]
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(events))
    code, out, _ = run("route", "--config", str(ROOT / "routing.yaml"), str(path), "--json")
    assert code == 0 and [v["queue"] for v in json.loads(out)] == ["agents", "vip"]


def test_route_of_the_public_sample_shows_the_decode_error() -> None:
    code, out, _ = run(
        "route", "--config", str(ROOT / "routing.yaml"), str(DATA / "incoming-call.eventgrid-schema.json")
    )
    assert code == 0
    assert "rule unknown-number, queue agents, answer https://agents.example.com/api/callbacks" in out


def test_route_of_an_unreadable_event_exits_1_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"id": "x", "eventType": "Microsoft.Communication.IncomingCall", "data": {}}))
    code, _, err = run("route", "--config", str(ROOT / "routing.yaml"), str(path))
    assert code == 1 and "incomingCallContext" in err


def test_check_config_prints_a_summary_or_every_problem(tmp_path: Path) -> None:
    code, out, _ = run("check-config", str(EXAMPLES / "routing.example.yaml"))
    assert code == 0 and "workstream retail-ivr" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (EXAMPLES / "routing.example.yaml")
        .read_text()
        .replace("queue: vip", "queue: nope")
        .replace("fallback_queue: agents", "fallback_queue: gone")
    )
    code, _, err = run("check-config", str(bad))
    assert code == 1
    assert f"{bad}: workstreams[0].rules[0].queue: unknown queue 'nope'" in err
    assert f"{bad}: workstreams[0].fallback_queue: unknown queue 'gone'" in err


def test_the_installed_console_script_runs() -> None:
    script = Path(sys.executable).parent / "handoff"
    result = subprocess.run(
        [str(script), "decode", "sipkey1=sipval1", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and json.loads(result.stdout)["pairs"] == {"sipkey1": "sipval1"}
