"""The store adapter against a real Azurite: the record's write rules, the flow's conditional writes,
and a flow step decided while the store failed reaching the store once it answers."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from local.azurite import Azurite
from local.fault_proxy import FaultProxy
from shared.adapters.dedupe import CallStates
from shared.adapters.store import CallStore, FlowStates, RecordWriter
from shared.core.call_record import CallRecord, RecordedVariable
from shared.core.callback_flow import CallbackEvent, CallState
from shared.core.decision import OperationContext
from shared.core.sealing import Sealer

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SEALER = Sealer(["s" * 40])


def record(outcome: str = "done", connection: str | None = "conn-1", **changes: object) -> CallRecord:
    base = CallRecord(
        correlation_id="corr-" + secrets.token_hex(4),
        leg=secrets.token_hex(16),
        called="+14255550100",
        caller="+14255550177",
        workstream="retail-ivr",
        queue="billing",
        rule="billing-priority",
        action="transfer",
        target="+14255550123",
        outcome=outcome,
        received_at=NOW,
        acted_at=NOW,
        expires_at=NOW + timedelta(hours=24),
        context=(RecordedVariable("Intent", "billing"),),
        call_connection_id=connection,
        awaiting_transfer=outcome == "done",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def store(azurite: Azurite) -> CallStore:
    return CallStore(azurite.connection_string, "t" + secrets.token_hex(6), SEALER)


def stored(store: CallStore, r: CallRecord) -> CallRecord:
    [leg] = store.legs(r.correlation_id)
    return leg


def test_a_failure_never_hides_the_record_of_a_leg_that_got_its_action(store: CallStore) -> None:
    done = record()
    store.write(done)
    store.write(replace(done, outcome="permanent-failure", call_connection_id=None, awaiting_transfer=False))
    kept = stored(store, done)
    assert (kept.outcome, kept.call_connection_id, kept.awaiting_transfer) == ("done", "conn-1", True)


def test_the_delivery_that_acted_replaces_an_earlier_failure(store: CallStore) -> None:
    failed = record("permanent-failure", connection=None)
    store.write(failed)
    store.write(replace(failed, outcome="done", call_connection_id="conn-2"))
    kept = stored(store, failed)
    assert (kept.outcome, kept.call_connection_id) == ("done", "conn-2")


def test_a_second_write_of_the_record_leaves_the_flow_where_a_callback_moved_it(store: CallStore) -> None:
    r = record()
    store.write(r)
    assert store.set_flow_if(r.correlation_id, r.leg, 0, "transferring", NOW)
    store.write(r)  # the same leg written again (another delivery): the flow stays
    assert store.flow(r.correlation_id, r.leg) == ("transferring", 1)
    assert not stored(store, r).awaiting_transfer


def test_of_many_instances_moving_one_flow_at_once_exactly_one_wins(store: CallStore) -> None:
    r = record()
    store.write(r)
    barrier, wins = threading.Barrier(8), []

    def move() -> None:
        barrier.wait()
        wins.append(store.set_flow_if(r.correlation_id, r.leg, 0, "transferring", NOW))

    threads = [threading.Thread(target=move) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(wins) == [False] * 7 + [True]
    assert store.flow(r.correlation_id, r.leg) == ("transferring", 1)


def test_a_callback_before_the_record_starts_the_flow_and_the_record_joins_it(store: CallStore) -> None:
    r = record()
    assert store.set_flow_if(r.correlation_id, r.leg, 0, "transferring", NOW)
    assert not store.set_flow_if(r.correlation_id, r.leg, 0, "transferring", NOW)  # the repeat
    store.write(r)
    kept = stored(store, r)
    assert (kept.flow_state, kept.flow_version, kept.outcome) == ("transferring", 1, "done")


def test_a_record_written_between_the_read_and_the_write_is_not_taken_for_another_step(store: CallStore) -> None:
    r = record()
    store.write(r)
    client = store._client("fast")
    real_get = client.get_entity
    first = [True]

    def get_then_record(*args: object, **kwargs: object) -> object:
        entity = real_get(*args, **kwargs)
        if first.pop() if first else False:
            store.write(replace(r, caller="+14255550178"))  # changes the ETag, not the flow
        return entity

    client.get_entity = get_then_record
    assert store.set_flow_if(r.correlation_id, r.leg, 0, "transferring", NOW)
    assert store.flow(r.correlation_id, r.leg) == ("transferring", 1)


@pytest.fixture
def proxied(azurite: Azurite) -> Iterator[tuple[CallStore, FaultProxy]]:
    with FaultProxy(azurite.port) as proxy:
        store = CallStore(proxy.connection_string(), "t" + secrets.token_hex(6), SEALER)
        store._client("bulk")  # the table exists before the fault, as the Bicep creates it in Azure
        yield store, proxy
        proxy.mode = "pass"


def connected(r: CallRecord) -> CallbackEvent:
    op = OperationContext("billing", "retail-ivr", r.correlation_id, {"Intent": "billing"}, leg=r.leg)
    return CallbackEvent("CallConnected", "e1", r.call_connection_id, None, r.correlation_id, op)


def test_a_step_decided_while_the_store_was_down_reaches_it_once_it_answers(
    proxied: tuple[CallStore, FaultProxy],
) -> None:
    store, proxy = proxied
    r = record()
    store.write(r)
    writer = RecordWriter(store)
    flows = FlowStates(store, CallStates(), writer)
    proxy.mode = "stopped"
    state, version = flows.get(connected(r))
    assert (state, version) == (CallState.ANSWERED, ("local", 0))
    assert flows.set_if(connected(r), version, CallState.TRANSFERRING)  # this instance transfers
    proxy.mode = "pass"
    assert writer.flush(15) and writer.flows_synced == 1
    assert store.flow(r.correlation_id, r.leg) == ("transferring", 1)
    assert store.stranded(NOW + timedelta(days=1)) == []  # the sweep will not take it for stranded


def test_a_late_sync_does_not_undo_a_step_another_instance_wrote(proxied: tuple[CallStore, FaultProxy]) -> None:
    store, _ = proxied
    r = record()
    store.write(r)
    assert store.set_flow_if(r.correlation_id, r.leg, 0, "transferring", NOW)
    assert store.set_flow_if(r.correlation_id, r.leg, 1, "transferred", NOW)
    store.sync_flow(r.correlation_id, r.leg, "transferring", NOW)
    assert store.flow(r.correlation_id, r.leg) == ("transferred", 2)
