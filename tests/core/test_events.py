"""IncomingCall events of both schemas become one typed model."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest

from shared.core import acs, events
from tests.conftest import DATA, EXAMPLES, load_json

EG = load_json(DATA / "incoming-call.eventgrid-schema.json")
CE = load_json(DATA / "incoming-call.cloudevents-schema.json")


def with_data(event: dict, **changes: object) -> dict:
    ev = copy.deepcopy(event)
    ev["data"].update(changes)
    return ev


def test_the_published_event_grid_sample_parses_with_its_headers() -> None:
    [call] = events.parse_events(EG)
    assert call.event_schema == "eventgrid"
    assert call.event_id == EG["id"]
    assert call.incoming_call_context == EG["data"]["incomingCallContext"]
    assert call.correlation_id == "correlationId"
    assert call.uui == EG["data"]["customContext"]["sipHeaders"]["userToUser"]
    assert call.uui_header == "userToUser"
    names = {(h.name, h.value, h.source) for h in call.custom_headers}
    assert ("myheader1", "35567842", "sip") in names
    assert ("myheader2", "customsipheadervalue", "sip") in names
    assert ("customHeader", "customValue", "voip") in names


def test_the_published_cloudevents_sample_parses_the_same_way() -> None:
    [call] = events.parse_events(json.dumps([CE]).encode())
    assert call.event_schema == "cloudevents"
    assert call.event_time == datetime(2023, 4, 4, 17, 18, 42, 554221, tzinfo=UTC)  # CE["time"], 7 digits
    assert call.called.address == CE["data"]["to"]["rawId"]
    assert {h.name for h in call.custom_headers} == {"myhader1", "myhader2", "customHeader"}


def test_an_array_of_several_events_gives_one_call_each() -> None:
    second = copy.deepcopy(EG)
    second["id"] = "another"
    calls = events.parse_events([EG, second, CE])
    assert [c.event_id for c in calls] == [EG["id"], "another", CE["id"]]


@pytest.mark.parametrize("kind", ["phoneNumber", "PhoneNumber", "PHONENUMBER"])
def test_a_pstn_called_number_is_read_whatever_the_kind_casing(kind: str) -> None:
    ev = with_data(EG, to={"kind": kind, "rawId": "4:+14255550100", "phoneNumber": {"value": "+14255550100"}})
    [call] = events.parse_events(ev)
    assert call.called.address == "+14255550100"
    assert call.called.is_phone_number


def test_a_2022_style_identifier_with_capitalised_members_is_read() -> None:
    ev = with_data(EG, to={"Kind": "PhoneNumber", "RawId": "4:+14255550100", "PhoneNumber": {"Value": "+14255550100"}})
    [call] = events.parse_events(ev)
    assert call.called.address == "+14255550100"


def test_a_raw_id_alone_gives_the_e164_number() -> None:
    [call] = events.parse_events(with_data(EG, to={"rawId": "4:+14255550101"}))
    assert call.called.address == "+14255550101"
    assert call.called.raw_id == "4:+14255550101"


@pytest.mark.parametrize("key", ["userToUser", "User-To-User", "user-To-User", "User-to-User", "USER-TO-USER"])
def test_the_uui_header_is_found_under_any_spelling(key: str) -> None:
    [call] = events.parse_events(with_data(EG, customContext={"sipHeaders": {key: "a=b"}}))
    assert call.uui == "a=b"
    assert call.uui_header == key


def test_x_user_to_user_is_only_a_fallback() -> None:
    both = {"X-User-To-User": "fallback=1", "User-To-User": "primary=1"}
    [call] = events.parse_events(with_data(EG, customContext={"sipHeaders": both}))
    assert call.uui == "primary=1"
    [call] = events.parse_events(with_data(EG, customContext={"sipHeaders": {"X-User-To-User": "fallback=1"}}))
    assert call.uui == "fallback=1"
    assert call.custom_headers == ()  # the UUI fallback is not also a custom variable


def test_custom_headers_keep_their_case_and_reserved_x_ms_names_are_not_context() -> None:
    sip = {"X-MS-Custom-CaseId": "42", "x-Intent": "billing", "X-MS-SBC-Host": "sbc1", "Contact": "x"}
    [call] = events.parse_events(with_data(EG, customContext={"sipHeaders": sip}))
    assert {(h.name, h.header) for h in call.custom_headers} == {
        ("CaseId", "X-MS-Custom-CaseId"),
        ("Intent", "x-Intent"),
    }


def test_a_missing_custom_context_is_no_context_not_an_error() -> None:
    ev = copy.deepcopy(EG)
    del ev["data"]["customContext"]
    [call] = events.parse_events(ev)
    assert call.uui is None and call.custom_headers == () and not call.has_custom_context


def test_non_string_header_values_are_dropped_and_the_rest_kept() -> None:
    sip = {"User-To-User": "a=b", "X-MS-Custom-N": 5}
    [call] = events.parse_events(with_data(EG, customContext={"sipHeaders": sip}))
    assert call.uui == "a=b" and call.custom_headers == ()
    assert call.warnings == ("data.customContext.sipHeaders['X-MS-Custom-N'] is not text; that header is not read",)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e["data"].pop("incomingCallContext"), "incomingCallContext"),
        (lambda e: e["data"].update(incomingCallContext=" "), "incomingCallContext"),
        (lambda e: e.pop("eventType"), "neither eventType"),
        (lambda e: e.update(id=""), ".id"),
        (lambda e: e.update(data="nope"), "data must be an object"),
    ],
)
def test_only_an_event_nothing_can_act_on_is_an_event_error_naming_the_field(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    ev = copy.deepcopy(EG)
    mutate(ev)
    with pytest.raises(events.EventError, match=message):
        events.parse_events(ev)


@pytest.mark.parametrize(
    ("changes", "warning"),
    [
        ({"to": None}, "data.to is missing"),
        ({"to": {"kind": "phoneNumber"}}, "data.to has no phoneNumber.value, rawId or communicationUser.id"),
        ({"to": "+14255550100"}, "data.to is not an identifier object"),
        ({"from": None}, "data.from is missing"),
        ({"from": {}}, "data.from has no phoneNumber.value, rawId or communicationUser.id"),
        ({"from": []}, "data.from is not an identifier object"),
        ({"customContext": "x"}, "data.customContext is not an object"),
        ({"customContext": {"sipHeaders": ["x"]}}, "data.customContext.sipHeaders is not an object"),
        ({"customContext": {"voipHeaders": 7}}, "data.customContext.voipHeaders is not an object"),
    ],
)
def test_an_unreadable_field_is_a_warning_naming_it_and_the_call_is_kept(changes: dict, warning: str) -> None:
    ev = copy.deepcopy(EG)
    for key, value in changes.items():
        if value is None:
            ev["data"].pop(key, None)
        else:
            ev["data"][key] = value
    [call] = events.parse_events(ev)
    assert call.incoming_call_context == EG["data"]["incomingCallContext"]
    assert any(w.startswith(warning) for w in call.warnings), call.warnings


def test_a_caller_of_an_unknown_kind_or_without_raw_id_is_still_read() -> None:
    [odd] = events.parse_events(with_data(EG, **{"from": {"kind": "somethingNew", "rawId": "99:abc"}}))
    assert odd.caller is not None and (odd.caller.kind, odd.caller.address) == ("somethingnew", "99:abc")
    [bare] = events.parse_events(with_data(EG, **{"from": {"phoneNumber": {"value": "+14255550177"}}}))
    assert bare.caller is not None and bare.caller.raw_id == "4:+14255550177" and bare.warnings == ()


def test_two_deliveries_are_the_same_call_by_incoming_call_context_not_by_correlation_id() -> None:
    [call] = events.parse_events(EG)
    [redelivered] = events.parse_events(EG)
    [same_context] = events.parse_events({**EG, "id": "another-event"})
    [new_leg] = events.parse_events(with_data({**EG, "id": "a-third"}, incomingCallContext="another-context"))
    assert set(call.delivery_keys) == set(redelivered.delivery_keys)
    assert set(call.delivery_keys) == set(same_context.delivery_keys)
    assert new_leg.correlation_id == call.correlation_id
    assert not set(call.delivery_keys) & set(new_leg.delivery_keys)


def test_a_body_that_is_not_json_is_an_event_error() -> None:
    with pytest.raises(events.EventError, match="not JSON"):
        events.parse_events(b"{nope")


def test_a_non_incoming_call_event_is_refused_by_parse_events() -> None:
    validation = load_json(DATA / "eventgrid-subscription-validation.json")
    with pytest.raises(events.EventError, match="SubscriptionValidationEvent"):
        events.parse_events(validation)
    [env] = events.envelopes(validation)
    assert env.event_type == acs.SUBSCRIPTION_VALIDATION_EVENT


def test_every_bundled_transferred_call_parses() -> None:
    for entry in load_json(EXAMPLES / "calls" / "manifest.json"):
        calls = events.parse_events((EXAMPLES / "calls" / entry["file"]).read_bytes())
        assert len(calls) == 1 and calls[0].called.is_phone_number


def test_event_type_names_are_the_ones_the_event_grid_sdk_publishes() -> None:
    from azure.eventgrid import SystemEventNames

    assert SystemEventNames.AcsIncomingCallEventName == acs.INCOMING_CALL_EVENT
    assert SystemEventNames.EventGridSubscriptionValidationEventName == acs.SUBSCRIPTION_VALIDATION_EVENT
