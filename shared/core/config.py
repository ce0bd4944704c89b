"""The routing configuration: queues, workstreams, context variables and route-to-queue rules.

Configuration is data (``routing.yaml``), validated once at start-up; ``handoff check-config``
runs the same checks. Every problem is found in one pass and reported as
``file:line: place: sentence`` — the place names the queue, the workstream and the rule by name —
so an operator fixes the file at once:

- YAML itself: syntax, and a mapping that repeats a key (shared/core/yaml_source.py);
- structure, with pydantic, one queue and one workstream at a time, so one mistake does not hide
  the others; its messages are rewritten as plain sentences (:func:`_sentence`);
- cross-references: a rule naming an undeclared variable or an unknown queue, a number owned by
  two workstreams, reserved names, and every rule operand typed to its variable **from the text
  as written**: YAML would read an unquoted ``0100003`` as the octal 32771 and ``no`` as false, so a
  text variable's operand is its literal text, and a number or boolean variable's must be written
  as one (no quotes, no YAML-only forms like ``0x1F`` or ``1_000``).

A queue here is a routing target: what Call Automation does with the call (answer for an app,
redirect, transfer, reject) — not an ACS Job Router queue nor a Dynamics 365 queue.

This module parses YAML text and does no I/O; reading the file is the caller's job
(``shared/adapters/settings.py``'s ``load_routing``, at start-up, never per call).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.core import uui
from shared.core.acs import TARGET_PREFIXES
from shared.core.routing_table import (
    CALL_VARIABLES,
    OPERATORS,
    RESERVED_NAMES,
    AnswerQueue,
    CompiledCondition,
    CompiledRule,
    CompiledWorkstream,
    ConfigError,
    ContextVariable,
    Queue,
    RedirectQueue,
    RejectQueue,
    Routing,
    TransferQueue,
    UUISettings,
)
from shared.core.values import TypeMismatch, convert
from shared.core.yaml_source import Document, Path, Scalar, YAMLSyntaxError, read

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
#: Dynamics 365 context variable names: up to 100 characters.
_VARIABLE_NAME = re.compile(r"[^\s;=]{1,100}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_target(value: str) -> str:
    value = value.strip()
    if not value.startswith(TARGET_PREFIXES):
        raise ValueError(
            "target must be an E.164 number (+14255550123) or a raw id (8:acs:..., 8:orgid:..., 28:orgid:...)"
        )
    if value.startswith("+") and not _E164.fullmatch(value):
        raise ValueError(f"target {value!r} is not an E.164 number")
    return value


class AnswerQueueSpec(_Model):
    """Answer the call for the queue's own Call Automation app; context travels in operation_context."""

    action: Literal["answer"]
    callback_url: str = Field(pattern=r"^https?://\S+$")


class RedirectQueueSpec(_Model):
    """Ring the target without answering. ACS cannot forward context on a redirect."""

    action: Literal["redirect"]
    target: str

    _target = field_validator("target")(_check_target)


class TransferQueueSpec(_Model):
    """Answer, then transfer to the target with the context re-encoded as UUI / custom headers."""

    action: Literal["transfer"]
    target: str
    uui_format: Literal["plain", "hex", "pd4", "avaya-shared"] = "plain"

    _target = field_validator("target")(_check_target)


class RejectQueueSpec(_Model):
    action: Literal["reject"]
    # Call Automation's CallRejectReason values.
    reason: Literal["none", "busy", "forbidden"] = "none"


QueueSpec = Annotated[
    AnswerQueueSpec | RedirectQueueSpec | TransferQueueSpec | RejectQueueSpec, Field(discriminator="action")
]


class ContextVariableSpec(_Model):
    name: str = Field(pattern=_VARIABLE_NAME.pattern)
    type: Literal["text", "number", "boolean"] = "text"
    sensitive: bool = False


class UUISpec(_Model):
    #: standard: the three product forms. avaya-shared: Avaya shared UUI items (the UCID), and the
    #: standard forms for a value that is not shared UUI (uui.decode_avaya_shared).
    profile: Literal["standard", "avaya-shared"] = "standard"
    default_encoding: Literal["plain", "hex"] = "plain"
    positional: tuple[str, ...] = ()
    max_length: int = Field(default=uui.ACS_UUI_MAX, ge=1, le=4096)
    #: avaya-shared: item id (two hex digits, any case) → the context variable it fills instead of Item<ID>.
    items: dict[str, str] = Field(default_factory=dict)

    @field_validator("items", mode="before")
    @classmethod
    def _item_ids_are_text(cls, items: Any) -> Any:
        # YAML reads an unquoted 10 or 07 as a number (07 even as octal): ask for quotes, never guess.
        if isinstance(items, dict):
            for key in items:
                if not isinstance(key, str):
                    raise ValueError(
                        f"YAML read item id {key!r} as a number: write item ids that look like numbers in quotes ('10')"
                    )
        return items

    @field_validator("items")
    @classmethod
    def _item_names(cls, items: dict[str, str]) -> dict[str, str]:
        return uui.normalise_item_names(items)

    @model_validator(mode="after")
    def _items_need_the_profile(self) -> UUISpec:
        if self.items and self.profile != uui.AVAYA_SHARED:
            raise ValueError("items name the items of Avaya shared UUI: set profile: avaya-shared")
        return self


class Condition(_Model):
    """The test on one variable; all operators given must hold. Operands are typed to the variable
    from their YAML text once the variable's type is known (``_typed_operand``)."""

    eq: Any = None
    ne: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    not_in: list[Any] | None = None
    lt: Any = None
    lte: Any = None
    gt: Any = None
    gte: Any = None
    exists: bool | None = None
    matches: Any = None
    #: Compare text case-insensitively (eq, ne, in, not_in, matches).
    ignore_case: bool = False

    @model_validator(mode="after")
    def _at_least_one(self) -> Condition:
        if not self.operators():
            raise ValueError(f"a condition needs at least one operator of {', '.join(OPERATORS)}")
        return self

    def operators(self) -> dict[str, Any]:
        """The operators written, with their operands; ``eq:`` with no value counts (its operand is
        reported as empty, rather than the condition as having no operator)."""
        given = self.model_fields_set
        return {
            op: getattr(self, "in_" if op == "in" else op) for op in OPERATORS if ("in_" if op == "in" else op) in given
        }


class Rule(_Model):
    name: str = Field(min_length=1)
    when: dict[str, Condition] = Field(default_factory=dict)
    queue: str


def _check_number(number: str) -> str:
    """A called number a workstream owns: E.164, or the raw id of an ACS or Teams identity."""
    number = number.strip()
    if number.startswith("+") and not _E164.fullmatch(number):
        raise ValueError(f"{number!r} is not an E.164 number")
    if not number.startswith(TARGET_PREFIXES):
        raise ValueError(f"{number!r} is neither an E.164 number nor an ACS raw id")
    return number


class Workstream(_Model):
    name: str = Field(min_length=1)
    numbers: list[Annotated[str, AfterValidator(_check_number)]] = Field(min_length=1)
    uui: UUISpec = UUISpec()
    context_variables: list[ContextVariableSpec] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    fallback_queue: str
    invalid_context_queue: str | None = None


_QUEUE = TypeAdapter(QueueSpec)
_ACTIONS = ("answer", "redirect", "transfer", "reject")
#: pydantic's names for the kinds it expected, as an operator says them.
_KINDS = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list ([a, b])",
    "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)",
    "tuple_type": "a list ([a, b])",
}


@dataclass
class _Report:
    """Problems as they are found: (line, place, sentence), printed sorted by line."""

    source: str
    doc: Document
    found: list[tuple[int, str, str]]

    def add(self, path: Path, place: str, sentence: str, line: int | None = None) -> None:
        self.found.append((line if line is not None else self.doc.line(path), place, sentence))

    def lines(self) -> list[str]:
        seen: set[tuple[int, str, str]] = set()
        out = []
        for problem in sorted(self.found, key=lambda p: p[0]):
            if problem not in seen:
                seen.add(problem)
                line, place, sentence = problem
                out.append(f"{self.source}:{line}: {place + ': ' if place else ''}{sentence}")
        return out


def _field(loc: tuple[int | str, ...]) -> str:
    """A pydantic location inside one queue or workstream, as the YAML names it."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _ACTIONS and not out:
            continue  # pydantic's discriminator tag, not a key the operator wrote
        else:
            out += ("." if out else "") + ("in" if part == "in_" else str(part))
    return out


def _sentence(error: Mapping[str, Any]) -> str:
    """A pydantic error as a sentence an operator understands."""
    kind, ctx, field = str(error["type"]), error.get("ctx") or {}, _field(error["loc"])
    subject = field or "this"
    if kind == "missing":
        return f"{subject} is missing"
    if kind == "extra_forbidden":
        loc = error["loc"]
        if error.get("operator"):  # when: {Variable: {operator: operand}}
            return f"{loc[-1]!r} is not an operator (operators: {', '.join(OPERATORS)}, ignore_case)"
        return f"{subject} is not a setting here (a misspelling?)"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = ctx.get("tag")
        given = f"unknown action {tag!r}" if kind == "union_tag_invalid" else "the action is missing"
        return f"{given}; a queue's action is one of {', '.join(_ACTIONS)}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "")
        return f"{subject} must be one of {expected} (not {error.get('input')!r})"
    if kind in _KINDS:
        return f"{subject} must be {_KINDS[kind]}"
    if kind == "string_pattern_mismatch":
        if field.endswith("callback_url"):
            return f"{subject} must be an http(s) URL without spaces"
        if field.endswith("name"):
            return f"{subject} {error.get('input')!r} must be 1 to 100 characters without spaces, ';' or '='"
        return f"{subject} has the wrong form"
    if kind in ("too_short", "too_long"):
        return f"{subject} needs at least one entry" if kind == "too_short" else f"{subject} has too many entries"
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"{subject} must be from 1 to 4096"
    if kind == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
        last = field.rsplit(".", 1)[-1].split("[", 1)[0]
        return f"{subject}: {message}" if field and not message.startswith(last) else message
    return f"{subject}: {error['msg']}"


def _workstream(report: _Report, index: int, place: str, body: Any) -> tuple[Workstream | None, _Repairs]:
    """The workstream validated, each of its errors reported once. So that one mistake does not hide
    the others (the cross-reference checks need a valid workstream), what an error points at is
    taken out and the rest validated again: the list item it is in (a number, a context variable, a
    rule), else the key (its default applies). The repairs say where each kept item was in the file,
    and which context variables were taken out (rules naming them are not reported again)."""
    path: Path = ("workstreams", index)
    repairs = _Repairs({}, set())
    if not isinstance(body, dict):
        return _validate(report, path, place, lambda: Workstream.model_validate(body), body), repairs
    repaired: dict[str, Any] = copy.deepcopy(body)
    for key, items in repaired.items():
        if isinstance(items, list):
            repaired[key] = list(enumerate(items))  # (position in the file, item) while repairing
    for attempt in range(6):
        try:
            workstream = Workstream.model_validate(_items(repaired))
        except ValidationError as exc:
            if attempt == 0:
                _validate(report, path, place, lambda: Workstream.model_validate(body), body)
            if not all(_take_out(repaired, error["loc"], repairs.removed) for error in exc.errors(include_url=False)):
                return None, repairs
            for key, items in repaired.items():
                if isinstance(items, list):
                    repaired[key] = [(position, item) for position, item in items if position >= 0]
            continue
        repairs.origin.update(
            (key, [position for position, _ in items]) for key, items in repaired.items() if isinstance(items, list)
        )
        return workstream, repairs
    return None, repairs


@dataclass
class _Repairs:
    #: For each list of a repaired workstream, where its items were in the file: origin["rules"][j].
    origin: dict[str, list[int]]
    #: Context variables whose declaration was taken out.
    removed: set[str]

    def position(self, key: str, index: int) -> int:
        positions = self.origin.get(key)
        return positions[index] if positions is not None else index


def _items(repaired: dict[str, Any]) -> dict[str, Any]:
    return {k: [item for _, item in v] if isinstance(v, list) else v for k, v in repaired.items()}


_REQUIRED = ("name", "numbers", "fallback_queue")


def _take_out(repaired: dict[str, Any], loc: tuple[int | str, ...], removed: set[str]) -> bool:
    """Take what ``loc`` points at out of ``repaired``; False when nothing can be (a required key)."""
    loc = tuple("in" if p == "in_" else p for p in loc)
    if len(loc) >= 2 and isinstance(loc[1], int):
        items = repaired.get(str(loc[0]))
        if isinstance(items, list) and loc[1] < len(items):
            _, item = items[loc[1]]
            if loc[0] == "context_variables" and isinstance(item, dict) and isinstance(item.get("name"), str):
                removed.add(item["name"])
            items[loc[1]] = (-1, None)  # marked: positions stay valid for the other errors of this round
            return True
    if loc and loc[0] in repaired and loc[0] not in _REQUIRED:
        del repaired[str(loc[0])]  # its default applies
        return True
    return False


def _validate(report: _Report, path: Path, place: str, run: Any, body: Any = None) -> Any:
    """``run()`` (a pydantic validation) or None, with each of its errors reported at its line. In a
    workstream (``body``), an error inside a rule is placed by the rule's name, not its index."""
    try:
        return run()
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = tuple("in" if p == "in_" else p for p in error["loc"] if not (isinstance(p, str) and p in _ACTIONS))
            where, inner = place, loc
            rules = body.get("rules") if isinstance(body, dict) else None
            if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int) and isinstance(rules, list):
                rule = rules[loc[1]] if loc[1] < len(rules) else None
                name = rule.get("name") if isinstance(rule, dict) else None
                where = f"{place}, rule {name!r}" if isinstance(name, str) else f"{place}, rule {loc[1] + 1}"
                inner = loc[3:] if loc[2:3] == ("when",) else loc[2:]  # when.Intent → Intent
            operator = len(loc) == 5 and loc[2] == "when"  # rules[j].when.Variable.<key>
            report.add((*path, *loc), where, _sentence({**error, "loc": inner, "operator": operator}))
        return None


def compile_pattern(pattern: str, ignore_case: bool) -> Any:
    """A ``matches`` operand as an RE2 pattern: matching takes time linear in the value, whatever the
    pattern. Python's backtracking ``re`` takes exponential time on patterns like ``^(a+)+$`` (44 s on
    31 characters: the call would ring out). RE2 has no backreferences or lookaround; such a pattern
    is refused when the configuration loads."""
    import re2  # google-re2; ~13 ms, paid at start-up only by configurations with a matches rule

    options = re2.Options()
    options.log_errors = False  # the error comes back as the exception, for the configuration report
    options.case_sensitive = not ignore_case
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(
            f"invalid regular expression {pattern!r}: {reason} (patterns use RE2 syntax, which runs in linear"
            " time: no backreferences or lookaround)"
        ) from None


def _typed_operand(var: ContextVariable, op: str, written: Any, ignore_case: bool) -> Any:
    """A rule operand typed to its variable, once, at load time. ``written`` is the YAML as written:
    a :class:`Scalar` (or a list of them for in / not_in)."""
    if op in ("in", "not_in"):
        if not isinstance(written, list):
            raise ValueError(f"{op} needs a list, e.g. {op}: [a, b]")
        return frozenset(_typed_scalar(var, op, item, ignore_case) for item in written)
    if op in ("lt", "lte", "gt", "gte") and var.type != "number":
        raise ValueError(f"{op} compares numbers, and {var.name} is {var.type}")
    if op == "matches":
        if var.type != "text":
            raise ValueError(f"matches tests text, and {var.name} is {var.type}")
        if not isinstance(written, Scalar):
            raise ValueError("matches needs a pattern (text)")
        return compile_pattern(written.text, ignore_case)
    return _typed_scalar(var, op, written, ignore_case)


def _typed_scalar(var: ContextVariable, op: str, written: Any, ignore_case: bool) -> Any:
    """One operand as its variable's type, from the text as written (never YAML's reading of it)."""
    if not isinstance(written, Scalar):
        raise ValueError(f"{op} needs a single value here, not a list or a mapping")
    text = written.text
    if written.yaml_type == "null" and not written.quoted:
        raise ValueError(f"{op} has no value (write one, or quote an empty one: '')")
    if var.type == "text":
        # The literal text: 0100003 stays 0100003 (YAML: octal 32771), no stays no (YAML: false).
        return text.casefold() if ignore_case else text
    if written.quoted:
        unquoted = "true or false" if var.type == "boolean" else text
        raise ValueError(f"{op} {text!r} is in quotes, so it is text, but {var.name} is a {var.type}: write {unquoted}")
    try:
        typed = convert(var.type, text)
    except TypeMismatch:
        expected = "a number (digits, a sign, a decimal point)" if var.type == "number" else "true or false"
        raise ValueError(f"{op} {text!r} is not {expected}, and {var.name} is a {var.type}") from None
    return typed


def _queue(spec: AnswerQueueSpec | RedirectQueueSpec | TransferQueueSpec | RejectQueueSpec) -> Queue:
    """The validated queue as routing uses it."""
    if isinstance(spec, AnswerQueueSpec):
        return AnswerQueue(spec.callback_url)
    if isinstance(spec, RedirectQueueSpec):
        return RedirectQueue(spec.target)
    if isinstance(spec, TransferQueueSpec):
        return TransferQueue(spec.target, spec.uui_format)
    return RejectQueue(spec.reason)


def _queue_name(report: _Report, path: Path, place: str, what: str, name: Any, queues: Mapping[str, Any]) -> None:
    if name is not None and name not in queues:
        known = ", ".join(str(q) for q in queues) or "none"
        report.add(path, place, f"{what} {name!r} is not a queue (queues: {known})")


def _compile_workstream(
    report: _Report,
    index: int,
    ws: Workstream,
    queues: Mapping[str, Any],
    owner: dict[str, str],
    repairs: _Repairs,
) -> CompiledWorkstream:
    base: Path = ("workstreams", index)
    place = f"workstream {ws.name!r}"
    for j, number in enumerate(ws.numbers):
        if number in owner:
            report.add(
                (*base, "numbers", repairs.position("numbers", j)),
                place,
                f"{number} is already owned by workstream {owner[number]!r}",
            )
        owner[number] = ws.name
    variables: dict[str, ContextVariable] = {}
    for j, spec in enumerate(ws.context_variables):
        var = ContextVariable(spec.name, spec.type, spec.sensitive)
        where = (*base, "context_variables", repairs.position("context_variables", j))
        if var.name in variables:
            report.add(where, place, f"context variable {var.name!r} is declared twice")
        if var.name.casefold() in CALL_VARIABLES:
            report.add(
                where, place, f"{var.name!r} is a built-in variable of every rule (the call's number); rename it"
            )
        elif var.name.casefold() in uui.HEADER_PARAMS:
            report.add(
                where,
                place,
                f"{var.name!r} is a User-to-User parameter name (RFC 7433) and cannot be a context variable in a"
                " plain payload; rename it",
            )
        variables[var.name] = var
    for j, name in enumerate(ws.uui.positional):
        if name not in variables:
            report.add((*base, "uui", "positional", j), place, f"uui.positional names {name!r}, which is not declared")
    for item, name in ws.uui.items.items():
        if name not in variables:
            report.add((*base, "uui", "items"), place, f"uui.items.{item} names {name!r}, which is not declared")
    _queue_name(report, (*base, "fallback_queue"), place, "fallback_queue", ws.fallback_queue, queues)
    _queue_name(
        report, (*base, "invalid_context_queue"), place, "invalid_context_queue", ws.invalid_context_queue, queues
    )
    declared = ", ".join(variables) or "none"
    rules: list[CompiledRule] = []
    seen_rules: set[str] = set()
    tests_the_call = False
    for j, rule in enumerate(ws.rules):
        rpath: Path = (*base, "rules", repairs.position("rules", j))
        rplace = f"{place}, rule {rule.name!r}"
        if rule.name in seen_rules:
            report.add((*rpath, "name"), place, f"rule {rule.name!r} appears twice; rule names must differ")
        seen_rules.add(rule.name)
        _queue_name(report, (*rpath, "queue"), rplace, "queue", rule.queue, queues)
        conditions: list[CompiledCondition] = []
        for var_name, cond in rule.when.items():
            cpath: Path = (*rpath, "when", var_name)
            tested = variables.get(var_name)
            if tested is None and var_name in CALL_VARIABLES:
                tested, tests_the_call = ContextVariable(name=var_name, type="text"), True
            if tested is None and var_name in repairs.removed:
                continue  # its declaration is wrong, and already reported
            if tested is None:
                report.add(
                    cpath,
                    rplace,
                    f"{var_name!r} is not a context variable of this workstream (declared: {declared}; built in:"
                    f" {', '.join(CALL_VARIABLES)})",
                )
                continue
            for op, value in cond.operators().items():
                try:
                    if op == "exists" and value is None:
                        raise ValueError("exists needs true or false")
                    typed = (
                        bool(value)
                        if op == "exists"
                        else _typed_operand(tested, op, _written(report.doc, (*cpath, op)), cond.ignore_case)
                    )
                except ValueError as exc:
                    report.add((*cpath, op), rplace, f"{var_name}: {exc}")
                    continue
                conditions.append(CompiledCondition(var_name, op, typed, cond.ignore_case))
        rules.append(CompiledRule(rule.name, rule.queue, tuple(conditions)))
    return CompiledWorkstream(
        name=ws.name,
        uui=UUISettings(
            profile=ws.uui.profile,
            default_encoding=ws.uui.default_encoding,
            positional=ws.uui.positional,
            max_length=ws.uui.max_length,
            items=ws.uui.items,
        ),
        variables=variables,
        rules=tuple(rules),
        fallback_queue=ws.fallback_queue,
        invalid_context_queue=ws.invalid_context_queue or ws.fallback_queue,
        sensitive=frozenset(v.name for v in variables.values() if v.sensitive),
        tests_the_call=tests_the_call,
    )


def _written(doc: Document, path: Path) -> Any:
    """The operand at ``path`` as written: a Scalar, or a list of what its items were written as."""
    if path in doc.scalars:
        return doc.scalars[path]
    items = []
    index = 0
    while (*path, index) in doc.lines:
        items.append(_written(doc, (*path, index)))
        index += 1
    return items if index or isinstance(_get(doc.data, path), list) else _get(doc.data, path)


def _get(data: Any, path: Path) -> Any:
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def parse(text: str, source: str = "routing.yaml") -> Routing:
    """Validate YAML text and compile it. Raises ConfigError listing every problem, in line order."""
    try:
        doc = read(text)
    except YAMLSyntaxError as exc:
        raise ConfigError([f"{source}:{exc.line}: not valid YAML (column {exc.column}): {exc.problem}"]) from None
    report = _Report(source, doc, [(line, "", sentence) for line, sentence in doc.problems])
    raw = doc.data
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}:1: expected a mapping with queues and workstreams"])
    for key in raw:
        if key not in ("queues", "workstreams", "default_queue"):
            report.add((key,), "", f"{key!r} is not a setting of a routing file (queues, workstreams, default_queue)")

    queues_raw = raw.get("queues")
    queues: dict[str, Queue] = {}
    if not isinstance(queues_raw, dict) or not queues_raw:
        report.add(("queues",), "", "queues is missing: a routing file needs at least one queue")
        queues_raw = {}
    for name, body in queues_raw.items():
        queue = _validate(report, ("queues", name), f"queue {name!r}", lambda body=body: _QUEUE.validate_python(body))
        if queue is not None:
            queues[str(name)] = _queue(queue)

    workstreams_raw = raw.get("workstreams")
    if not isinstance(workstreams_raw, list) or not workstreams_raw:
        report.add(("workstreams",), "", "workstreams is missing: a routing file needs at least one workstream")
        workstreams_raw = []
    default_queue = raw.get("default_queue")
    if default_queue is not None and not isinstance(default_queue, str):
        report.add(("default_queue",), "", "default_queue must be the name of a queue")
        default_queue = None
    _queue_name(report, ("default_queue",), "", "default_queue", default_queue, queues_raw)

    compiled: list[CompiledWorkstream] = []
    by_number: dict[str, CompiledWorkstream] = {}
    owner: dict[str, str] = {}
    for i, body in enumerate(workstreams_raw):
        name = body.get("name") if isinstance(body, dict) else None
        place = f"workstream {name!r}" if isinstance(name, str) else f"workstream {i + 1}"
        ws, repairs = _workstream(report, i, place, body)
        if ws is None:
            continue
        built = _compile_workstream(report, i, ws, queues_raw, owner, repairs)
        compiled.append(built)
        by_number.update((number, built) for number in ws.numbers)
    if report.found:
        raise ConfigError(report.lines())
    return Routing(
        source=source,
        queues=queues,
        workstreams=tuple(compiled),
        by_number=by_number,
        default_queue=default_queue,
    )


__all__ = [
    "CALL_VARIABLES",
    "OPERATORS",
    "RESERVED_NAMES",
    "AnswerQueue",
    "CompiledRule",
    "CompiledWorkstream",
    "ConfigError",
    "ContextVariable",
    "RedirectQueue",
    "RejectQueue",
    "Routing",
    "TransferQueue",
    "compile_pattern",
    "parse",
]
