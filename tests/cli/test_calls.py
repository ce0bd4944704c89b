"""``handoff calls show`` and ``handoff calls list``, reading the records real calls left in Azurite."""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import sys
from typing import Any

import pytest

from local.azurite import Azurite, connection_string, free_port
from local.stack import Stack
from shared import app, cli
from tests.app.test_call_records import ACCOUNT, transfer_call
from tests.conftest import ROOT


def run(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, out=out, err=err, env=env)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def handled(stack: Stack, azurite: Azurite) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Two real calls handled with a store: a transfer (billing) and a redirect (vip)."""
    table = "t" + secrets.token_hex(6)
    stack.restart(HANDOFF_STORE=azurite.connection_string, HANDOFF_STORE_TABLE=table)
    transfer = transfer_call(stack)
    redirect = stack.call(sip={"X-MS-Custom-IsVip": "true", "X-MS-Custom-Intent": "support"})
    assert stack.post([transfer, redirect])[0] == 202
    writer = app.current().records
    assert writer is not None and writer.flush(10) and writer.written == 2
    env = {
        "HANDOFF_STORE": azurite.connection_string,
        "HANDOFF_STORE_TABLE": table,
        "HANDOFF_CONTEXT_KEY": stack.env["HANDOFF_CONTEXT_KEY"],
    }
    return env, [transfer, redirect]


def test_calls_show_json_prints_the_record_with_sensitive_values_masked(handled: Any) -> None:
    env, (transfer, _) = handled
    code, out, err = run(["calls", "show", transfer["data"]["correlationId"], "--json"], env)
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "correlation_id": transfer["data"]["correlationId"],
        "called": "+14255550100",
        "caller": transfer["data"]["from"]["phoneNumber"]["value"],
        "workstream": "retail-ivr",
        "queue": "billing",
        "rule": "billing-priority",
        "action": "transfer",
        "target": "+14255550123",
        "outcome": "done",
        "context": {"Intent": "billing", "Priority": "007", "AccountNumber": "***", "IsVip": "false"},
    }
    assert ACCOUNT not in out


def test_calls_show_reveal_opens_sensitive_values_with_the_context_key_only(handled: Any) -> None:
    env, (transfer, _) = handled
    correlation_id = transfer["data"]["correlationId"]
    code, out, _ = run(["calls", "show", correlation_id, "--json", "--reveal"], env)
    assert code == 0 and json.loads(out)["context"]["AccountNumber"] == ACCOUNT
    without_key = {k: v for k, v in env.items() if k != "HANDOFF_CONTEXT_KEY"}
    code, out, err = run(["calls", "show", correlation_id, "--reveal"], without_key)
    assert code == 2 and out == "" and "--reveal needs HANDOFF_CONTEXT_KEY" in err
    code, out, _ = run(
        ["calls", "show", correlation_id, "--json", "--reveal"], {**env, "HANDOFF_CONTEXT_KEY": "k" * 40}
    )
    assert code == 0 and json.loads(out)["context"]["AccountNumber"] is None  # another key opens nothing


def test_calls_show_in_text_names_the_route_the_flow_and_the_masked_context(handled: Any) -> None:
    env, (transfer, _) = handled
    code, out, _ = run(["calls", "show", transfer["data"]["correlationId"]], env)
    assert code == 0
    assert "workstream retail-ivr, rule billing-priority, queue billing" in out
    assert "transfer +14255550123 → done" in out
    assert "context: Intent=billing, Priority=007, AccountNumber=***, IsVip=false" in out
    assert ACCOUNT not in out


def test_calls_list_shows_the_recent_calls_and_filters_by_queue(handled: Any) -> None:
    env, (transfer, redirect) = handled
    code, out, _ = run(["calls", "list", "--json"], env)
    assert code == 0
    listed = json.loads(out)
    assert {c["correlation_id"] for c in listed} == {
        transfer["data"]["correlationId"],
        redirect["data"]["correlationId"],
    }
    assert ACCOUNT not in out
    code, out, _ = run(["calls", "list", "--queue", "vip", "--json"], env)
    assert [c["queue"] for c in json.loads(out)] == ["vip"]
    code, out, _ = run(["calls", "list", "--queue", "vip"], env)
    assert code == 0 and redirect["data"]["correlationId"] in out and "queue vip  redirect done" in out


def test_an_unknown_call_is_exit_1_and_a_missing_store_exit_2(handled: Any) -> None:
    env, _ = handled
    assert run(["calls", "show", "00000000-0000-0000-0000-000000000000"], env)[0] == 1
    code, _, err = run(["calls", "list"], {})
    assert code == 2 and "set HANDOFF_STORE" in err


def test_an_unreachable_store_is_exit_1_with_the_reason_and_no_secret(handled: Any) -> None:
    env, _ = handled
    nobody = connection_string(free_port())  # a loopback port nothing listens on
    code, _out, err = run(["calls", "list"], {**env, "HANDOFF_STORE": nobody})
    assert code == 1 and "the store cannot be reached" in err
    assert "AccountKey" not in err and "Eby8" not in err


@pytest.mark.parametrize("since", ["15", "0m", "1w", "-5m"])
def test_a_window_that_is_not_a_duration_is_a_usage_error(since: str) -> None:
    assert run(["calls", "list", "--since", since], {"HANDOFF_STORE": "x=y"})[0] == 2


def test_the_installed_command_runs_calls(handled: Any) -> None:
    env, (transfer, _) = handled
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "calls", "show", transfer["data"]["correlationId"], "--json"],
        cwd=ROOT,
        env={"PATH": "", "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["queue"] == "billing"
