"""The store failing: stopped, slow (2 s per request) or refusing (403). Every call still gets its one
action on time, a transfer still happens (the flow falls back to this instance's own state), the
record is retried in the background within a bound and its loss is logged and counted, and lookups
answer 503. A real Azurite behind a fault-injecting proxy (local/fault_proxy.py); no mock."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from local.azurite import Azurite
from local.fault_proxy import FaultProxy
from local.stack import Stack
from shared import app
from tests.app.test_call_records import ACCOUNT, lookup, transfer_call

FAULTS = ["stopped", "slow", "forbidden"]


@pytest.fixture
def proxied(stack: Stack, azurite: Azurite) -> Iterator[tuple[Stack, FaultProxy]]:
    with FaultProxy(azurite.port, slow_seconds=2.0) as proxy:
        stack.restart(HANDOFF_STORE=proxy.connection_string(), HANDOFF_STORE_TABLE="t" + secrets.token_hex(6))
        # The table exists before the fault, as it does in Azure (the Bicep creates it).
        writer = app.current().records
        assert writer is not None
        writer.store._client("bulk")
        yield stack, proxy
        proxy.mode = "pass"


def operations(stack: Stack, event: dict[str, Any]) -> list[str]:
    return [a.operation for a in stack.actions_for(event)]


@pytest.mark.parametrize("fault", FAULTS)
def test_every_call_still_gets_its_action_at_once_and_a_transfer_still_happens(
    proxied: tuple[Stack, FaultProxy], fault: str
) -> None:
    stack, proxy = proxied
    proxy.mode = fault  # type: ignore[assignment]
    redirect = stack.call(sip={"X-MS-Custom-IsVip": "true"})
    transfer = transfer_call(stack)
    started = time.monotonic()
    assert stack.post([redirect, transfer])[0] == 202
    # The host answers Event Grid once both calls got their action: the store is not on that path.
    assert time.monotonic() - started < 1.0
    assert operations(stack, redirect) == ["redirect"]
    # The transfer follows CallConnected; the flow waits at most 1 s per store request, then decides
    # with this instance's own state.
    assert stack.wait(lambda: operations(stack, transfer) == ["answer", "transfer"], timeout=6)


@pytest.mark.parametrize("fault", ["stopped", "forbidden"])
def test_a_record_the_store_never_takes_is_lost_after_its_retries_logged_and_counted(
    proxied: tuple[Stack, FaultProxy], fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    stack, proxy = proxied
    proxy.mode = fault  # type: ignore[assignment]
    writer = app.current().records
    assert writer is not None
    event = transfer_call(stack)
    with caplog.at_level("ERROR", logger="handoff"):
        assert stack.post([event])[0] == 202
        started = time.monotonic()
        # The transfer goes ahead on this instance's state; wait until its acceptance was handled too.
        accepted = "Microsoft.Communication.CallTransferAccepted"
        assert stack.wait(lambda: any(e["type"] == accepted for d in stack.emu.callbacks_sent for e in d.events), 10)
        assert writer.flush(20)
    assert time.monotonic() - started < 10  # retried within a bound, not forever
    assert (writer.written, writer.lost) == (0, 1)
    reason = "the store cannot be reached" if fault == "stopped" else "the store answered 403"
    # (Earlier tests' apps may still be retrying theirs: this call's line is the one that counts.)
    lines = [r.getMessage() for r in caplog.records if event["data"]["correlationId"] in r.getMessage()]
    [lost] = [line for line in lines if "its record" in line]
    assert "is lost" in lost and reason in lost
    # Its transfer was decided on this instance's state, and those steps could not be written either.
    flows = [line for line in lines if "transfer flow" in line]
    assert sorted(f.split("transfer flow (")[1].split(",")[0] for f in flows) == ["transferred", "transferring"]
    assert all("the sweep may take it for stranded" in f for f in flows) and writer.flows_lost == 2
    assert ACCOUNT not in caplog.text


def test_a_slow_store_delays_the_record_not_the_call_and_the_record_arrives(proxied: tuple[Stack, FaultProxy]) -> None:
    stack, proxy = proxied
    proxy.mode = "slow"
    writer = app.current().records
    assert writer is not None
    event = stack.call(sip={"X-MS-Custom-IsVip": "true"})
    assert stack.post([event])[0] == 202
    assert writer.flush(20)
    assert (writer.written, writer.lost) == (1, 0)
    proxy.mode = "pass"
    assert lookup(stack, event["data"]["correlationId"])[0] == 200


def test_a_record_is_written_once_the_store_comes_back_within_its_retries(proxied: tuple[Stack, FaultProxy]) -> None:
    stack, proxy = proxied
    proxy.mode = "stopped"
    writer = app.current().records
    assert writer is not None
    event = stack.call(sip={"X-MS-Custom-IsVip": "true"})
    assert stack.post([event])[0] == 202
    time.sleep(0.5)
    proxy.mode = "pass"
    assert writer.flush(20)
    assert (writer.written, writer.lost) == (1, 0)
    assert lookup(stack, event["data"]["correlationId"])[0] == 200


@pytest.mark.parametrize("fault", FAULTS)
def test_lookups_answer_503_while_the_store_fails(proxied: tuple[Stack, FaultProxy], fault: str) -> None:
    stack, proxy = proxied
    event = stack.call(sip={"X-MS-Custom-IsVip": "true"})
    assert stack.post([event])[0] == 202
    writer = app.current().records
    assert writer is not None and writer.flush(10)
    proxy.mode = fault  # type: ignore[assignment]
    started = time.monotonic()
    status, body = lookup(stack, event["data"]["correlationId"])
    assert (status, body) == (503, {"error": "the store is unavailable"})
    assert time.monotonic() - started < 1.9  # a slow store is given up on, not waited for
