"""The function app on the local stack: real Event Grid deliveries, real SDK, emulated ACS."""

from __future__ import annotations

import copy
import hashlib
import io
import json

import pytest

from local.stack import Stack
from shared import app, cli
from shared.core.values import convert
from tests.conftest import DATA, EXAMPLES, load_json

REST_ANSWER = load_json(DATA / "rest-answer-call.example.json")["parameters"]["answerCallRequest"]
REST_REDIRECT = load_json(DATA / "rest-redirect-call.example.json")["parameters"]["redirectCallRequest"]
REST_TRANSFER = load_json(DATA / "rest-transfer-to-participant.example.json")["parameters"]
CAPTURE = {c["case"]: c for c in load_json(DATA / "callautomation-sdk-1.6.0-wire-capture.json")["cases"]}


def captured_body(case: str) -> dict:
    return CAPTURE[case]["requests"][0]["body"]


def test_an_answer_queue_is_answered_with_its_callback_url_and_the_context(stack: Stack) -> None:
    event = stack.call(sip={"User-To-User": "Intent=support;Priority=2;AccountNumber=500112233445"})
    assert stack.post([event])[0] == 202
    [answer] = stack.actions_for(event)
    assert answer.operation == "answer"
    # Same request shape as the REST example and the SDK capture: the same keys, nothing else.
    assert (
        set(answer.body)
        == set(REST_ANSWER) | {"operationContext"}
        == set(captured_body("answer_call(callback_url, operation_context)"))
    )
    assert answer.body["callbackUri"] == "https://agents.example.com/api/callbacks"
    assert answer.path == "/calling/callConnections:answer"
    context = json.loads(answer.body["operationContext"])
    mac = context.pop("mac")
    # The agents' app gets the non-sensitive variables, each as the IVR sent it; the account number
    # (sensitive) does not travel to another app's callback URL, not even sealed.
    assert context == {
        "queue": "agents",
        "workstream": "retail-ivr",
        "correlationId": event["data"]["correlationId"],
        "context": {"Intent": "support", "Priority": "2"},
        # The leg: with the correlation id, where the call's record is found (call_record.py).
        "leg": hashlib.sha256(event["data"]["incomingCallContext"].encode()).hexdigest()[:32],
    }
    assert "500112233445" not in answer.body["operationContext"]
    assert app.current().actions.sealer is not None
    assert app.current().actions.sealer.verify(context, mac) == 0
    # The CallConnected callback for another host is recorded by the emulator, never sent.
    assert stack.wait(lambda: any(d.url.startswith("https://agents.example.com") for d in stack.emu.callbacks_recorded))


def test_a_redirect_queue_redirects_to_its_target_identifier(stack: Stack) -> None:
    event = stack.call(sip={"User-To-User": "IsVip=true"})
    assert stack.post([event])[0] == 202
    [redirect] = stack.actions_for(event)
    assert redirect.operation == "redirect"
    assert set(redirect.body) == set(REST_REDIRECT) == set(captured_body("redirect_call(CommunicationUserIdentifier)"))
    raw = "8:acs:11111111-2222-3333-4444-555555555555_00000001-0000-0000-0000-000000000001"
    assert redirect.body["target"] == {"rawId": raw, "communicationUser": {"id": raw}}


def test_a_reject_queue_rejects_with_its_reason(stack: Stack) -> None:
    event = stack.call(to="+14255550101", sip={"User-To-User": "3530303131323233333434353b363738393b3939;pd=4"})
    assert stack.post([event])[0] == 202
    [reject] = stack.actions_for(event)
    assert reject.operation == "reject"
    assert set(reject.body) == set(captured_body("reject_call(call_reject_reason='busy')"))
    assert reject.body["callRejectReason"] == "busy"


def test_a_transfer_queue_answers_then_transfers_with_the_context_in_the_queues_format(stack: Stack) -> None:
    event = stack.call(sip={"User-To-User": "Intent=billing;Priority=7", "X-MS-Custom-IsVip": "no"})
    assert stack.post([event])[0] == 202
    assert stack.wait(lambda: [a.operation for a in stack.actions_for(event)] == ["answer", "transfer"])
    answer, transfer = stack.actions_for(event)
    assert answer.body["callbackUri"] == stack.env["HANDOFF_CALLBACK_URL"]  # this app's own callbacks
    assert transfer.path.endswith(":transferToParticipant")
    assert set(transfer.body) == set(
        captured_body("transfer_call_to_participant(PSTN, sip_headers, operation_context)")
    ) - {"sourceCallerIdNumber"}
    assert set(REST_TRANSFER["transferToParticipantRequest"]) - {"transferee"} <= set(transfer.body)
    assert transfer.body["targetParticipant"] == {"rawId": "4:+14255550123", "phoneNumber": {"value": "+14255550123"}}
    sip = transfer.body["customCallingContext"]["sipHeaders"]
    assert sip["User-To-User"].endswith(";encoding=hex")  # billing's uui_format: hex
    # Decoded back with `handoff decode`, the headers give the original typed context.
    out = io.StringIO()
    assert cli.main(["decode", sip["User-To-User"], "--json"], out=out, err=io.StringIO()) == 0
    pairs = json.loads(out.getvalue())["pairs"]
    # The same text the IVR sent ("no", not false), in the headers and in the operation context...
    assert pairs == {"Intent": "billing", "Priority": "7", "IsVip": "no"}
    assert pairs == json.loads(answer.body["operationContext"])["context"]
    # ...and typed as the workstream declares it.
    declared = app.current().workstreams["retail-ivr"].variables
    typed = {name: convert(declared[name].type, text) for name, text in pairs.items()}
    assert typed == {"Priority": 7, "Intent": "billing", "IsVip": False}
    # Both callbacks reached this app's /api/callbacks with a valid JWT and were accepted.
    assert stack.wait(
        lambda: any(
            "Microsoft.Communication.CallTransferAccepted" in d.types and d.status == 200
            for d in stack.emu.callbacks_sent
        )
    )
    assert any("Microsoft.Communication.CallConnected" in d.types and d.status == 200 for d in stack.emu.callbacks_sent)


def test_both_event_schemas_are_handled_alike(stack: Stack) -> None:
    eg = stack.call(sip={"User-To-User": "IsVip=1"})
    ce_source = stack.call(sip={"User-To-User": "IsVip=1"})
    d = ce_source
    ce = {
        "id": d["id"],
        "source": d["topic"],
        "subject": d["subject"],
        "type": d["eventType"],
        "specversion": "1.0",
        "time": d["eventTime"],
        "data": d["data"],
    }
    assert stack.post([eg])[0] == 202 and stack.post([ce])[0] == 202
    assert [a.operation for a in stack.actions_for(eg)] == ["redirect"]
    assert [a.operation for a in stack.actions_for(ce)] == ["redirect"]


def test_a_batch_of_several_events_gets_one_action_each(stack: Stack) -> None:
    batch = [
        stack.call(sip={"User-To-User": "IsVip=1"}),
        stack.call(sip={"User-To-User": "Intent=support"}),
        stack.call(to="+14255550101", sip={"User-To-User": "1;2;99"}),
    ]
    assert stack.post(batch)[0] == 202
    assert [[a.operation for a in stack.actions_for(e)] for e in batch] == [["redirect"], ["answer"], ["reject"]]


def test_the_subscription_validation_handshake_echoes_the_code(stack: Stack) -> None:
    validation = load_json(DATA / "eventgrid-subscription-validation.json")
    status, body = stack.post(validation, kind="SubscriptionValidation")
    assert status == 200
    assert json.loads(body) == load_json(DATA / "eventgrid-subscription-validation.response.json")
    assert stack.emu.actions == []


def test_a_call_without_custom_context_goes_to_the_fallback_queue(stack: Stack) -> None:
    event = stack.call(sip=None)
    assert "customContext" not in event["data"]
    assert stack.post([event])[0] == 202
    [answer] = stack.actions_for(event)
    assert json.loads(answer.body["operationContext"])["context"] == {}


@pytest.mark.parametrize("entry", load_json(EXAMPLES / "calls" / "manifest.json"), ids=lambda e: e["file"])
def test_every_bundled_call_gets_its_expected_action_from_the_emulator(entry: dict, stack: Stack) -> None:
    [template] = load_json(EXAMPLES / "calls" / entry["file"])
    event = copy.deepcopy(template)
    fresh = stack.call()  # a context the emulator knows
    event["data"]["incomingCallContext"] = fresh["data"]["incomingCallContext"]
    assert stack.post([event])[0] == 202
    wanted = {"transfer": ["answer", "transfer"]}.get(entry["expect"]["action"], [entry["expect"]["action"]])
    assert stack.wait(lambda: [a.operation for a in stack.actions_for(event)] == wanted)


@pytest.mark.parametrize(
    ("target", "model"),
    [
        ("+14255550123", {"rawId": "4:+14255550123", "phoneNumber": {"value": "+14255550123"}}),
        (
            "8:acs:11111111-2222-3333-4444-555555555555_00000001-0000-0000-0000-000000000002",
            {
                "rawId": "8:acs:11111111-2222-3333-4444-555555555555_00000001-0000-0000-0000-000000000002",
                "communicationUser": {
                    "id": "8:acs:11111111-2222-3333-4444-555555555555_00000001-0000-0000-0000-000000000002"
                },
            },
        ),
        (
            "8:orgid:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
            {"microsoftTeamsUser": {"userId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}},
        ),
        (
            "28:orgid:ffffffff-1111-2222-3333-444444444444",
            {"microsoftTeamsApp": {"appId": "ffffffff-1111-2222-3333-444444444444"}},
        ),
    ],
    ids=["e164", "acs-user", "teams-user", "teams-voice-app"],
)
def test_redirect_targets_of_every_kind_reach_the_wire(target: str, model: dict, stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    routing = (
        (EXAMPLES / "routing.example.yaml")
        .read_text()
        .replace("8:acs:11111111-2222-3333-4444-555555555555_00000001-0000-0000-0000-000000000001", target)
    )
    path = tmp_path / "routing.yaml"
    path.write_text(routing)
    stack.restart(HANDOFF_CONFIG=str(path))
    event = stack.call(sip={"User-To-User": "IsVip=1"})
    assert stack.post([event])[0] == 202
    [redirect] = stack.actions_for(event)
    for key, value in model.items():
        sent = redirect.body["target"][key]
        if isinstance(value, dict):
            assert {k: sent.get(k) for k in value} == value
        else:
            assert sent == value
    expected_raw_id = "4:" + target if target.startswith("+") else target
    assert redirect.body["target"]["rawId"] == expected_raw_id
