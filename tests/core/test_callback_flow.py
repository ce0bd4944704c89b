"""The callback flow, as a table: every state and callback gives one defined step, without any I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.core import callback_flow as flow
from shared.core import config, uui
from shared.core.callback_flow import CallState, HangUp, Note, Transfer
from shared.core.decision import OperationContext, TransferAttempt
from shared.core.sealing import Sealer
from tests.conftest import DATA, ROUTING_AVAYA, ROUTING_WITH_TRANSFER_FALLBACK, load_json

#: The example routing with a fallback queue that transfers too (overflow), so both attempts exist.
CONTEXT = {"Intent": "billing", "Priority": "007", "AccountNumber": "500112233445"}


@pytest.fixture(scope="module")
def routing() -> config.Routing:
    return config.parse(ROUTING_WITH_TRANSFER_FALLBACK)


@pytest.fixture(scope="module")
def no_transfer_fallback(example_routing: config.Routing) -> config.Routing:
    return example_routing  # retail-ivr falls back to agents, an answer queue


SEALER = Sealer(["this-app-context-key-0123456789abcdef"])


def operation_context(**changes: Any) -> str:
    """What this app wrote as operationContext: the billing transfer, AccountNumber sealed."""
    fields: dict[str, Any] = {
        "queue": "billing",
        "workstream": "retail-ivr",
        "correlation_id": "corr-1",
        "context": CONTEXT,
        "sealed": frozenset({"AccountNumber"}),
    }
    if "attempt" in changes:
        changes["attempt"] = TransferAttempt(changes["attempt"])
    return OperationContext(**{**fields, **changes}).to_json(SEALER)


def callback(kind: str, **op: Any) -> dict[str, Any]:
    return {
        "id": "ev-1",
        "type": f"Microsoft.Communication.{kind}",
        "source": "calling/callConnections/conn-1",
        "data": {
            "callConnectionId": "conn-1",
            "serverCallId": "server-1",
            "correlationId": "corr-1",
            "operationContext": operation_context(**op),
            "resultInformation": {"code": 500, "subCode": 9999, "message": "busy here"},
        },
    }


def step(kind: str, state: CallState, routing: config.Routing, **op: Any) -> flow.Transition:
    event = flow.read_callback(callback(kind, **op), SEALER)
    assert event is not None
    return flow.next_step(event, state, routing)


def test_the_recorded_live_callbacks_are_read_with_their_ids_and_result() -> None:
    recorded = load_json(DATA / "callbacks.recorded.json")  # {event name: the CloudEvent ACS posted}
    for name, item in recorded.items():
        event = flow.read_callback(item, SEALER)
        assert event is not None and event.kind == name
        assert event.operation_context is None  # recorded from another app: nothing of ours to act on
        assert event.call_connection_id == "05002380-1ace-4171-8ba5-bbb70c797563"
        assert event.result_code == 200
    disconnected = flow.read_callback(recorded["CallDisconnected"], SEALER)
    assert disconnected is not None and disconnected.result_sub_code == 7000


def test_call_connected_on_a_transfer_queue_transfers_to_its_target_with_the_context_as_received(
    routing: config.Routing,
) -> None:
    t = step("CallConnected", CallState.ANSWERED, routing)
    assert isinstance(t.step, Transfer) and t.next_state is CallState.TRANSFERRING
    assert (t.step.target, t.step.queue, t.step.attempt) == ("+14255550123", "billing", TransferAttempt.PRIMARY)
    assert t.step.operation_context == OperationContext(
        "billing",
        "retail-ivr",
        "corr-1",
        CONTEXT,
        target="+14255550123",
        attempt=TransferAttempt.PRIMARY,
        sealed=frozenset({"AccountNumber"}),  # still sealed in the transfer's own operation context
    )
    sip = t.step.headers.sip_headers or {}
    assert uui.decode(sip["User-To-User"]).pairs == CONTEXT  # "007" stays "007"


def test_call_connected_on_an_answer_queue_has_nothing_to_do(routing: config.Routing) -> None:
    t = step("CallConnected", CallState.ANSWERED, routing, queue="agents")
    assert t.step == Note("nothing to do") and t.next_state is None


@pytest.mark.parametrize("state", [CallState.TRANSFERRING, CallState.TRANSFERRING_FALLBACK, CallState.ENDED])
def test_a_repeated_call_connected_is_a_duplicate_and_changes_nothing(
    routing: config.Routing, state: CallState
) -> None:
    t = step("CallConnected", state, routing)
    assert t.step == Note("duplicate") and t.next_state is None


@pytest.mark.parametrize("kind", ["CallTransferFailed", flow.TRANSFER_REFUSED])
def test_a_failed_primary_transfer_tries_the_fallback_queue_once(routing: config.Routing, kind: str) -> None:
    t = step(kind, CallState.TRANSFERRING, routing, target="+14255550123", attempt="primary")
    assert isinstance(t.step, Transfer) and t.next_state is CallState.TRANSFERRING_FALLBACK
    assert (t.step.target, t.step.queue, t.step.attempt) == ("+14255550188", "overflow", TransferAttempt.FALLBACK)
    assert t.step.level == "warning" and "trying fallback queue overflow" in t.step.message
    assert dict(t.step.operation_context.context) == CONTEXT


def test_a_failed_primary_transfer_without_a_transfer_fallback_hangs_up(no_transfer_fallback: config.Routing) -> None:
    t = step("CallTransferFailed", CallState.TRANSFERRING, no_transfer_fallback, attempt="primary")
    assert isinstance(t.step, HangUp) and t.next_state is CallState.HUNG_UP
    assert t.step.level == "error" and "no fallback is left; hanging up" in t.step.message
    assert "500/9999: busy here" in t.step.message


def test_a_failed_fallback_transfer_hangs_up(routing: config.Routing) -> None:
    t = step("CallTransferFailed", CallState.TRANSFERRING_FALLBACK, routing, queue="overflow", attempt="fallback")
    assert isinstance(t.step, HangUp) and t.next_state is CallState.HUNG_UP


def test_a_late_repeat_of_the_primary_failure_does_not_start_a_second_fallback(routing: config.Routing) -> None:
    t = step("CallTransferFailed", CallState.TRANSFERRING_FALLBACK, routing, attempt="primary")
    assert t.step == Note("duplicate") and t.next_state is None


def test_an_instance_that_never_saw_the_call_trusts_the_attempt_echoed(routing: config.Routing) -> None:
    primary = step("CallTransferFailed", CallState.ANSWERED, routing, attempt="primary")
    fallback = step("CallTransferFailed", CallState.ANSWERED, routing, queue="overflow", attempt="fallback")
    assert isinstance(primary.step, Transfer) and primary.step.attempt is TransferAttempt.FALLBACK
    assert isinstance(fallback.step, HangUp)


def test_an_accepted_transfer_is_done_once(routing: config.Routing) -> None:
    first = step("CallTransferAccepted", CallState.TRANSFERRING, routing, target="+14255550123", attempt="primary")
    assert first.step == Note("done", "info", "call corr-1 transferred to queue billing (+14255550123)")
    assert first.next_state is CallState.TRANSFERRED
    again = step("CallTransferAccepted", CallState.TRANSFERRED, routing, attempt="primary")
    assert again.step == Note("duplicate")


def test_a_caller_hanging_up_before_the_transfer_is_a_warning(routing: config.Routing) -> None:
    t = step("CallDisconnected", CallState.ANSWERED, routing)
    assert t.step == Note("logged", "warning", "call corr-1: caller hung up before the transfer to queue billing")
    assert t.next_state is CallState.ENDED


@pytest.mark.parametrize("state", [CallState.TRANSFERRING, CallState.TRANSFERRED, CallState.HUNG_UP])
def test_a_call_ending_after_the_transfer_started_is_logged(routing: config.Routing, state: CallState) -> None:
    t = step("CallDisconnected", state, routing)
    assert t.step == Note("logged", "info", "call corr-1: call ended") and t.next_state is CallState.ENDED


def test_every_state_and_callback_has_a_defined_step(routing: config.Routing) -> None:
    kinds = (
        flow.CALL_CONNECTED,
        flow.TRANSFER_ACCEPTED,
        flow.TRANSFER_FAILED,
        flow.TRANSFER_REFUSED,
        flow.CALL_DISCONNECTED,
        "ParticipantsUpdated",
    )
    for state in CallState:
        for kind in kinds:
            for attempt in ("primary", "fallback"):
                t = step(kind, state, routing, attempt=attempt)
                assert isinstance(t.step, Transfer | HangUp | Note)
                # Only the table's own transitions move the state, and never backwards to answered.
                assert t.next_state is not CallState.ANSWERED
    assert step("ParticipantsUpdated", CallState.ANSWERED, routing).step == Note("ignored")


@pytest.mark.parametrize(
    "forge",
    [
        lambda text: "[1, 2]",  # JSON, but not what this app writes
        lambda text: "not json",
        lambda text: text.replace('"queue":"billing"', '"queue":"vip"'),  # steered to another queue
        lambda text: text.replace('"Intent":"billing"', '"Intent":"sales"'),  # context changed
        lambda text: json.dumps({**json.loads(text), "mac": SEALER.sign({"queue": "vip"})}),  # another's mac
        lambda text: OperationContext("billing", "retail-ivr", "corr-1", CONTEXT).to_json(Sealer(["k" * 32])),
        lambda text: OperationContext("billing", "retail-ivr", "corr-1", CONTEXT).to_json(None),  # unsigned
        lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "mac"}),
    ],
    ids=["not-an-object", "not-json", "queue-changed", "context-changed", "bad-mac", "other-key", "unsigned", "no-mac"],
)
def test_a_callback_whose_operation_context_does_not_verify_is_ignored_whatever_its_content(
    routing: config.Routing, forge: Any
) -> None:
    item = callback("CallConnected")
    item["data"]["operationContext"] = forge(item["data"]["operationContext"])
    event = flow.read_callback(item, SEALER)
    assert event is not None and event.operation_context is None
    t = flow.next_step(event, CallState.ANSWERED, routing)
    assert isinstance(t.step, Note) and t.step.result == "ignored" and t.next_state is None
    assert "does not verify" in t.step.message


def test_sensitive_values_travel_sealed_and_open_only_with_the_key() -> None:
    text = operation_context()
    assert "500112233445" not in text and "AccountNumber" not in text  # not even the name in clear
    opened = OperationContext.from_json(text, SEALER)
    assert opened is not None and dict(opened.context) == CONTEXT and opened.sealed == {"AccountNumber"}
    assert OperationContext.from_json(text, Sealer(["another-key-0123456789abcdef0123456789"])) is None


def test_a_context_signed_with_the_previous_key_verifies_while_keys_rotate() -> None:
    old = Sealer(["old-context-key-0123456789abcdef0123456789"])
    text = OperationContext("billing", "retail-ivr", "corr-1", CONTEXT, sealed=frozenset({"Pin"})).to_json(old)
    rotating = Sealer(["new-context-key-0123456789abcdef0123456789", "old-context-key-0123456789abcdef0123456789"])
    opened = OperationContext.from_json(text, rotating)
    assert opened is not None and dict(opened.context) == CONTEXT


def test_operation_context_round_trips_and_keeps_the_text_as_received() -> None:
    op = OperationContext(
        "billing", "retail-ivr", "corr-1", {"Amount": "1.10", "Id": "007"}, "+1425", TransferAttempt.FALLBACK
    )
    assert OperationContext.from_json(op.to_json(SEALER), SEALER) == op
    body = json.loads(op.to_json(SEALER))
    assert body["context"] == {"Amount": "1.10", "Id": "007"}
    answer = OperationContext("agents", "retail-ivr", "corr-1", {"Intent": "x"})
    body = json.loads(answer.to_json(SEALER))
    assert SEALER.verify({k: v for k, v in body.items() if k != "mac"}, body["mac"]) == 0
    assert {k: v for k, v in body.items() if k != "mac"} == {
        "queue": "agents",
        "workstream": "retail-ivr",
        "correlationId": "corr-1",
        "context": {"Intent": "x"},
    }


def test_a_transfer_to_an_avaya_shared_queue_sends_the_workstreams_named_items_back_under_their_ids() -> None:
    avaya = config.parse(ROUTING_AVAYA)
    context = {"UCID": "00025000160955721139", "UserData": "ACCT=42"}
    op = {"queue": "avaya-agents", "workstream": "avaya-ivr", "context": context}
    t = step("CallConnected", CallState.ANSWERED, avaya, **op)
    assert isinstance(t.step, Transfer)
    # The AudioCodes UCID item, then C8 (the workstream's UserData), 7 bytes of ACCT=42.
    expected = "00FA080019001038F725B3" + "C807414343543D3432" + ";encoding=hex"
    assert t.step.headers.sip_headers == {"User-To-User": expected}
