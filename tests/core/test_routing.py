"""Route-to-queue: every operator, first match wins, and every failure still reaches a queue."""

from __future__ import annotations

import copy
import textwrap
from decimal import Decimal

import pytest

from shared.core import config, events, routing
from tests.conftest import AVAYA_NUMBER, DATA, EXAMPLES, ROUTING_AVAYA, load_json

EG = load_json(DATA / "incoming-call.eventgrid-schema.json")
CE = load_json(DATA / "incoming-call.cloudevents-schema.json")


def call(to: str = "+14255550100", sip: dict[str, str] | None = None, base: dict = EG) -> events.IncomingCall:
    ev = copy.deepcopy(base)
    ev["data"]["to"] = {"kind": "phoneNumber", "rawId": f"4:{to}", "phoneNumber": {"value": to}}
    if sip is None:
        ev["data"].pop("customContext")
    else:
        ev["data"]["customContext"] = {"sipHeaders": sip}
    return events.parse_events(ev)[0]


def test_a_vip_flag_in_an_x_ms_custom_header_redirects_to_the_vip_queue(
    example_routing: config.Routing,
) -> None:
    d = routing.route(
        call(sip={"User-To-User": "Intent=billing;Priority=9", "X-MS-Custom-IsVip": "yes"}), example_routing
    )
    assert (d.action, d.queue, d.rule) == ("redirect", "vip", "vip-callers")
    assert d.target == "8:acs:11111111-2222-3333-4444-555555555555_00000001-0000-0000-0000-000000000001"
    assert d.context == {"Intent": "billing", "Priority": 9, "IsVip": True}


def test_first_match_wins_when_two_rules_hold(example_routing: config.Routing) -> None:
    # Both vip-callers and billing-priority hold; vip-callers comes first.
    d = routing.route(call(sip={"User-To-User": "IsVip=1;Intent=billing;Priority=5"}), example_routing)
    assert d.rule == "vip-callers"


def test_billing_with_priority_is_transferred_with_its_uui_format(example_routing: config.Routing) -> None:
    d = routing.route(call(sip={"User-To-User": "Intent=payments;Priority=5"}), example_routing)
    assert (d.action, d.queue, d.rule, d.target, d.uui_format) == (
        "transfer",
        "billing",
        "billing-priority",
        "+14255550123",
        "hex",
    )


def test_all_conditions_of_a_rule_must_hold(example_routing: config.Routing) -> None:
    d = routing.route(call(sip={"User-To-User": "Intent=payments;Priority=4"}), example_routing)
    assert (d.rule, d.queue, d.action) == ("fallback", "agents", "answer")
    assert d.callback_url == "https://agents.example.com/api/callbacks"


def test_a_pd4_positional_payload_fills_the_named_variables(example_routing: config.Routing) -> None:
    d = routing.route(call(sip={"User-To-User": "3530303131323233333434353b363738393b3939;pd=4"}), example_routing)
    assert d.context == {"AccountNumber": "500112233445", "Pin": "6789", "LanguageCode": 99}
    assert (d.rule, d.queue, d.action, d.reject_reason) == ("after-hours-line", "closed", "reject", "busy")
    assert d.sensitive == {"AccountNumber", "Pin"}
    assert d.uui_form == "hex;pd=4"


def test_no_context_at_all_goes_to_the_fallback_queue(example_routing: config.Routing) -> None:
    d = routing.route(call(sip=None), example_routing)
    assert (d.rule, d.queue, d.errors, d.uui_form) == ("fallback", "agents", (), "none")


def test_an_undecodable_uui_goes_to_the_invalid_context_queue_naming_the_error(
    example_routing: config.Routing,
) -> None:
    d = routing.route(call(sip={"User-To-User": "7369706G6579313D;encoding=hex"}), example_routing)
    assert (d.rule, d.queue, d.action) == ("invalid-context", "agents", "answer")
    assert [e.code for e in d.errors] == ["uui_non_hex_characters"]
    assert "User-to-User (User-To-User)" in d.errors[0].message
    assert d.uui_form == "invalid"


def test_a_value_that_does_not_fit_its_type_goes_to_invalid_context(example_routing: config.Routing) -> None:
    d = routing.route(call(sip={"User-To-User": "Intent=billing;Priority=high"}), example_routing)
    assert d.rule == "invalid-context"
    assert [(e.code, e.variable) for e in d.errors] == [("type_mismatch", "Priority")]
    assert "expects a number" in d.errors[0].message and "'high' (4 characters)" in d.errors[0].message
    assert d.context == {"Intent": "billing"}  # what was valid still travels to the agent


def test_a_sensitive_value_that_does_not_fit_is_named_by_length_not_value() -> None:
    table = config.parse(
        textwrap.dedent(
            """
            queues: {q: {action: reject}}
            workstreams:
              - name: w
                numbers: ["+14255550100"]
                context_variables: [{name: Pin, type: number, sensitive: true}]
                fallback_queue: q
            """
        )
    )
    d = routing.route(call(sip={"User-To-User": "Pin=12a4"}), table)
    assert d.rule == "invalid-context"
    assert "12a4" not in d.errors[0].message
    assert "a sensitive value of 4 characters" in d.errors[0].message


def test_undeclared_keys_are_warnings_and_not_used(example_routing: config.Routing) -> None:
    d = routing.route(call(sip={"User-To-User": "Intent=billing;Color=blue"}), example_routing)
    assert d.rule == "fallback" and "Color" not in d.context
    assert [(w.code, w.variable) for w in d.warnings] == [("undeclared_key", "Color")]


def test_a_header_repeating_a_uui_variable_is_a_warning_and_the_uui_wins(
    example_routing: config.Routing,
) -> None:
    d = routing.route(call(sip={"User-To-User": "Priority=7", "X-Priority": "1"}), example_routing)
    assert d.context["Priority"] == 7
    assert any(w.code == "duplicate_variable" for w in d.warnings)


def test_extra_positional_values_are_a_warning(example_routing: config.Routing) -> None:
    d = routing.route(call(sip={"User-To-User": "1;2;3;4"}), example_routing)
    assert d.context == {"AccountNumber": "1", "Pin": "2", "LanguageCode": 3}
    assert [w.code for w in d.warnings] == ["extra_positional"]


def test_an_unknown_number_without_default_queue_is_rejected_with_an_error(
    example_routing: config.Routing,
) -> None:
    d = routing.route(call(to="+14255550199", sip={"User-To-User": "a=b"}), example_routing)
    assert (d.action, d.queue, d.rule, d.workstream, d.reject_reason) == (
        "reject",
        None,
        "unknown-number",
        None,
        "none",
    )
    assert "+14255550199 is not owned by any workstream" in d.errors[0].message


def test_an_unknown_number_goes_to_the_default_queue_when_configured(app_routing: config.Routing) -> None:
    d = routing.route(call(to="+14255550199", sip={"User-To-User": "a=b"}), app_routing)
    assert (d.action, d.queue, d.rule) == ("answer", "agents", "unknown-number")
    assert d.uui is not None and d.uui.pairs == {"a": "b"}  # decoded for the record, not mapped


def unreadable(change: dict, sip: dict[str, str] | None = None) -> events.IncomingCall:
    """A call to a retail number whose event has ``change`` applied to its data (None removes a field)."""
    ev = copy.deepcopy(EG)
    ev["data"]["to"] = {"kind": "phoneNumber", "rawId": "4:+14255550100", "phoneNumber": {"value": "+14255550100"}}
    ev["data"]["customContext"] = {"sipHeaders": sip or {"User-To-User": "IsVip=1"}}
    for key, value in change.items():
        if value is None:
            ev["data"].pop(key, None)
        else:
            ev["data"][key] = value
    return events.parse_events(ev)[0]


@pytest.mark.parametrize("to", [None, {}, {"kind": "phoneNumber"}, "+14255550100", 7])
def test_an_unreadable_called_party_goes_to_the_default_queue(to: object, app_routing: config.Routing) -> None:
    d = routing.route(unreadable({"to": to}), app_routing)
    assert (d.action, d.queue, d.rule, d.workstream) == ("answer", "agents", "unknown-number", None)
    assert any("data.to" in w.message for w in d.warnings)


def test_an_unreadable_called_party_without_a_default_queue_is_rejected_not_left_ringing(
    example_routing: config.Routing,
) -> None:
    d = routing.route(unreadable({"to": {"kind": "phoneNumber"}}), example_routing)
    assert (d.action, d.reject_reason, d.rule) == ("reject", "none", "unknown-number")
    assert "the called party (data.to) cannot be read" in d.errors[0].message


@pytest.mark.parametrize("caller", [None, {}, {"kind": "x"}, [], "anonymous", 0])
def test_an_odd_or_missing_caller_still_routes_by_the_context(caller: object, example_routing: config.Routing) -> None:
    d = routing.route(unreadable({"from": caller}), example_routing)
    assert (d.action, d.queue, d.rule) == ("redirect", "vip", "vip-callers")
    assert any(w.code == "unreadable_field" and "data.from" in w.message for w in d.warnings)


@pytest.mark.parametrize(
    ("custom", "field"),
    [
        ("nope", "data.customContext"),
        ({"sipHeaders": "User-To-User: IsVip=1"}, "data.customContext.sipHeaders"),
        ({"sipHeaders": {"User-To-User": ["IsVip=1"]}}, "data.customContext.sipHeaders['User-To-User']"),
    ],
)
def test_a_custom_context_that_is_not_headers_gives_no_context_and_the_fallback_queue(
    custom: object, field: str, example_routing: config.Routing
) -> None:
    d = routing.route(unreadable({"customContext": custom}), example_routing)
    assert (d.action, d.queue, d.rule) == ("answer", "agents", "fallback")
    assert d.context == {} and any(field in w.message for w in d.warnings)


@pytest.mark.parametrize("sample", [EG, CE], ids=["eventgrid", "cloudevents"])
def test_the_public_samples_route_to_a_defined_outcome(sample: dict, example_routing: config.Routing) -> None:
    # The samples call an ACS user placeholder no workstream owns, and carry an odd-length hex UUI.
    [c] = events.parse_events(sample)
    d = routing.route(c, example_routing)
    assert (d.action, d.rule) == ("reject", "unknown-number")
    assert d.uui_error is not None and d.uui_error.kind == "odd_length_hex"


@pytest.mark.parametrize("entry", load_json(EXAMPLES / "calls" / "manifest.json"), ids=lambda e: e["file"])
def test_every_bundled_transferred_call_gets_its_expected_queue(entry: dict, app_routing: config.Routing) -> None:
    [c] = events.parse_events((EXAMPLES / "calls" / entry["file"]).read_bytes())
    d = routing.route(c, app_routing)
    assert {"action": d.action, "queue": d.queue, "rule": d.rule} == entry["expect"]


OPERATOR_TABLE = """
queues: {hit: {action: reject, reason: busy}, miss: {action: reject}}
workstreams:
  - name: w
    numbers: ["+14255550100"]
    context_variables:
      - {name: T, type: text}
      - {name: N, type: number}
      - {name: B, type: boolean}
    rules:
      - {name: r, when: {%s}, queue: hit}
    fallback_queue: miss
"""


@pytest.mark.parametrize(
    ("condition", "uui_value", "matches"),
    [
        ("T: {eq: Gold}", "T=Gold", True),
        ("T: {eq: Gold}", "T=gold", False),
        ("T: {eq: Gold, ignore_case: true}", "T=gOLD", True),
        ("T: {ne: Gold}", "T=Silver", True),
        ("T: {ne: Gold}", "T=Gold", False),
        ("T: {in: [a, b]}", "T=b", True),
        ("T: {in: [a, b]}", "T=c", False),
        ("T: {in: [A, B], ignore_case: true}", "T=b", True),
        ("T: {not_in: [a, b]}", "T=c", True),
        ("T: {not_in: [a, b]}", "T=a", False),
        ("N: {lt: 5}", "N=4", True),
        ("N: {lt: 5}", "N=5", False),
        ("N: {lte: 5}", "N=5", True),
        ("N: {lte: 5}", "N=5.01", False),
        ("N: {gt: 5}", "N=5.5", True),
        ("N: {gt: 5}", "N=5", False),
        ("N: {gte: 5}", "N=5", True),
        ("N: {gte: 5}", "N=-7", False),
        ("N: {eq: 5}", "N=5.0", True),
        ("N: {in: [1, 2.5]}", "N=2.50", True),
        ("B: {eq: true}", "B=yes", True),
        ("B: {eq: true}", "B=0", False),
        ("B: {ne: true}", "B=false", True),
        ("T: {exists: true}", "T=x", True),
        ("T: {exists: true}", "N=1", False),
        ("T: {exists: false}", "N=1", True),
        ("T: {exists: false}", "T=", False),
        ("T: {matches: '^[0-9]{3}-'}", "T=123-x", True),
        ("T: {matches: '^[0-9]{3}-'}", "T=12-x", False),
        ("T: {matches: 'gold', ignore_case: true}", "T=GOLDEN", True),
        ("N: {gte: 1, lte: 3}", "N=2", True),
        ("N: {gte: 1, lte: 3}", "N=4", False),
        ("N: {eq: 1}", "T=1", False),  # a condition on a variable that did not arrive does not hold
    ],
)
def test_each_operator(condition: str, uui_value: str, matches: bool) -> None:
    table = config.parse(OPERATOR_TABLE % condition)
    d = routing.route(call(sip={"User-To-User": uui_value}), table)
    assert d.errors == ()
    assert d.queue == ("hit" if matches else "miss")


@pytest.mark.parametrize("pattern", ["^(a+)+$", "(a|aa)+$", "(.*a){20}$"], ids=["nested", "alternation", "repeat"])
def test_a_hostile_value_against_a_catastrophic_pattern_is_routed_in_linear_time(pattern: str) -> None:
    # With Python's backtracking re, ^(a+)+$ on 31 characters took 44 s, so this one would not end
    # before the test's timeout; `make bench ARGS=core` measures the µs it takes now.
    # The workstream accepts UUI values up to 512 characters, so the value itself is 256.
    text = (
        OPERATOR_TABLE.replace("    rules:\n", "    uui: {max_length: 512}\n    rules:\n")
        % f"T: {{matches: '{pattern}'}}"
    )
    table = config.parse(text)
    hostile = "a" * 255 + "!"
    d = routing.route(call(sip={"User-To-User": f"T={hostile}"}), table)
    assert (d.context, d.rule, d.queue) == ({"T": hostile}, "fallback", "miss")  # the rule was tested, no match
    assert routing.route(call(sip={"User-To-User": "T=" + "a" * 256}), table).queue == "hit"


def test_numbers_keep_their_decimal_value() -> None:
    table = config.parse(OPERATOR_TABLE % "N: {eq: 1}")
    d = routing.route(call(sip={"User-To-User": "N=0.10"}), table)
    assert d.context["N"] == Decimal("0.10")


@pytest.mark.parametrize("bad", ["N=NaN", "N=Infinity", "N=1e", "N=", "B=maybe", "N=" + "9" * 65])
def test_values_outside_their_type_are_errors(bad: str) -> None:
    table = config.parse(OPERATOR_TABLE % "N: {eq: 1}")
    d = routing.route(call(sip={"User-To-User": bad}), table)
    assert d.rule == "invalid-context" and d.errors[0].code == "type_mismatch"


# --- A workstream behind an Avaya trunk with shared UUI -------------------------------------------

AUDIOCODES = "00FA080019001038F725B3;encoding=hex"  # the AudioCodes manual's header: UCID 00025000160955721139


@pytest.fixture(scope="module")
def avaya_routing() -> config.Routing:
    return config.parse(ROUTING_AVAYA)


def test_the_ucid_of_an_avaya_shared_header_becomes_a_context_variable_rules_test(
    avaya_routing: config.Routing,
) -> None:
    d = routing.route(call(to=AVAYA_NUMBER, sip={"User-To-User": AUDIOCODES}), avaya_routing)
    assert (d.action, d.queue, d.rule, d.uui_format) == ("transfer", "avaya-agents", "tracked-call", "avaya-shared")
    assert d.context_text == {"UCID": "00025000160955721139"}
    assert (d.uui_form, d.warnings, d.errors) == ("avaya-shared", (), ())


def test_a_named_item_fills_its_variable_and_an_unnamed_one_is_an_undeclared_key(
    avaya_routing: config.Routing,
) -> None:
    # The AudioCodes UCID, then C8 (named UserData) with ACCT=42, then D0 with one byte.
    value = "00FA080019001038F725B3" + "C807414343543D3432" + "D00131" + ";encoding=hex"
    d = routing.route(call(to=AVAYA_NUMBER, sip={"User-To-User": value}), avaya_routing)
    assert d.context_text == {"UCID": "00025000160955721139", "UserData": "ACCT=42"}
    assert [(w.code, w.variable) for w in d.warnings] == [("undeclared_key", "ItemD0")]


def test_a_truncated_shared_uui_goes_to_the_invalid_context_queue_naming_its_kind(
    avaya_routing: config.Routing,
) -> None:
    d = routing.route(call(to=AVAYA_NUMBER, sip={"User-To-User": "00FA080019001038F7;encoding=hex"}), avaya_routing)
    assert (d.queue, d.rule, d.uui_form) == ("review", "invalid-context", "invalid")
    assert [e.code for e in d.errors] == ["uui_truncated_item"]


def test_a_trunk_in_service_provider_mode_still_delivers_its_context_with_a_warning(
    avaya_routing: config.Routing,
) -> None:
    d = routing.route(call(to=AVAYA_NUMBER, sip={"User-To-User": "Intent=billing"}), avaya_routing)
    assert (d.queue, d.rule, d.uui_form, d.errors) == ("agents", "fallback", "plain", ())
    assert d.context_text == {"Intent": "billing"}
    assert any(w.code == "uui_warning" and "service-provider mode" in w.message for w in d.warnings)


CALLERS = """
queues:
  vip: {action: reject, reason: busy}
  agents: {action: reject}
workstreams:
  - name: w
    numbers: ["+14255550100", "8:acs:resource_user"]
    context_variables: [{name: Intent}]
    rules:
      - {name: vip-callers, when: {caller: {in: ["+12065550777", "8:acs:resource_vip"]}}, queue: vip}
      - {name: second-line, when: {called: {eq: "8:acs:resource_user"}}, queue: vip}
    fallback_queue: agents
"""


def call_between(caller: object, to: str = "+14255550100") -> events.IncomingCall:
    ev = copy.deepcopy(EG)
    ev["data"]["to"] = {"rawId": to} if not to.startswith("+") else {"phoneNumber": {"value": to}}
    if caller is None:
        ev["data"].pop("from", None)
    else:
        ev["data"]["from"] = caller
    ev["data"].pop("customContext", None)
    return events.parse_events(ev)[0]


@pytest.mark.parametrize(
    ("caller", "to", "rule"),
    [
        (
            {"kind": "phoneNumber", "rawId": "4:+12065550777", "phoneNumber": {"value": "+12065550777"}},
            "+14255550100",
            "vip-callers",
        ),
        ({"rawId": "4:+12065550777"}, "+14255550100", "vip-callers"),  # the E.164 number of a raw id
        ({"kind": "communicationUser", "rawId": "8:acs:resource_vip"}, "+14255550100", "vip-callers"),
        ({"phoneNumber": {"value": "+12065550000"}}, "+14255550100", "fallback"),
        ({"phoneNumber": {"value": "+12065550000"}}, "8:acs:resource_user", "second-line"),
        (None, "+14255550100", "fallback"),  # no caller: rules testing it do not match
        ({}, "+14255550100", "fallback"),  # unreadable caller: the same, and never an error
        ("anonymous", "+14255550100", "fallback"),
    ],
)
def test_rules_on_the_caller_and_the_called_number(caller: object, to: str, rule: str) -> None:
    d = routing.route(call_between(caller, to), config.parse(CALLERS))
    assert d.rule == rule and d.errors == ()
    assert "caller" not in d.context and "called" not in d.context_text  # not forwarded as context
