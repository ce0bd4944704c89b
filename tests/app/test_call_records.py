"""The call's record against a real Table Storage emulator (Azurite): written after the Call
Automation request, found by correlation id over HTTP, shared by two app processes so exactly one
of them transfers, and swept when the CallConnected callback never comes. No mock of the store."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from azure.data.tables import TableClient

from local.azurite import Azurite
from local.instance import Instance
from local.stack import Stack, free_port, post_json
from shared import app
from shared.core import call_record
from tests.conftest import ROUTING_WITH_TRANSFER_FALLBACK

ACCOUNT = "500112233445"
REVEAL_KEY = "reveal-" + "r" * 40


@pytest.fixture
def stored(stack: Stack, azurite: Azurite) -> Iterator[Stack]:
    """The stack with a store: a table of its own in the session's Azurite."""
    stack.restart(
        HANDOFF_STORE=azurite.connection_string,
        HANDOFF_STORE_TABLE="t" + secrets.token_hex(6),
        HANDOFF_REVEAL_KEY=REVEAL_KEY,
    )
    yield stack


def table(azurite: Azurite) -> TableClient:
    return TableClient.from_connection_string(azurite.connection_string, table_name=app.current().settings.store_table)


def flush() -> None:
    writer = app.current().records
    assert writer is not None and writer.flush(10)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body else None


def lookup(stack: Stack, correlation_id: str, **headers: str) -> tuple[int, Any]:
    return get(f"{stack.host.url}/api/calls/{correlation_id}", {"x-functions-key": stack.host.function_key, **headers})


def transfer_call(stack: Stack) -> dict[str, Any]:
    return stack.call(
        sip={"User-To-User": f"Intent=billing;Priority=007;AccountNumber={ACCOUNT}", "X-MS-Custom-IsVip": "false"}
    )


# ---- the record ------------------------------------------------------------------------------


def test_a_transferred_call_has_one_record_with_its_context_as_received_and_its_flow(
    stored: Stack, azurite: Azurite
) -> None:
    event = transfer_call(stored)
    data = event["data"]
    assert stored.post([event])[0] == 202
    assert stored.wait(lambda: [a.operation for a in stored.actions_for(event)] == ["answer", "transfer"])
    flush()
    entities: list[Any] = []

    def transferred() -> bool:  # CallTransferAccepted moves the flow on: transferring, then transferred
        entities[:] = table(azurite).query_entities("PartitionKey eq @pk", parameters={"pk": data["correlationId"]})
        return len(entities) == 1 and entities[0].get("FlowState") == "transferred"

    assert stored.wait(transferred)
    [entity] = entities
    assert entity["RowKey"] == hashlib.sha256(data["incomingCallContext"].encode()).hexdigest()[:32]
    record = call_record.from_entity(entity, app.current().actions.sealer)
    assert (record.called, record.caller) == ("+14255550100", data["from"]["phoneNumber"]["value"])
    assert (record.workstream, record.queue, record.rule) == ("retail-ivr", "billing", "billing-priority")
    assert (record.action, record.target, record.outcome) == ("transfer", "+14255550123", "done")
    # Each variable's text as the IVR sent it (007, not 7), its type and whether it is sensitive.
    assert [(v.name, v.text, v.type, v.sensitive) for v in record.context] == [
        ("Intent", "billing", "text", False),
        ("Priority", "007", "number", False),
        ("AccountNumber", ACCOUNT, "text", True),
        ("IsVip", "false", "boolean", False),
    ]
    assert record.call_connection_id == stored.actions_for(event)[0].call_connection_id
    assert record.flow_state == "transferred" and record.flow_version == 2 and not record.awaiting_transfer
    # The account number is stored only sealed: not in clear anywhere in the entity.
    assert ACCOUNT not in json.dumps({k: str(v) for k, v in entity.items()})


def test_the_record_is_written_after_the_answer_request_not_before(stored: Stack, azurite: Azurite) -> None:
    writes: list[float] = []
    writer = app.current().records
    assert writer is not None
    store_write = writer.store.write

    def timed(record: call_record.CallRecord) -> None:
        writes.append(time.monotonic())
        store_write(record)

    writer.store.write = timed  # type: ignore[method-assign]
    event = stored.call(to="+14255550100", sip={"X-MS-Custom-IsVip": "true"})  # the vip queue: a redirect
    assert stored.post([event])[0] == 202
    flush()
    [redirect] = stored.actions_for(event)
    assert redirect.operation == "redirect"
    assert len(writes) == 1 and writes[0] > redirect.at


def test_a_duplicate_delivery_writes_no_second_record(stored: Stack, azurite: Azurite) -> None:
    event = stored.call(sip={"X-MS-Custom-IsVip": "true"})
    assert stored.post([event])[0] == 202
    assert stored.post([event])[0] == 202
    flush()
    entities = list(
        table(azurite).query_entities("PartitionKey eq @pk", parameters={"pk": event["data"]["correlationId"]})
    )
    assert len(entities) == 1 and app.current().records.written == 1  # type: ignore[union-attr]


# ---- looking a call up ---------------------------------------------------------------------------


def test_a_redirected_call_is_looked_up_by_correlation_id_with_its_context(stored: Stack) -> None:
    event = stored.call(sip={"User-To-User": f"Intent=support;AccountNumber={ACCOUNT}", "X-MS-Custom-IsVip": "true"})
    assert stored.post([event])[0] == 202
    flush()
    status, body = lookup(stored, event["data"]["correlationId"])
    assert status == 200
    assert {k: body[k] for k in call_record.VIEW_FIELDS} == {
        "correlation_id": event["data"]["correlationId"],
        "called": "+14255550100",
        "caller": event["data"]["from"]["phoneNumber"]["value"],
        "workstream": "retail-ivr",
        "queue": "vip",
        "rule": "vip-callers",
        "action": "redirect",
        "target": "8:acs:11111111-2222-3333-4444-555555555555_00000001-0000-0000-0000-000000000001",
        "outcome": "done",
        "context": {"Intent": "support", "AccountNumber": "***", "IsVip": "true"},
    }
    assert body["legs"] == 1 and body["types"]["IsVip"] == "boolean"


def test_sensitive_values_are_revealed_only_with_the_reveal_key(stored: Stack) -> None:
    event = transfer_call(stored)
    assert stored.post([event])[0] == 202
    flush()
    correlation_id = event["data"]["correlationId"]
    status, body = lookup(stored, correlation_id)
    assert status == 200 and body["context"]["AccountNumber"] == "***" and ACCOUNT not in json.dumps(body)
    status, body = lookup(stored, correlation_id, **{"X-Handoff-Reveal-Key": "x" * 40})
    assert status == 403 and ACCOUNT not in json.dumps(body)
    status, body = lookup(stored, correlation_id, **{"X-Handoff-Reveal-Key": REVEAL_KEY})
    assert status == 200 and body["context"]["AccountNumber"] == ACCOUNT


def test_without_a_reveal_key_configured_no_header_reveals_anything(stored: Stack, azurite: Azurite) -> None:
    stored.restart(HANDOFF_STORE=azurite.connection_string, HANDOFF_STORE_TABLE=app.current().settings.store_table)
    event = transfer_call(stored)
    assert stored.post([event])[0] == 202
    flush()
    for key in ("", "x" * 40, REVEAL_KEY):
        status, body = lookup(stored, event["data"]["correlationId"], **{"X-Handoff-Reveal-Key": key})
        assert status == 403 and ACCOUNT not in json.dumps(body)


def test_a_lookup_needs_the_function_key(stored: Stack) -> None:
    url = f"{stored.host.url}/api/calls/{secrets.token_hex(8)}"
    assert get(url)[0] == 401
    assert get(url, {"x-functions-key": "not-the-key"})[0] == 401
    assert get(url, {"x-functions-key": stored.host.function_key})[0] == 404
    assert get(f"{url}?code={stored.host.function_key}")[0] == 404


def test_an_unknown_call_is_404_and_a_malformed_id_400(stored: Stack) -> None:
    assert lookup(stored, "00000000-0000-0000-0000-00000000abcd") == (404, {"error": "no record of this call"})
    assert lookup(stored, "a%5Cb")[0] == 400  # a backslash: not a Table Storage key


def test_with_no_store_a_lookup_answers_503_store_off(stack: Stack) -> None:
    status, body = lookup(stack, "00000000-0000-0000-0000-00000000abcd")
    assert status == 503 and "store off" in body["error"]


# ---- two instances, one store ----------------------------------------------------------------------


def callback_events(stack: Stack, connection_id: str, kind: str) -> list[dict[str, Any]]:
    return [
        event
        for delivery in stack.emu.callbacks_sent
        for event in delivery.events
        if event["data"].get("callConnectionId") == connection_id and event["type"].endswith(kind)
    ]


@pytest.mark.parametrize("shared_store", [True, False], ids=["store", "no-store"])
def test_two_instances_sharing_the_store_transfer_a_call_exactly_once(
    stack: Stack, azurite: Azurite, shared_store: bool
) -> None:
    """IncomingCall on instance A, its callbacks on instance B, and every delivery repeated on both.
    With the store, exactly one transfer is requested: the repeat on the other instance finds the
    flow moved on. Without it (each instance's own state, as while the store is down) the repeat
    asks for the transfer again, but as the same request under the same Repeatability-Request-ID,
    which Call Automation executes once: the second line of defence, and the emulator shows it."""
    key = secrets.token_hex(32)
    store = {"HANDOFF_STORE": azurite.connection_string, "HANDOFF_STORE_TABLE": "t" + secrets.token_hex(6)}
    base = {**stack.env, "HANDOFF_CONTEXT_KEY": key, **(store if shared_store else {"HANDOFF_STORE": ""})}
    # One callback URL for both, as behind one host name in Azure: B's. So the IncomingCall goes to A
    # and every callback to B, until the test repeats them.
    b_port = free_port()
    base["HANDOFF_CALLBACK_URL"] = f"http://127.0.0.1:{b_port}/api/callbacks"
    with Instance(base, port=b_port) as b, Instance(base) as a:
        event = transfer_call(stack)
        notify = {"aeg-event-type": "Notification"}
        grid = "/runtime/webhooks/eventgrid?functionName=incoming_call"
        assert post_json(a.url + grid, [event], notify)[0] == 202
        assert post_json(b.url + grid, [event], notify)[0] == 202  # the same call, redelivered to B
        assert stack.wait(lambda: "transfer" in [x.operation for x in stack.actions_for(event)], 10)
        [answer] = [x for x in stack.actions_for(event) if x.operation == "answer"]
        # The emulator records a callback once the instance has answered it: wait for that record.
        assert stack.wait(lambda: len(callback_events(stack, answer.call_connection_id, "CallConnected")) == 1, 10)
        connected = callback_events(stack, answer.call_connection_id, "CallConnected")
        # ACS repeats the callback, to A this time, and once more to B.
        for instance in (a, b):
            token = stack.emu.callback_token()
            status, _ = post_json(f"{instance.url}/api/callbacks", connected, {"Authorization": f"Bearer {token}"})
            assert status == 200
        time.sleep(0.5)
        transfers = [x for x in stack.actions_for(event) if x.operation == "transfer"]
        replayed = list(stack.emu.replayed)
    assert [x.operation for x in stack.actions_for(event)] == ["answer", "transfer"], (a.logs(), b.logs())
    [transfer] = transfers
    # With the store the repeat requests nothing; without it, the same transfer is asked for again
    # (the same id) and answered from the first one's result.
    assert replayed.count(transfer.request_id) == (0 if shared_store else 1), (a.logs(), b.logs())


# ---- nobody left on an answered call -------------------------------------------------------------


def test_a_call_whose_call_connected_never_comes_is_transferred_to_the_fallback_by_the_sweep(
    stack: Stack, azurite: Azurite, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING_WITH_TRANSFER_FALLBACK)
    stack.restart(
        HANDOFF_CONFIG=str(path),
        HANDOFF_STORE=azurite.connection_string,
        HANDOFF_STORE_TABLE="t" + secrets.token_hex(6),
        HANDOFF_TRANSFER_TIMEOUT_SECONDS="1",
    )
    stack.emu.lost_callbacks = {"CallConnected"}
    event = stack.call(sip={"User-To-User": f"Intent=billing;Priority=9;AccountNumber={ACCOUNT}"})
    assert stack.post([event])[0] == 202
    flush()
    stack.host.run_timer()  # before the timeout: nothing to do yet
    assert [x.operation for x in stack.actions_for(event)] == ["answer"]
    time.sleep(1.2)
    with caplog.at_level("WARNING", logger="handoff"):
        stack.host.run_timer()
    operations = stack.actions_for(event)
    assert [x.operation for x in operations] == ["answer", "transfer"]
    transfer = operations[1]
    assert transfer.body["targetParticipant"]["rawId"] == "4:+14255550188"  # the fallback queue, overflow
    from shared.core import uui

    sent = uui.decode(transfer.body["customCallingContext"]["sipHeaders"]["User-To-User"]).pairs
    assert sent == {"Intent": "billing", "Priority": "9", "AccountNumber": ACCOUNT}  # unsealed for the target
    assert any("CallConnected callback never arrived" in r.getMessage() for r in caplog.records)
    stack.host.run_timer()  # the next minute: the call is settled, nothing more
    assert len(stack.actions_for(event)) == 2


def test_with_no_transfer_fallback_the_sweep_hangs_up(stored: Stack) -> None:
    stored.restart(**{**_store_of(), "HANDOFF_TRANSFER_TIMEOUT_SECONDS": "1"})
    stored.emu.lost_callbacks = {"CallConnected"}
    event = transfer_call(stored)
    assert stored.post([event])[0] == 202
    flush()
    time.sleep(1.2)
    stored.host.run_timer()
    assert [x.operation for x in stored.actions_for(event)] == ["answer", "hangup"]


def test_a_call_whose_transfer_went_ahead_is_left_alone_by_the_sweep(stored: Stack) -> None:
    stored.restart(**{**_store_of(), "HANDOFF_TRANSFER_TIMEOUT_SECONDS": "1"})
    event = transfer_call(stored)
    assert stored.post([event])[0] == 202
    assert stored.wait(lambda: [x.operation for x in stored.actions_for(event)] == ["answer", "transfer"])
    flush()
    time.sleep(1.2)
    stored.host.run_timer()
    assert [x.operation for x in stored.actions_for(event)] == ["answer", "transfer"]


def test_records_past_their_time_to_live_are_deleted_by_the_sweep(stored: Stack, azurite: Azurite) -> None:
    stored.restart(**{**_store_of(), "HANDOFF_CONTEXT_TTL_HOURS": str(0.5 / 3600)})  # half a second
    event = stored.call(sip={"X-MS-Custom-IsVip": "true"})
    assert stored.post([event])[0] == 202
    flush()
    assert lookup(stored, event["data"]["correlationId"])[0] == 200
    time.sleep(0.7)
    stored.host.run_timer()
    assert lookup(stored, event["data"]["correlationId"])[0] == 404


def _store_of() -> dict[str, str]:
    settings = app.current().settings
    assert settings.store is not None
    return {
        "HANDOFF_STORE": settings.store,
        "HANDOFF_STORE_TABLE": settings.store_table,
        "HANDOFF_REVEAL_KEY": REVEAL_KEY,
    }


def test_a_record_that_cannot_be_built_costs_the_call_nothing_but_its_record(
    stored: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(call_record, "for_call", broken)
    event = stored.call(sip={"X-MS-Custom-IsVip": "true"})
    with caplog.at_level("INFO", logger="handoff"):
        assert stored.post([event])[0] == 202
    assert [x.operation for x in stored.actions_for(event)] == ["redirect"]
    assert stored.host.errors == []
    messages = [r.getMessage() for r in caplog.records]
    assert any("its record could not be built (KeyError)" in m for m in messages)
    assert any("rule vip-callers, queue vip, redirect → done" in m for m in messages)  # the call's own line
