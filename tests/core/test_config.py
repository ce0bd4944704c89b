"""The routing configuration: the example loads as it stands, and every mistake is named."""

from __future__ import annotations

import textwrap
from decimal import Decimal

import pytest

from shared.core import config
from tests.conftest import EXAMPLES, ROOT, ROUTING_AVAYA

BASE = """
queues:
  agents: {action: answer, callback_url: "https://agents.example.com/api/callbacks"}
  vip: {action: redirect, target: "+14255550123"}
workstreams:
  - name: retail
    numbers: ["+14255550100"]
    context_variables:
      - {name: Intent, type: text}
      - {name: Priority, type: number}
    rules:
      - {name: r1, when: {Intent: {eq: billing}}, queue: vip}
    fallback_queue: agents
"""


def problems(text: str) -> list[str]:
    with pytest.raises(config.ConfigError) as info:
        config.parse(textwrap.dedent(text), source="test.yaml")
    return info.value.problems


def test_the_example_configuration_loads_as_it_stands(example_routing: config.Routing) -> None:
    assert set(example_routing.queues) == {"billing", "vip", "agents", "closed"}
    [ws] = example_routing.workstreams
    assert ws.name == "retail-ivr"
    assert [r.name for r in ws.rules] == ["vip-callers", "billing-priority", "after-hours-line"]
    assert ws.uui.positional == ("AccountNumber", "Pin", "LanguageCode")
    assert {n for n, v in ws.variables.items() if v.sensitive} == {"AccountNumber", "Pin"}
    assert example_routing.by_number["+14255550101"] is ws
    assert example_routing.default_queue is None


def test_the_apps_own_routing_file_is_the_example_plus_a_default_queue(app_routing: config.Routing) -> None:
    example = (EXAMPLES / "routing.example.yaml").read_text()
    assert app_routing.default_queue == "agents"
    assert app_routing.queues == config.parse(example).queues
    assert (ROOT / "routing.yaml").exists()


def test_invalid_context_queue_defaults_to_the_fallback_queue() -> None:
    [ws] = config.parse(BASE).workstreams
    assert ws.invalid_context_queue == "agents"


def test_a_rule_naming_an_undeclared_variable_is_a_load_time_error() -> None:
    found = problems(BASE.replace("Intent: {eq: billing}", "Intnt: {eq: billing}"))
    assert found == [
        "test.yaml:12: workstream 'retail', rule 'r1': 'Intnt' is not a context variable of this workstream"
        " (declared: Intent, Priority; built in: caller, called)"
    ]


def test_a_rule_naming_an_unknown_queue_is_a_load_time_error() -> None:
    found = problems(BASE.replace("queue: vip", "queue: vipp"))
    assert found == ["test.yaml:12: workstream 'retail', rule 'r1': queue 'vipp' is not a queue (queues: agents, vip)"]


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    text = BASE.replace("queue: vip", "queue: nowhere").replace("fallback_queue: agents", "fallback_queue: gone")
    text = text.replace("Intent: {eq: billing}", "Priority: {eq: high}")
    assert problems(text) == [
        "test.yaml:12: workstream 'retail', rule 'r1': queue 'nowhere' is not a queue (queues: agents, vip)",
        "test.yaml:12: workstream 'retail', rule 'r1': Priority: eq 'high' is not a number (digits, a sign, a decimal"
        " point), and Priority is a number",
        "test.yaml:13: workstream 'retail': fallback_queue 'gone' is not a queue (queues: agents, vip)",
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("action: redirect", "action: teleport"),
            "test.yaml:4: queue 'vip': unknown action 'teleport'; a queue's action is one of answer, redirect,"
            " transfer, reject",
        ),
        (
            ('target: "+14255550123"', 'target: "14255550123"'),
            "test.yaml:4: queue 'vip': target must be an E.164 number (+14255550123) or a raw id (8:acs:...,"
            " 8:orgid:..., 28:orgid:...)",
        ),
        (('target: "+14255550123"', 'target: "+1"'), "test.yaml:4: queue 'vip': target '+1' is not an E.164 number"),
        (
            ('"+14255550100"', '"555-0100"'),
            "test.yaml:7: workstream 'retail': numbers[0]: '555-0100' is neither an E.164 number nor an ACS raw id",
        ),
        (
            ("type: number", "type: money"),
            "test.yaml:10: workstream 'retail': context_variables[1].type must be one of text, number or boolean"
            " (not 'money')",
        ),
        (
            ("{eq: billing}", "{like: billing}"),
            "test.yaml:12: workstream 'retail', rule 'r1': 'like' is not an operator (operators: eq, ne, in, not_in,"
            " lt, lte, gt, gte, exists, matches, ignore_case)",
        ),
        (
            ("{eq: billing}", "{}"),
            "test.yaml:12: workstream 'retail', rule 'r1': Intent: a condition needs at least one operator of eq,"
            " ne, in, not_in, lt, lte, gt, gte, exists, matches",
        ),
        (("fallback_queue: agents", ""), "test.yaml:6: workstream 'retail': fallback_queue is missing"),
        (
            ('callback_url: "https://agents.example.com/api/callbacks"', "callback_url: nope"),
            "test.yaml:3: queue 'agents': callback_url must be an http(s) URL without spaces",
        ),
    ],
    ids=["action", "target", "short-e164", "number", "type", "operator", "no-operator", "fallback", "url"],
)
def test_structural_mistakes_name_the_line_the_place_and_the_problem(change: tuple[str, str], expected: str) -> None:
    assert problems(BASE.replace(*change)) == [expected]


def test_ordering_operators_need_a_number_variable() -> None:
    found = problems(BASE.replace("Intent: {eq: billing}", "Intent: {gte: 5}"))
    assert found == ["test.yaml:12: workstream 'retail', rule 'r1': Intent: gte compares numbers, and Intent is text"]


def test_a_bad_regular_expression_is_a_load_time_error() -> None:
    found = problems(BASE.replace("Intent: {eq: billing}", "Intent: {matches: '(unclosed'}"))
    assert len(found) == 1
    assert found[0].startswith("test.yaml:12: workstream 'retail', rule 'r1': Intent: invalid regular expression")


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"^(a)\1$", "invalid escape sequence"),
        ("^(?=a)", "invalid perl operator"),
        ("(?<!x)a", "invalid perl operator"),
    ],
    ids=["backreference", "lookahead", "lookbehind"],
)
def test_a_pattern_that_needs_backtracking_is_refused_at_load_time(pattern: str, why: str) -> None:
    found = problems(BASE.replace("Intent: {eq: billing}", f"Intent: {{matches: '{pattern}'}}"))
    assert len(found) == 1 and "rule 'r1': Intent: invalid regular expression" in found[0]
    assert why in found[0] and "RE2 syntax" in found[0]


def test_a_number_owned_by_two_workstreams_is_an_error() -> None:
    text = BASE + '  - {name: other, numbers: ["+14255550100"], fallback_queue: agents}\n'
    found = problems(text)
    assert found == ["test.yaml:14: workstream 'other': +14255550100 is already owned by workstream 'retail'"]


def test_positional_names_must_be_declared_variables() -> None:
    text = BASE.replace("    context_variables:", "    uui: {positional: [Intent, Account]}\n    context_variables:")
    assert problems(text) == ["test.yaml:8: workstream 'retail': uui.positional names 'Account', which is not declared"]


def test_uui_parameter_names_cannot_be_context_variables() -> None:
    found = problems(BASE.replace("{name: Intent, type: text}", "{name: Intent, type: text}\n      - {name: pd}"))
    assert len(found) == 1 and "'pd' is a User-to-User parameter name" in found[0]


def test_an_unknown_default_queue_is_an_error() -> None:
    assert problems("default_queue: nowhere\n" + BASE) == [
        "test.yaml:1: default_queue 'nowhere' is not a queue (queues: agents, vip)"
    ]


def test_yaml_syntax_errors_give_the_line() -> None:
    found = problems("queues: {agents: [\n")
    assert found == ["test.yaml:2: not valid YAML (column 1): did not find expected node content"]


def test_the_summary_names_queues_workstreams_and_sensitive_counts(example_routing: config.Routing) -> None:
    summary = example_routing.summary()
    assert "billing: transfer +14255550123" in summary
    assert (
        "workstream retail-ivr: numbers +14255550100, +14255550101; 8 context variables (2 sensitive); 3 rules"
        in summary
    )
    assert "(none: such calls are rejected)" in summary


# --- uui.profile avaya-shared and uui.items -------------------------------------------------------


def test_an_avaya_shared_workstream_loads_with_its_item_ids_in_upper_case() -> None:
    loaded = config.parse(ROUTING_AVAYA)
    [ws] = loaded.workstreams
    assert (ws.uui.profile, ws.uui.items) == ("avaya-shared", {"C8": "UserData"})
    assert "invalid context review; UUI profile avaya-shared" in loaded.summary()
    assert config.parse(BASE).workstreams[0].uui.profile == "standard"
    assert "UUI profile" not in config.parse(BASE).summary()


def test_an_item_naming_an_undeclared_variable_is_a_cross_reference_error() -> None:
    found = problems(ROUTING_AVAYA.replace("{c8: UserData}", "{c8: UserData, D0: Vdn}"))
    assert found == ["test.yaml:9: workstream 'avaya-ivr': uui.items.D0 names 'Vdn', which is not declared"]


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        ("{FA: UserData}", "item FA is the UCID: it always fills the context variable UCID"),
        ("{C8: UserData, c8: Intent}", "item C8 is named twice"),
        ("{C8: UCID}", "item C8 cannot be named 'UCID'"),
        ("{C: UserData}", "item id 'C' is not two hex digits"),
        ("{10: UserData}", "YAML read item id 10 as a number"),
    ],
)
def test_item_names_that_would_lose_or_merge_an_item_are_load_time_errors(items: str, fragment: str) -> None:
    found = problems(ROUTING_AVAYA.replace("{c8: UserData}", items))
    assert len(found) == 1 and found[0].startswith("test.yaml:9: workstream 'avaya-ivr': uui.items: ")
    assert fragment in found[0]


def test_a_quoted_numeric_item_id_is_accepted() -> None:
    [ws] = config.parse(ROUTING_AVAYA.replace("{c8: UserData}", "{'10': UserData}")).workstreams
    assert ws.uui.items == {"10": "UserData"}


def test_items_without_the_avaya_shared_profile_are_an_error() -> None:
    found = problems(ROUTING_AVAYA.replace("profile: avaya-shared, ", ""))
    assert found == [
        "test.yaml:9: workstream 'avaya-ivr': uui: items name the items of Avaya shared UUI: set profile: avaya-shared"
    ]


def test_an_unknown_profile_or_transfer_format_is_named() -> None:
    found = problems(
        ROUTING_AVAYA.replace("profile: avaya-shared", "profile: avaya").replace(
            "uui_format: avaya-shared", "uui_format: avaya"
        )
    )
    assert found == [
        "test.yaml:3: queue 'avaya-agents': uui_format must be one of plain, hex, pd4 or avaya-shared (not 'avaya')",
        "test.yaml:9: workstream 'avaya-ivr': uui.profile must be one of standard or avaya-shared (not 'avaya')",
    ]


# --- YAML without surprises -------------------------------------------------------------------------

VIP = """
queues:
  agents: {action: answer, callback_url: "https://agents.example.com/api/callbacks"}
  vip: {action: reject, reason: busy}
workstreams:
  - name: retail
    numbers: ["+14255550100"]
    context_variables:
      - {name: CustomerId, type: text}
      - {name: Language, type: text}
      - {name: Amount, type: number}
      - {name: IsVip, type: boolean}
    rules:
      - {name: vip-list, when: {%s}, queue: vip}
    fallback_queue: agents
"""


def operand(condition: str) -> object:
    [ws] = config.parse(VIP % condition).workstreams
    [rule] = ws.rules
    [cond] = rule.conditions
    return cond.operand


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        # YAML 1.1 reads 0100003 as the octal 32771: the customer who is meant is 0100003.
        ("CustomerId: {in: [100001, 0100003]}", frozenset({"100001", "0100003"})),
        # ...and no as false, on as true, 2026-11-30 as a date, ~ as null.
        ("Language: {in: [en, no, on]}", frozenset({"en", "no", "on"})),
        ("CustomerId: {eq: 2026-11-30}", "2026-11-30"),
        ("CustomerId: {eq: 1_000}", "1_000"),
        ("CustomerId: {eq: 0x1F}", "0x1F"),
        ("CustomerId: {eq: '007'}", "007"),
        ("Language: {eq: No, ignore_case: true}", "no"),
    ],
)
def test_a_text_variable_compares_with_its_operands_exactly_as_written(condition: str, expected: object) -> None:
    assert operand(condition) == expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("Amount: {gte: 1.10}", Decimal("1.10")),
        ("Amount: {lt: 12345678901234567890.1}", Decimal("12345678901234567890.1")),  # a float would round it
        ("Amount: {eq: 0100003}", 100003),  # a number as written, not YAML's octal
        ("Amount: {eq: -7}", -7),
        ("IsVip: {eq: true}", True),
        ("IsVip: {ne: no}", False),
    ],
)
def test_numbers_and_flags_are_read_exactly_never_through_float(condition: str, expected: object) -> None:
    typed = operand(condition)
    assert typed == expected and type(typed) is type(expected)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("Amount: {gte: '5'}", "Amount: gte '5' is in quotes, so it is text, but Amount is a number: write 5"),
        ("Amount: {eq: 0x1F}", "Amount: eq '0x1F' is not a number (digits, a sign, a decimal point), and Amount is"),
        ("Amount: {eq: 1_000}", "Amount: eq '1_000' is not a number"),
        ("Amount: {in: [1, two]}", "Amount: in 'two' is not a number"),
        ("IsVip: {eq: maybe}", "IsVip: eq 'maybe' is not true or false, and IsVip is a boolean"),
        ("IsVip: {eq: 'true'}", "IsVip: eq 'true' is in quotes, so it is text, but IsVip is a boolean: write true"),
        ("CustomerId: {eq: }", "CustomerId: eq has no value (write one, or quote an empty one: '')"),
        ("Language: {in: en}", "Language.in must be a list ([a, b])"),
        ("IsVip: {exists: }", "IsVip: exists needs true or false"),
    ],
)
def test_an_operand_of_the_wrong_type_is_a_load_time_error_naming_line_rule_and_variable(
    condition: str, expected: str
) -> None:
    [found] = problems(VIP % condition)
    assert found.startswith(f"test.yaml:14: workstream 'retail', rule 'vip-list': {expected}")


def test_a_mapping_that_repeats_a_key_is_an_error_with_both_lines() -> None:
    text = VIP % "Language: {eq: en}, Language: {eq: fr}"
    assert problems(text) == [
        "test.yaml:14: the key 'Language' appears twice in one mapping (also on line 14); keep one"
    ]
    twice = VIP.replace("  vip: {action: reject, reason: busy}", "  vip: {action: reject}\n  vip: {action: reject}")
    assert problems(twice % "Language: {eq: en}") == [
        "test.yaml:5: the key 'vip' appears twice in one mapping (also on line 4); keep one"
    ]


# --- rules on the call itself ---------------------------------------------------------------------


def test_rules_may_test_the_caller_and_the_called_number_with_every_text_operator() -> None:
    [ws] = config.parse(VIP % 'caller: {in: ["+12065550777"]}, called: {matches: "^\\\\+1425"}').workstreams
    assert ws.tests_the_call
    assert [(c.variable, c.op) for c in ws.rules[0].conditions] == [("caller", "in"), ("called", "matches")]
    assert not config.parse(VIP % "Language: {eq: en}").workstreams[0].tests_the_call


@pytest.mark.parametrize("name", ["caller", "called", "Caller"])
def test_caller_and_called_are_reserved_names(name: str) -> None:
    text = (VIP % "Language: {eq: en}").replace("      - {name: IsVip, type: boolean}", f"      - {{name: {name}}}")
    [found] = problems(text)
    assert found == (
        f"test.yaml:12: workstream 'retail': {name!r} is a built-in variable of every rule (the call's number);"
        " rename it"
    )


# --- every problem at once ----------------------------------------------------------------------------


def test_every_problem_of_a_file_is_reported_in_one_pass_in_line_order() -> None:
    text = """
queues:
  agents: {action: answer, callback_url: "https://agents.example.com/api/callbacks"}
  vip: {action: teleport, target: "+14255550123"}
workstreams:
  - name: retail
    numbers: ["+14255550100", "555-0100"]
    context_variables:
      - {name: CustomerId, type: text}
      - {name: Priority, type: number}
      - {name: Mood, type: feeling}
    rules:
      - {name: vip-list, when: {CustomerId: {in: [0100003]}, Priority: {gte: "5"}}, queue: vip}
      - {name: by-mood, when: {Mood: {eq: happy}}, queue: agents}
      - {name: typo, when: {Priority: {gtee: 5}}, queue: agents}
      - {name: lost, when: {Intent: {eq: x}}, queue: nowhere}
    fallback_queue: gone
"""
    assert problems(text) == [
        "test.yaml:4: queue 'vip': unknown action 'teleport'; a queue's action is one of answer, redirect, transfer,"
        " reject",
        "test.yaml:7: workstream 'retail': numbers[1]: '555-0100' is neither an E.164 number nor an ACS raw id",
        "test.yaml:11: workstream 'retail': context_variables[2].type must be one of text, number or boolean (not"
        " 'feeling')",
        "test.yaml:13: workstream 'retail', rule 'vip-list': Priority: gte '5' is in quotes, so it is text, but"
        " Priority is a number: write 5",
        "test.yaml:15: workstream 'retail', rule 'typo': 'gtee' is not an operator (operators: eq, ne, in, not_in,"
        " lt, lte, gt, gte, exists, matches, ignore_case)",
        "test.yaml:16: workstream 'retail', rule 'lost': queue 'nowhere' is not a queue (queues: agents, vip)",
        "test.yaml:16: workstream 'retail', rule 'lost': 'Intent' is not a context variable of this workstream"
        " (declared: CustomerId, Priority; built in: caller, called)",
        "test.yaml:17: workstream 'retail': fallback_queue 'gone' is not a queue (queues: agents, vip)",
    ]
