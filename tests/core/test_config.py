"""The routing configuration: the example loads as it stands, and every mistake is named."""

from __future__ import annotations

import textwrap

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
        "test.yaml: workstreams[0].rules[0].when.Intnt: 'Intnt' is not a declared context variable"
        " (declared: Intent, Priority)"
    ]


def test_a_rule_naming_an_unknown_queue_is_a_load_time_error() -> None:
    found = problems(BASE.replace("queue: vip", "queue: vipp"))
    assert len(found) == 1
    assert found[0].startswith("test.yaml: workstreams[0].rules[0].queue: unknown queue 'vipp'")


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    text = BASE.replace("queue: vip", "queue: nowhere").replace("fallback_queue: agents", "fallback_queue: gone")
    text = text.replace("Intent: {eq: billing}", "Priority: {eq: high}")
    found = problems(text)
    assert any("workstreams[0].fallback_queue: unknown queue 'gone'" in p for p in found)
    assert any("workstreams[0].rules[0].queue: unknown queue 'nowhere'" in p for p in found)
    assert any("workstreams[0].rules[0].when.Priority.eq: operand 'high' is not a number" in p for p in found)


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        (("action: redirect", "action: teleport"), "queues.vip", "does not match any of the expected tags"),
        (('target: "+14255550123"', 'target: "14255550123"'), "queues.vip.target", "E.164 number"),
        (('target: "+14255550123"', 'target: "+1"'), "queues.vip.target", "not an E.164 number"),
        (('"+14255550100"', '"555-0100"'), "workstreams[0].numbers", "neither an E.164 number"),
        (
            ("type: number", "type: money"),
            "workstreams[0].context_variables[1].type",
            "'text', 'number' or 'boolean'",
        ),
        (("{eq: billing}", "{like: billing}"), "workstreams[0].rules[0].when.Intent.like", "Extra inputs"),
        (("{eq: billing}", "{}"), "workstreams[0].rules[0].when.Intent", "at least one operator"),
        (("fallback_queue: agents", ""), "workstreams[0].fallback_queue", "Field required"),
        (
            ('callback_url: "https://agents.example.com/api/callbacks"', "callback_url: nope"),
            "queues.agents.callback_url",
            "should match pattern",
        ),
    ],
)
def test_structural_mistakes_name_the_path_and_the_problem(change: tuple[str, str], path: str, fragment: str) -> None:
    found = problems(BASE.replace(*change))
    assert any(p.startswith(f"test.yaml: {path}: ") and fragment in p for p in found), found


def test_ordering_operators_need_a_number_variable() -> None:
    found = problems(BASE.replace("Intent: {eq: billing}", "Intent: {gte: 5}"))
    assert found == [
        "test.yaml: workstreams[0].rules[0].when.Intent.gte: 'gte' needs a number variable, Intent is text"
    ]


def test_a_bad_regular_expression_is_a_load_time_error() -> None:
    found = problems(BASE.replace("Intent: {eq: billing}", "Intent: {matches: '(unclosed'}"))
    assert len(found) == 1 and "when.Intent.matches: invalid regular expression" in found[0]


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
    assert len(found) == 1 and "when.Intent.matches: invalid regular expression" in found[0]
    assert why in found[0] and "RE2 syntax" in found[0]


def test_a_number_owned_by_two_workstreams_is_an_error() -> None:
    text = BASE + '  - {name: other, numbers: ["+14255550100"], fallback_queue: agents}\n'
    found = problems(text)
    assert found == ["test.yaml: workstreams[1].numbers[0]: +14255550100 is already owned by workstream 'retail'"]


def test_positional_names_must_be_declared_variables() -> None:
    text = BASE.replace("    context_variables:", "    uui: {positional: [Intent, Account]}\n    context_variables:")
    assert problems(text) == [
        "test.yaml: workstreams[0].uui.positional[1]: 'Account' is not a declared context variable"
    ]


def test_uui_parameter_names_cannot_be_context_variables() -> None:
    found = problems(BASE.replace("{name: Intent, type: text}", "{name: Intent, type: text}\n      - {name: pd}"))
    assert len(found) == 1 and "'pd' is a User-to-User parameter name" in found[0]


def test_an_unknown_default_queue_is_an_error() -> None:
    assert problems("default_queue: nowhere\n" + BASE)[0].startswith("test.yaml: default_queue: unknown queue")


def test_yaml_syntax_errors_give_the_line() -> None:
    found = problems("queues: {agents: [\n")
    assert len(found) == 1 and found[0].startswith("test.yaml: line ") and "not valid YAML" in found[0]


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
    assert found == ["test.yaml: workstreams[0].uui.items.D0: 'Vdn' is not a declared context variable"]


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
    assert len(found) == 1 and found[0].startswith("test.yaml: workstreams[0].uui.items: ") and fragment in found[0]


def test_a_quoted_numeric_item_id_is_accepted() -> None:
    [ws] = config.parse(ROUTING_AVAYA.replace("{c8: UserData}", "{'10': UserData}")).workstreams
    assert ws.uui.items == {"10": "UserData"}


def test_items_without_the_avaya_shared_profile_are_an_error() -> None:
    found = problems(ROUTING_AVAYA.replace("profile: avaya-shared, ", ""))
    assert found == [
        "test.yaml: workstreams[0].uui: Value error, items name the items of Avaya shared UUI:"
        " set profile: avaya-shared"
    ]


def test_an_unknown_profile_or_transfer_format_is_named() -> None:
    found = problems(
        ROUTING_AVAYA.replace("profile: avaya-shared", "profile: avaya").replace(
            "uui_format: avaya-shared", "uui_format: avaya"
        )
    )
    assert any(p.startswith("test.yaml: workstreams[0].uui.profile: ") and "'avaya-shared'" in p for p in found)
    assert any(p.startswith("test.yaml: queues.avaya-agents.uui_format: ") and "'avaya-shared'" in p for p in found)
