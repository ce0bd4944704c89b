"""A call is never lost: duplicates, stale events, transient and permanent ACS errors, bad input,
forged callbacks and failed transfers each end in a defined outcome, with exactly one action."""

from __future__ import annotations

import json
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local.emulator import ALREADY_HANDLED_SHAPES
from local.stack import Stack
from shared import app
from shared.core import events
from shared.core.decision import ActionResult, Outcome
from tests.conftest import DATA, load_json

VECTORS = load_json(DATA / "uui-public.json")


def one_action(stack: Stack, event: dict) -> list[str]:
    return [a.operation for a in stack.actions_for(event)]


def handled(stack: Stack, event: dict) -> ActionResult:
    """What the app made of one event, invoked in-process (as the worker does, without the host)."""
    [envelope] = events.envelopes([event])
    return app.current().handle(envelope).result


# ---- duplicates --------------------------------------------------------------------------------


def test_the_same_event_delivered_twice_in_a_row_gets_one_action(stack: Stack) -> None:
    event = stack.call(sip={"User-To-User": "Intent=support"})
    assert stack.post([event])[0] == 202
    assert stack.post([event])[0] == 202  # success: Event Grid must stop redelivering
    assert one_action(stack, event) == ["answer"]


def test_the_same_event_delivered_concurrently_gets_one_action(stack: Stack) -> None:
    event = stack.call(sip={"User-To-User": "IsVip=1"})
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(stack.post([event])[0])) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert statuses == [202] * 6
    assert one_action(stack, event) == ["redirect"]


def test_the_same_call_in_an_event_with_a_new_id_is_a_duplicate(stack: Stack) -> None:
    event = stack.call(sip={"User-To-User": "IsVip=1"})
    again = json.loads(json.dumps(event))
    again["id"] = "another-event-id"  # the same incomingCallContext: the same ringing call
    assert handled(stack, event).outcome == Outcome.DONE
    assert handled(stack, again).outcome == Outcome.DUPLICATE
    assert one_action(stack, event) == ["redirect"]


def test_a_call_arriving_again_with_its_correlation_id_but_a_new_context_gets_its_own_action(stack: Stack) -> None:
    # A call redirected to another of our numbers keeps its correlation id (acs.md): a new leg.
    first = stack.call(sip={"User-To-User": "IsVip=1"}, correlation_id="one-correlation-id")
    second = stack.call(sip={"User-To-User": "IsVip=1"}, correlation_id="one-correlation-id")
    assert handled(stack, first).outcome == Outcome.DONE
    assert handled(stack, second).outcome == Outcome.DONE
    assert one_action(stack, first) == ["redirect"] and one_action(stack, second) == ["redirect"]


#: A call of each kind of queue, and the Call Automation operation on its ringing call: a transfer
#: queue's call is answered first (the transfer follows on CallConnected).
QUEUE_CALLS = [("redirect", "IsVip=1", "redirect"), ("answer", "Intent=support", "answer")]
QUEUE_CALLS += [("transfer", "Intent=billing;Priority=9", "answer")]


@pytest.mark.parametrize(("queue", "uui", "operation"), QUEUE_CALLS, ids=[q[0] for q in QUEUE_CALLS])
@pytest.mark.parametrize("shape", ALREADY_HANDLED_SHAPES, ids=lambda shape: f"{shape[0]}-{shape[1]}")
def test_a_call_already_handled_elsewhere_is_done_not_an_error(
    stack: Stack, shape: tuple[int, int], queue: str, uui: str, operation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What ACS answers here is undocumented (acs.md): every candidate (status, sub-code) is done.
    monkeypatch.setattr(stack.emu, "already_handled", shape)
    event = stack.call(sip={"User-To-User": uui})
    assert handled(stack, event).outcome == Outcome.DONE
    stack.restart(forget_calls=False)  # another instance: its in-process dedupe never saw this call
    result = handled(stack, event)
    assert result.outcome == Outcome.ALREADY_HANDLED and not result.retryable
    assert f"HTTP {shape[0]}/{shape[1]}" in result.detail
    assert [a.status for a in stack.emu.actions if a.operation == operation] == [shape[0]]  # once, not retried
    assert stack.post([event])[0] == 202


@pytest.mark.parametrize(
    "error",
    [
        {"code": "8523", "message": "m"},
        {"code": "BadRequest", "message": "m", "subCode": 8523},
        {"code": "BadRequest", "message": "m", "innererror": {"code": "8523"}},
        {"code": "BadRequest", "message": "m", "details": [{"code": "8523", "message": "d"}]},
    ],
    ids=["code", "subCode", "innererror", "details"],
)
def test_the_sub_code_is_read_wherever_the_error_body_puts_it(stack: Stack, error: dict) -> None:
    stack.emu.inject("answer", status=400, body={"error": error})
    result = handled(stack, stack.call(sip={"User-To-User": "Intent=support"}))
    assert result.outcome == Outcome.ALREADY_HANDLED


def test_a_refusal_without_a_known_sub_code_is_not_taken_for_already_handled_whatever_its_message(
    stack: Stack,
) -> None:
    body = {"error": {"code": "BadRequest", "message": "Incoming call already handled (the old marker)"}}
    stack.emu.inject("answer", status=400, body=body)
    result = handled(stack, stack.call(sip={"User-To-User": "Intent=support"}))
    assert result.outcome == Outcome.PERMANENT  # classified by status and sub-code, not by message text


# ---- stale events ------------------------------------------------------------------------------


def test_a_stale_event_is_logged_and_acknowledged_without_retry(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    event = stack.call(sip={"User-To-User": "Intent=support"})
    stack.emu.expire_context(event["data"]["incomingCallContext"])
    with caplog.at_level("WARNING", logger="handoff"):
        assert stack.post([event])[0] == 202
    assert one_action(stack, event) == []
    attempts = [a for a in stack.emu.actions if a.operation == "answer"]
    assert len(attempts) == 1 and attempts[0].status == 400  # tried once, not retried
    assert any("stale" in r.getMessage() and "IDX23010" in r.getMessage() for r in caplog.records)


# ---- transient errors --------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "retry_after"), [(429, 0.05), (500, None), (502, None), (503, None), (503, 0.05)])
def test_a_transient_error_is_retried_by_the_sdk_policy_and_the_call_answered_once(
    stack: Stack, status: int, retry_after: float | None
) -> None:
    event = stack.call(sip={"User-To-User": "Intent=support"})
    stack.emu.inject("answer", status=status, retry_after=retry_after, times=2)
    assert stack.post([event])[0] == 202
    attempts = [a for a in stack.emu.actions if a.operation == "answer"]
    assert [a.status for a in attempts] == [status, status, 200]
    assert len({a.request_id for a in attempts}) == 1  # one repeatable request, re-sent
    assert one_action(stack, event) == ["answer"]


def test_a_stalled_response_times_out_and_the_retry_is_executed_once(stack: Stack) -> None:
    stack.restart(HANDOFF_DEADLINE_SECONDS="3")  # 1 s per attempt
    event = stack.call(sip={"User-To-User": "Intent=support"})
    stack.emu.inject("answer", delay=1.5)
    result = handled(stack, event)
    assert result.outcome == Outcome.DONE
    assert stack.wait(lambda: len(stack.emu.replayed) == 1)  # the stalled original got the stored answer
    assert one_action(stack, event) == ["answer"]


def test_a_retry_after_past_the_deadline_gives_up_at_once_and_asks_event_grid_to_retry(stack: Stack) -> None:
    event = stack.call(sip={"User-To-User": "Intent=support"})
    stack.emu.inject("answer", status=429, retry_after=60)
    started = time.monotonic()
    status, _ = stack.post([event])
    assert time.monotonic() - started < 5  # well inside the 10 s deadline and the 30 s ring
    assert status == 500  # the host reports the failure: Event Grid redelivers while the call rings
    assert one_action(stack, event) == []
    # The redelivery acts: the failed attempt released its claim.
    assert stack.post([event])[0] == 202
    assert one_action(stack, event) == ["answer"]


def test_past_the_deadline_an_old_event_is_not_retried(stack: Stack) -> None:
    event = stack.call(sip={"User-To-User": "Intent=support"})
    old = datetime.now(UTC) - timedelta(seconds=25)
    event["eventTime"] = old.isoformat().replace("+00:00", "Z")
    stack.restart(HANDOFF_DEADLINE_SECONDS="1", forget_calls=False)
    stack.emu.inject("answer", status=503, times=50)
    result = handled(stack, event)
    assert result.outcome == Outcome.TRANSIENT and not result.retryable
    assert "a redelivery cannot help" in result.detail


# ---- permanent errors --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_a_permanent_error_is_logged_and_not_retried(stack: Stack, status: int) -> None:
    event = stack.call(sip={"User-To-User": "Intent=support"})
    stack.emu.inject("answer", status=status, body={"error": {"code": "Emulated", "message": f"emulated {status}"}})
    result = handled(stack, event)
    assert result.outcome == Outcome.PERMANENT and not result.retryable
    assert f"HTTP {status}" in result.detail
    assert len([a for a in stack.emu.actions if a.operation == "answer"]) == 1


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_every_public_uui_vector_through_the_function_ends_in_exactly_one_action(stack: Stack, vector: dict) -> None:
    event = stack.call(sip={"User-To-User": vector["header_value"]})
    assert stack.post([event])[0] == 202
    actions = one_action(stack, event)
    assert len(actions) == 1 and actions[0] in ("answer", "redirect", "reject")
    assert stack.host.errors == []


header_values = st.text(min_size=0, max_size=300) | st.from_regex(r"[0-9a-fA-F;=, \"%x]{0,80}(;(pd|encoding)=.{0,6})?")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    uui_value=header_values,
    header=st.sampled_from(["User-To-User", "userToUser", "X-User-To-User", "X-MS-Custom-Priority"]),
)
def test_generated_header_values_never_escape_and_each_call_gets_one_action(
    stack: Stack, uui_value: str, header: str
) -> None:
    event = stack.call(sip={header: uui_value})
    assert stack.post([event])[0] == 202
    assert len(one_action(stack, event)) == 1
    assert stack.host.errors == []


#: Any JSON value: what a field of an event could hold when something upstream goes wrong.
any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
#: Identifier models that are nearly right: what a new ACS kind or an odd SBC could produce.
odd_identifiers = st.fixed_dictionaries(
    {},
    optional={
        "kind": any_json | st.sampled_from(["phoneNumber", "communicationUser", "unknown", "somethingNew", ""]),
        "rawId": any_json | st.sampled_from(["", "4:", "4:+14255550100", "8:acs:x", "99:new"]),
        "phoneNumber": any_json | st.fixed_dictionaries({}, optional={"value": any_json}),
        "communicationUser": any_json | st.fixed_dictionaries({}, optional={"id": any_json}),
    },
)
odd_headers = st.dictionaries(
    st.sampled_from(["User-To-User", "userToUser", "X-MS-Custom-IsVip", "X-Intent", "X-MS-Other", "n"])
    | st.text(max_size=6),
    any_json | st.text(max_size=20),
    max_size=4,
)
odd_custom_context = any_json | st.fixed_dictionaries(
    {}, optional={"sipHeaders": any_json | odd_headers, "voipHeaders": any_json | odd_headers}
)
#: Every field of an IncomingCall's data but its incomingCallContext, replaced or removed.
odd_data = st.fixed_dictionaries(
    {},
    optional={
        "to": st.none() | any_json | odd_identifiers,
        "from": st.none() | any_json | odd_identifiers,
        "customContext": st.none() | odd_custom_context,
        "callerDisplayName": any_json,
        "correlationId": any_json,
        "serverCallId": any_json,
        "onBehalfOfCallee": any_json,
        "extra": any_json,
    },
)


def apply(data: dict, changes: dict) -> None:
    """``changes`` onto an event's data: None removes a field, anything else replaces it."""
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value


@pytest.fixture
def with_records(stack: Stack, azurite: Any) -> Stack:
    """The app as deployed: with its call records (a table of its own in the session's Azurite), so
    the record built after each action meets the same odd events."""
    stack.restart(HANDOFF_STORE=azurite.connection_string, HANDOFF_STORE_TABLE="t" + secrets.token_hex(6))
    return stack


def actions_on_the_ringing_call(stack: Stack, context: str) -> list[str]:
    """answer/redirect/reject requests the emulator executed on this incomingCallContext."""
    return [a.operation for a in stack.emu.executed() if (a.body or {}).get("incomingCallContext") == context]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=odd_data)
def test_every_call_with_a_usable_context_gets_exactly_one_action_whatever_else_is_in_its_data(
    with_records: Stack, changes: dict
) -> None:
    stack = with_records
    event = stack.call(sip={"User-To-User": "Intent=support"})
    apply(event["data"], changes)
    status, _ = stack.post([event])
    assert status == 202 and stack.host.errors == []
    assert len(actions_on_the_ringing_call(stack, event["data"]["incomingCallContext"])) == 1


schemas = st.sampled_from(["eventgrid", "cloudevents"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=schemas, changes=odd_data, event_id=any_json, subject=any_json, extra=any_json)
def test_whole_events_of_both_schemas_with_arbitrary_fields_get_exactly_one_action_and_nothing_escapes(
    with_records: Stack, schema: str, changes: dict, event_id: object, subject: object, extra: object
) -> None:
    """The worker hands the function an EventGridEvent or a CloudEvent whatever is in its fields
    (only a time it cannot parse stops it before our code: ACS always writes one)."""
    stack = with_records
    event = stack.call(sip={"User-To-User": "IsVip=1"})
    apply(event["data"], changes)
    context = event["data"]["incomingCallContext"]
    if schema == "eventgrid":
        item = func.EventGridEvent(
            id=event_id,  # type: ignore[arg-type]
            data=event["data"],
            topic=extra,  # type: ignore[arg-type]
            subject=subject,  # type: ignore[arg-type]
            event_type=event["eventType"],
            event_time=None,
            data_version=extra,  # type: ignore[arg-type]
        )
    else:
        item = func.CloudEvent(
            id=event_id,  # type: ignore[arg-type]
            source=extra,  # type: ignore[arg-type]
            type=event["eventType"],
            specversion="1.0",
            data=event["data"],
            time=None,
            subject=subject,  # type: ignore[arg-type]
        )
    stack.function("incoming_call")(item)  # raises only RetryableFailure, which this event cannot cause
    assert len(actions_on_the_ringing_call(stack, context)) == 1


def test_an_event_without_incoming_call_context_is_logged_and_acknowledged(stack: Stack) -> None:
    event = stack.call(sip={"User-To-User": "Intent=support"})
    del event["data"]["incomingCallContext"]
    result = handled(stack, event)
    assert result.outcome == Outcome.PERMANENT and "incomingCallContext" in result.detail
    assert stack.post([event])[0] == 202


def test_a_delivery_that_is_not_json_is_answered_400_by_the_host(stack: Stack) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        stack.host.event_grid_url(), data=b"{nope", method="POST", headers={"aeg-event-type": "Notification"}
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 400


@pytest.mark.parametrize(
    "stamp", ["2026-11-26T12:00:00Z", "2026-11-26T12:00:00.5542219Z", "2026-11-26T12:00:00.554221987+00:00"]
)
def test_event_times_with_any_number_of_fraction_digits_give_the_event_age(stamp: str) -> None:
    at = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC).timestamp()
    age = events.age_s(events.parse_time(stamp), at + 20.0)
    assert age is not None and 19.0 < age <= 20.0


def test_an_unreadable_event_time_gives_no_age_and_a_retry_is_allowed() -> None:
    assert events.age_s(events.parse_time("yesterday"), time.time()) is None


def test_a_malformed_item_in_a_batch_does_not_cost_the_other_calls(stack: Stack) -> None:
    good = stack.call(sip={"User-To-User": "IsVip=1"})
    status, _ = stack.post([5, {"id": "x"}, good])
    assert status == 500  # the two malformed items are failed invocations, reported by the host
    assert one_action(stack, good) == ["redirect"]
    with pytest.raises(events.EventError, match=r"event\[0\] is not a JSON object"):
        events.envelopes([5, {"id": "x"}, good])
