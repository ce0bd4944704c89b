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
from tests.conftest import AVAYA_NUMBER, DATA, EXAMPLES, ROOT, ROUTING_AVAYA, load_json

VECTORS = load_json(DATA / "uui-public.json")
REQUIRED_DECODE_KEYS = {"ok", "encoding", "params", "pd", "text", "pairs", "positional", "items", "warnings", "error"}


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


@pytest.mark.parametrize("fmt", ["plain", "hex"])  # pd4 takes positional values only (test_decode_paste.py)
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


def event_file(tmp_path: Path, to: str, uui_value: str) -> Path:
    [event] = load_json(EXAMPLES / "calls" / "plain-uui.json")
    event["data"]["to"] = {"kind": "phoneNumber", "rawId": f"4:{to}", "phoneNumber": {"value": to}}
    event["data"]["customContext"] = {"sipHeaders": {"User-To-User": uui_value}}
    path = tmp_path / "event.json"
    path.write_text(json.dumps([event]))
    return path


@pytest.mark.parametrize(
    ("to", "uui_value", "secrets"),
    [
        # A number no workstream owns: which values are sensitive cannot be known from a workstream.
        ("+14255550199", "AccountNumber=500112233445;Pin=4711;Intent=billing", ["500112233445", "4711"]),
        ("+14255550199", "3530303131323233333434353b343731313b3132;pd=4", ["500112233445", "4711"]),
        # Keys that differ from the sensitive variables' names only in case.
        ("+14255550100", "accountnumber=500112233445;PIN=4711;Intent=billing", ["500112233445", "4711"]),
    ],
    ids=["unknown-number-pairs", "unknown-number-positional", "case-variant-keys"],
)
def test_route_json_masks_every_sensitive_value_even_when_no_workstream_names_it(
    tmp_path: Path, to: str, uui_value: str, secrets: list[str]
) -> None:
    code, out, _ = run(
        "route", "--config", str(ROOT / "routing.yaml"), str(event_file(tmp_path, to, uui_value)), "--json"
    )
    assert code == 0
    for secret in secrets:
        assert secret not in out
    _, revealed, _ = run(
        "route", "--config", str(ROOT / "routing.yaml"), str(event_file(tmp_path, to, uui_value)), "--json", "--reveal"
    )
    assert all(secret in revealed for secret in secrets)


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
    assert f"{bad}:38: workstream 'retail-ivr', rule 'vip-callers': queue 'nope' is not a queue" in err
    assert f"{bad}:45: workstream 'retail-ivr': fallback_queue 'gone' is not a queue" in err


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


# --- Avaya shared UUI ----------------------------------------------------------------------------

AVAYA_VECTORS = load_json(DATA / "uui-avaya-shared.json")


@pytest.mark.parametrize("vector", AVAYA_VECTORS, ids=[v["id"] for v in AVAYA_VECTORS])
def test_decode_profile_avaya_shared_json_matches_the_vector(vector: dict) -> None:
    items = [f"--item={ident}={name}" for ident, name in vector.get("item_names", {}).items()]
    code, out, _ = run("decode", vector["header_value"], "--profile", vector["profile"], *items, "--json")
    result = json.loads(out)
    expected = vector["expected"]
    assert set(result) == REQUIRED_DECODE_KEYS
    assert code == (0 if expected["ok"] else 1)
    assert (result["pairs"], result["items"]) == (expected["pairs"], expected["items"])
    assert (result["error"] or {}).get("kind") == expected["error_kind"]


def test_decode_without_json_lists_each_item_with_its_id_length_and_variable() -> None:
    value = "00FA080019001038F725B3C807414343543D3432;encoding=hex"
    code, out, _ = run("decode", value, "--profile", "avaya-shared", "--item", "C8=UserData")
    assert code == 0
    assert "Avaya shared UUI: 2 item(s)" in out
    assert "  FA (8 bytes) UCID = 00025000160955721139\n" in out
    assert "  C8 (7 bytes) UserData = ACCT=42\n" in out


def test_encode_avaya_shared_builds_the_issue_example_byte_for_byte() -> None:
    # ItemC8=ACCT=42 splits at the first "=": the item C8 holds ACCT=42.
    code, out, _ = run("encode", "--format", "avaya-shared", "UCID=00021000050946085673", "ItemC8=ACCT=42")
    assert code == 0
    # 00, FA 08 and the trgtech UCID (node 21, sequence 5, 946085673 in big-endian), C8 07 "ACCT=42".
    assert out == "00" + "FA08" + "0015" + "0005" + "38641F29" + "C807" + "414343543D3432" + ";encoding=hex\n"


def test_encode_avaya_shared_sends_a_named_item_under_its_id() -> None:
    code, out, _ = run("encode", "--format", "avaya-shared", "--item", "c8=UserData", "UserData=ACCT=42")
    assert (code, out) == (0, "00C807414343543D3432;encoding=hex\n")


def test_encode_avaya_shared_refuses_a_variable_that_is_no_item_with_exit_1() -> None:
    code, out, err = run("encode", "--format", "avaya-shared", "Intent=billing")
    assert code == 1 and out == "" and "'Intent' is not an item of avaya-shared" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("decode", "00FA08;encoding=hex", "--item", "C8=UserData"), "--item names the items of --profile"),
        (("decode", "x", "--profile", "avaya-shared", "--item", "C8"), "--item takes ID=NAME"),
        (("decode", "x", "--profile", "avaya-shared", "--item", "FA=CallId"), "item FA is the UCID"),
        (("encode", "--item", "C8=UserData", "UserData=1"), "--item names the items of --format"),
    ],
)
def test_item_and_profile_mistakes_are_usage_errors(argv: tuple[str, ...], message: str) -> None:
    code, _, err = run(*argv)
    assert code == 2 and message in err


def test_an_unknown_profile_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("decode", "x", "--profile", "genesys")[0] == 2
    assert "invalid choice: 'genesys'" in capsys.readouterr().err  # argparse writes to sys.stderr


def test_route_json_shows_the_items_and_masks_a_sensitive_named_item(tmp_path: Path) -> None:
    config = tmp_path / "routing.yaml"
    config.write_text(ROUTING_AVAYA)
    event = load_json(DATA / "incoming-call.eventgrid-schema.json")
    event["data"]["to"] = {"kind": "phoneNumber", "rawId": f"4:{AVAYA_NUMBER}", "phoneNumber": {"value": AVAYA_NUMBER}}
    event["data"]["customContext"] = {
        "sipHeaders": {"User-To-User": "00FA080019001038F725B3C807414343543D3432;encoding=hex"}
    }
    path = tmp_path / "call.json"
    path.write_text(json.dumps(event))
    code, out, _ = run("route", "--config", str(config), str(path), "--json")
    view = json.loads(out)
    assert (code, view["queue"], view["rule"]) == (0, "avaya-agents", "tracked-call")
    assert view["context"] == {"UCID": "00025000160955721139", "UserData": "***"}
    assert view["uui"]["items"] == [
        {"id": "FA", "name": "UCID", "length": 8, "value": "00025000160955721139"},
        {"id": "C8", "name": "UserData", "length": 7, "value": "***"},
    ]
    assert "ACCT=42" not in out and "414343543D3432" not in out
