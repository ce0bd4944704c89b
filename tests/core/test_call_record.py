"""The call's record in the pure core: what is kept for a call, how it is stored (sensitive values
only sealed) and what a lookup shows; and the sweep's step for a stranded call."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.core import call_record, events, routing
from shared.core import callback_flow as flow
from shared.core.callback_flow import CallState, HangUp, Transfer
from shared.core.decision import ActionResult, OperationContext, Outcome, TransferAttempt
from shared.core.routing_table import Routing
from shared.core.sealing import Sealer
from tests.conftest import DATA, ROUTING_WITH_TRANSFER_FALLBACK, load_json

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
TTL = timedelta(hours=24)
ACCOUNT = "500112233445"
SEALER = Sealer(["k" * 40])


def incoming(uui: str, correlation_id: Any = "corr-1", to: str = "+14255550100") -> events.IncomingCall:
    event = load_json(DATA / "incoming-call.eventgrid-schema.json")
    event = event[0] if isinstance(event, list) else event
    event["data"]["to"] = {"kind": "phoneNumber", "rawId": f"4:{to}", "phoneNumber": {"value": to}}
    event["data"]["customContext"] = {"sipHeaders": {"User-To-User": uui}}
    event["data"]["correlationId"] = correlation_id
    event["data"]["incomingCallContext"] = "context-of-" + str(correlation_id)
    [envelope] = events.envelopes([event])
    return events.incoming_call(envelope)


def record_for(app_routing: Routing, uui: str, outcome: Outcome = Outcome.DONE, **kw: Any) -> Any:
    call = incoming(uui, **kw)
    decision = routing.route(call, app_routing)
    ws = app_routing.by_number.get(call.called_address or "")
    result = ActionResult(outcome, str(decision.action), call_connection_id="conn-1")
    return call, decision, call_record.for_call(call, decision, result, ws.variables if ws else None, NOW, TTL)


def test_a_transfer_call_keeps_its_route_its_context_as_received_and_awaits_its_transfer(app_routing: Routing) -> None:
    call, _, record = record_for(app_routing, f"Intent=billing;Priority=007;AccountNumber={ACCOUNT}")
    assert (record.correlation_id, record.leg) == ("corr-1", call.leg)
    assert (record.queue, record.rule, record.action, record.target) == (
        "billing",
        "billing-priority",
        "transfer",
        "+14255550123",
    )
    assert [(v.name, v.text, v.type, v.sensitive) for v in record.context] == [
        ("Intent", "billing", "text", False),
        ("Priority", "007", "number", False),
        ("AccountNumber", ACCOUNT, "text", True),
    ]
    assert record.awaiting_transfer and record.call_connection_id == "conn-1"
    assert record.expires_at == NOW + TTL


def test_an_answer_queue_records_the_answering_apps_url_and_awaits_nothing(app_routing: Routing) -> None:
    _, _, record = record_for(app_routing, "Intent=support")
    assert (record.queue, record.action, record.target) == (
        "agents",
        "answer",
        "https://agents.example.com/api/callbacks",
    )
    assert not record.awaiting_transfer


@pytest.mark.parametrize("outcome", [Outcome.DUPLICATE, Outcome.ALREADY_HANDLED])
def test_a_delivery_that_did_not_act_leaves_the_record_to_the_one_that_did(
    app_routing: Routing, outcome: Outcome
) -> None:
    assert record_for(app_routing, "Intent=support", outcome)[2] is None


@pytest.mark.parametrize("correlation_id", [None, "", "a/b", "a#b", "x" * 129, "tab\there"])
def test_a_call_without_a_usable_correlation_id_has_no_record(app_routing: Routing, correlation_id: Any) -> None:
    assert record_for(app_routing, "Intent=support", correlation_id=correlation_id)[2] is None


def test_a_failed_action_is_recorded_with_its_outcome_and_awaits_nothing(app_routing: Routing) -> None:
    _, _, record = record_for(app_routing, "Intent=billing;Priority=9", Outcome.PERMANENT)
    assert record.outcome == "permanent-failure" and not record.awaiting_transfer


def test_the_stored_entity_holds_sensitive_values_only_sealed(app_routing: Routing) -> None:
    _, _, record = record_for(app_routing, f"Intent=billing;Priority=9;AccountNumber={ACCOUNT}")
    entity = call_record.to_entity(record, SEALER)
    assert ACCOUNT not in json.dumps({k: str(v) for k, v in entity.items()})
    assert (entity["PartitionKey"], entity["RowKey"]) == (record.correlation_id, record.leg)
    assert "Sealed" in entity
    # Without a context key they are not stored at all.
    unsealed = call_record.to_entity(record, None)
    assert "Sealed" not in unsealed and ACCOUNT not in json.dumps({k: str(v) for k, v in unsealed.items()})
    assert call_record.from_entity(unsealed, SEALER).context_text() == {"Intent": "billing", "Priority": "9"}


def test_a_stored_record_reads_back_the_same_and_opens_only_with_its_key(app_routing: Routing) -> None:
    _, _, record = record_for(app_routing, f"Intent=billing;Priority=9;AccountNumber={ACCOUNT}")
    entity = call_record.to_entity(record, SEALER)
    assert call_record.from_entity(entity, SEALER) == record
    assert call_record.from_entity(entity, None).context_text() == {"Intent": "billing", "Priority": "9"}
    assert call_record.from_entity(entity, Sealer(["o" * 40])).context_text() == {"Intent": "billing", "Priority": "9"}
    # Rotation: a record sealed with an older key still opens while that key is listed second.
    assert call_record.from_entity(entity, Sealer(["n" * 40, "k" * 40])).context_text()["AccountNumber"] == ACCOUNT


def test_a_blob_sealed_for_an_operation_context_does_not_open_as_a_records(app_routing: Routing) -> None:
    _, _, record = record_for(app_routing, f"Intent=billing;Priority=9;AccountNumber={ACCOUNT}")
    entity = call_record.to_entity(record, SEALER)
    entity["Sealed"] = SEALER.seal({"AccountNumber": "999"})  # sealed for the operation context's purpose
    assert call_record.from_entity(entity, SEALER).context_text().get("AccountNumber") is None


def test_a_lookup_masks_sensitive_values_unless_revealed(app_routing: Routing) -> None:
    _, _, record = record_for(app_routing, f"Intent=billing;Priority=9;AccountNumber={ACCOUNT}")
    assert call_record.view(record)["context"] == {"Intent": "billing", "Priority": "9", "AccountNumber": "***"}
    assert call_record.view(record, reveal=True)["context"]["AccountNumber"] == ACCOUNT
    assert list(call_record.view(record)) == list(call_record.VIEW_FIELDS)
    stored_without_key = call_record.from_entity(call_record.to_entity(record, None))
    assert call_record.view(stored_without_key, reveal=True)["context"]["AccountNumber"] is None


def test_a_damaged_entity_reads_as_far_as_it_goes() -> None:
    record = call_record.from_entity({"PartitionKey": "c", "RowKey": "l", "Context": "not json", "FlowVersion": True})
    assert record.context == () and record.flow_version == 0 and record.flow_state is None


# ---- the sweep's step -------------------------------------------------------------------------


def test_a_stranded_call_goes_to_the_fallback_queue_with_its_context(app_routing: Routing) -> None:
    from shared.core.config import parse

    fallback_routing = parse(ROUTING_WITH_TRANSFER_FALLBACK)
    _, _, record = record_for(fallback_routing, f"Intent=billing;Priority=9;AccountNumber={ACCOUNT}")
    transition = flow.stranded(record, fallback_routing, 15)
    step = transition.step
    assert isinstance(step, Transfer) and transition.next_state == CallState.TRANSFERRING_FALLBACK
    assert (step.queue, step.target, step.attempt) == ("overflow", "+14255550188", TransferAttempt.FALLBACK)
    op: OperationContext = step.operation_context
    assert (op.correlation_id, op.leg, op.sealed) == (record.correlation_id, record.leg, frozenset({"AccountNumber"}))
    assert "CallConnected callback never arrived" in step.message and "15 s" in step.message


def test_a_stranded_call_without_a_transfer_fallback_is_hung_up(app_routing: Routing) -> None:
    _, _, record = record_for(app_routing, "Intent=billing;Priority=9")
    transition = flow.stranded(record, app_routing, 15)
    assert isinstance(transition.step, HangUp) and transition.next_state == CallState.HUNG_UP
