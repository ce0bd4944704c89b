"""The routing configuration: queues, workstreams, context variables and route-to-queue rules.

Configuration is data (``routing.yaml``), validated once at start-up. Structural problems are
found by pydantic; the cross-references (a rule naming an undeclared variable or an unknown queue,
a number owned by two workstreams) by :func:`_check_references`. Every problem is reported with the
file, the path inside it and what is wrong, all at once, so an operator fixes the file in one pass.

This module parses YAML text and does no I/O; reading the file is the caller's job
(``shared/adapters/settings.py``'s ``load_routing``, at start-up, never per call).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.core import uui
from shared.core.acs import TARGET_PREFIXES
from shared.core.values import TypeMismatch, convert

Scalar = str | int | float | bool

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
#: Dynamics 365 context variable names: up to 100 characters.
_VARIABLE_NAME = re.compile(r"[^\s;=]{1,100}")


class ConfigError(ValueError):
    """The configuration is invalid. ``problems`` lists every ``file: path: problem`` line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid routing configuration:\n" + "\n".join(f"  {p}" for p in problems))


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


class AnswerQueue(_Model):
    """Answer the call for the queue's own Call Automation app; context travels in operation_context."""

    action: Literal["answer"]
    callback_url: str = Field(pattern=r"^https?://\S+$")


class RedirectQueue(_Model):
    """Ring the target without answering. ACS cannot forward context on a redirect."""

    action: Literal["redirect"]
    target: str

    _target = field_validator("target")(_check_target)


class TransferQueue(_Model):
    """Answer, then transfer to the target with the context re-encoded as UUI / custom headers."""

    action: Literal["transfer"]
    target: str
    uui_format: Literal["plain", "hex", "pd4", "avaya-shared"] = "plain"

    _target = field_validator("target")(_check_target)


class RejectQueue(_Model):
    action: Literal["reject"]
    # Call Automation's CallRejectReason values.
    reason: Literal["none", "busy", "forbidden"] = "none"


Queue = Annotated[AnswerQueue | RedirectQueue | TransferQueue | RejectQueue, Field(discriminator="action")]


class ContextVariable(_Model):
    name: str = Field(pattern=_VARIABLE_NAME.pattern)
    type: Literal["text", "number", "boolean"] = "text"
    sensitive: bool = False


class UUISettings(_Model):
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
    def _items_need_the_profile(self) -> UUISettings:
        if self.items and self.profile != uui.AVAYA_SHARED:
            raise ValueError("items name the items of Avaya shared UUI: set profile: avaya-shared")
        return self


Operator = Literal["eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "exists", "matches"]
OPERATORS: tuple[str, ...] = ("eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "exists", "matches")


class Condition(_Model):
    """The test on one context variable; all operators given must hold."""

    eq: Scalar | None = None
    ne: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None
    lt: float | int | None = None
    lte: float | int | None = None
    gt: float | int | None = None
    gte: float | int | None = None
    exists: bool | None = None
    matches: str | None = None
    #: Compare text case-insensitively (eq, ne, in, not_in, matches).
    ignore_case: bool = False

    @model_validator(mode="after")
    def _at_least_one(self) -> Condition:
        if not self.operators():
            raise ValueError(f"a condition needs at least one operator of {', '.join(OPERATORS)}")
        return self

    def operators(self) -> dict[str, Any]:
        found = {op: getattr(self, "in_" if op == "in" else op) for op in OPERATORS}
        return {op: value for op, value in found.items() if value is not None}


class Rule(_Model):
    name: str = Field(min_length=1)
    when: dict[str, Condition] = Field(default_factory=dict)
    queue: str


class Workstream(_Model):
    name: str = Field(min_length=1)
    numbers: list[str] = Field(min_length=1)
    uui: UUISettings = UUISettings()
    context_variables: list[ContextVariable] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    fallback_queue: str
    invalid_context_queue: str | None = None

    @field_validator("numbers")
    @classmethod
    def _numbers(cls, numbers: list[str]) -> list[str]:
        cleaned = [n.strip() for n in numbers]
        for n in cleaned:
            if n.startswith("+") and not _E164.fullmatch(n):
                raise ValueError(f"{n!r} is not an E.164 number")
            if not n.startswith(TARGET_PREFIXES):
                raise ValueError(f"{n!r} is neither an E.164 number nor an ACS raw id")
        return cleaned


class RoutingConfig(_Model):
    queues: dict[str, Queue] = Field(min_length=1)
    workstreams: list[Workstream] = Field(min_length=1)
    #: Where a call to a number no workstream owns goes. Without it such a call is rejected.
    default_queue: str | None = None


# ---------------------------------------------------------------------------------------------
# Compiled form: what routing uses on every call. Built once; lookups are dicts and tuples.


@dataclass(frozen=True)
class CompiledCondition:
    variable: str
    op: str
    operand: Any  # typed to the variable: bool / int|Decimal / str / frozenset / compiled regex
    ignore_case: bool


@dataclass(frozen=True)
class CompiledRule:
    name: str
    queue: str
    conditions: tuple[CompiledCondition, ...]


@dataclass(frozen=True)
class CompiledWorkstream:
    name: str
    uui: UUISettings
    variables: Mapping[str, ContextVariable]
    rules: tuple[CompiledRule, ...]
    fallback_queue: str
    invalid_context_queue: str
    #: Names of the variables flagged sensitive: masked in every log, trace and printout.
    sensitive: frozenset[str]


@dataclass(frozen=True)
class Routing:
    """The validated configuration, compiled for fast per-call routing."""

    source: str
    queues: Mapping[str, AnswerQueue | RedirectQueue | TransferQueue | RejectQueue]
    workstreams: tuple[CompiledWorkstream, ...]
    by_number: Mapping[str, CompiledWorkstream]
    default_queue: str | None

    @property
    def sensitive_anywhere(self) -> frozenset[str]:
        """The case-folded names of every workstream's sensitive variables (for masking what no
        workstream owns, or a key that differs from a sensitive variable's name only in case)."""
        return frozenset(name.casefold() for ws in self.workstreams for name in ws.sensitive)

    def summary(self) -> str:
        lines = [f"{self.source}: OK"]
        lines.append(f"  queues ({len(self.queues)}):")
        for name, q in self.queues.items():
            detail = getattr(q, "target", None) or getattr(q, "callback_url", None) or getattr(q, "reason", "")
            lines.append(f"    {name}: {q.action} {detail}".rstrip())
        for ws in self.workstreams:
            numbers = sorted(n for n, w in self.by_number.items() if w is ws)
            sensitive = [v.name for v in ws.variables.values() if v.sensitive]
            profile = "" if ws.uui.profile == "standard" else f"; UUI profile {ws.uui.profile}"
            lines.append(
                f"  workstream {ws.name}: numbers {', '.join(numbers)}; {len(ws.variables)} context variables"
                f" ({len(sensitive)} sensitive); {len(ws.rules)} rules; fallback {ws.fallback_queue};"
                f" invalid context {ws.invalid_context_queue}{profile}"
            )
        lines.append(f"  default queue for unknown numbers: {self.default_queue or '(none: such calls are rejected)'}")
        return "\n".join(lines)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("answer", "redirect", "transfer", "reject") and out.startswith("queues."):
            continue  # pydantic's discriminator tag, not a path the user wrote
        else:
            out += ("." if out else "") + ("in" if part == "in_" else str(part))
    return out or "(top level)"


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


def _typed_operand(var: ContextVariable, op: str, value: Any, ignore_case: bool) -> Any:
    """Convert a rule operand to the variable's type once, at load time."""
    if op == "exists":
        return bool(value)
    if op == "matches":
        if var.type != "text":
            raise ValueError(f"'matches' needs a text variable, {var.name} is {var.type}")
        return compile_pattern(value, ignore_case)
    if op in ("in", "not_in"):
        return frozenset(_typed_scalar(var, v, ignore_case) for v in value)
    if op in ("lt", "lte", "gt", "gte") and var.type != "number":
        raise ValueError(f"'{op}' needs a number variable, {var.name} is {var.type}")
    return _typed_scalar(var, value, ignore_case)


def _typed_scalar(var: ContextVariable, value: Any, ignore_case: bool) -> Any:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    try:
        typed = convert(var.type, text)
    except TypeMismatch:
        raise ValueError(f"operand {value!r} is not a {var.type}, the type of {var.name}") from None
    if isinstance(typed, str) and ignore_case:
        return typed.casefold()
    return typed


def _check_references(cfg: RoutingConfig, source: str) -> tuple[list[str], list[CompiledWorkstream]]:
    problems: list[str] = []
    compiled: list[CompiledWorkstream] = []

    def queue_ref(path: str, name: str | None) -> None:
        if name is not None and name not in cfg.queues:
            problems.append(f"{source}: {path}: unknown queue {name!r} (queues: {', '.join(cfg.queues)})")

    queue_ref("default_queue", cfg.default_queue)
    owner: dict[str, str] = {}
    for i, ws in enumerate(cfg.workstreams):
        base = f"workstreams[{i}]"
        for j, number in enumerate(ws.numbers):
            if number in owner:
                problems.append(
                    f"{source}: {base}.numbers[{j}]: {number} is already owned by workstream {owner[number]!r}"
                )
            owner[number] = ws.name
        variables: dict[str, ContextVariable] = {}
        for j, var in enumerate(ws.context_variables):
            if var.name in variables:
                problems.append(f"{source}: {base}.context_variables[{j}]: {var.name!r} is declared twice")
            if var.name.lower() in ("encoding", "purpose", "content", "pd"):
                problems.append(
                    f"{source}: {base}.context_variables[{j}]: {var.name!r} is a User-to-User parameter name"
                    " (RFC 7433) and cannot be a context variable in a plain payload; rename it"
                )
            variables[var.name] = var
        for j, name in enumerate(ws.uui.positional):
            if name not in variables:
                problems.append(f"{source}: {base}.uui.positional[{j}]: {name!r} is not a declared context variable")
        for item, name in ws.uui.items.items():
            if name not in variables:
                problems.append(f"{source}: {base}.uui.items.{item}: {name!r} is not a declared context variable")
        queue_ref(f"{base}.fallback_queue", ws.fallback_queue)
        queue_ref(f"{base}.invalid_context_queue", ws.invalid_context_queue)
        rules: list[CompiledRule] = []
        seen_rules: set[str] = set()
        for j, rule in enumerate(ws.rules):
            rpath = f"{base}.rules[{j}]"
            if rule.name in seen_rules:
                problems.append(f"{source}: {rpath}.name: rule {rule.name!r} appears twice")
            seen_rules.add(rule.name)
            queue_ref(f"{rpath}.queue", rule.queue)
            conditions: list[CompiledCondition] = []
            for var_name, cond in rule.when.items():
                cpath = f"{rpath}.when.{var_name}"
                declared_var = variables.get(var_name)
                if declared_var is None:
                    declared = ", ".join(variables) or "none"
                    problems.append(
                        f"{source}: {cpath}: {var_name!r} is not a declared context variable (declared: {declared})"
                    )
                    continue
                for op, operand in cond.operators().items():
                    try:
                        typed = _typed_operand(declared_var, op, operand, cond.ignore_case)
                    except ValueError as exc:
                        problems.append(f"{source}: {cpath}.{op}: {exc}")
                        continue
                    conditions.append(CompiledCondition(var_name, op, typed, cond.ignore_case))
            rules.append(CompiledRule(rule.name, rule.queue, tuple(conditions)))
        compiled.append(
            CompiledWorkstream(
                name=ws.name,
                uui=ws.uui,
                variables=variables,
                rules=tuple(rules),
                fallback_queue=ws.fallback_queue,
                invalid_context_queue=ws.invalid_context_queue or ws.fallback_queue,
                sensitive=frozenset(v.name for v in variables.values() if v.sensitive),
            )
        )
    return problems, compiled


def parse(text: str, source: str = "routing.yaml") -> Routing:
    """Validate YAML text and compile it. Raises ConfigError listing every problem."""
    try:
        # libyaml's safe loader when PyYAML was built with it (8x faster at start-up), else pure Python.
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "(unknown position)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{source}: {where}: not valid YAML: {problem}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: (top level): expected a mapping with queues and workstreams"])
    try:
        cfg = RoutingConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(
            [f"{source}: {_loc(err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)]
        ) from None
    problems, workstreams = _check_references(cfg, source)
    if problems:
        raise ConfigError(problems)
    by_number = {n: compiled for ws, compiled in zip(cfg.workstreams, workstreams, strict=True) for n in ws.numbers}
    return Routing(
        source=source,
        queues=dict(cfg.queues),
        workstreams=tuple(workstreams),
        by_number=by_number,
        default_queue=cfg.default_queue,
    )


__all__ = [
    "OPERATORS",
    "AnswerQueue",
    "CompiledRule",
    "CompiledWorkstream",
    "ConfigError",
    "ContextVariable",
    "RedirectQueue",
    "RejectQueue",
    "Routing",
    "TransferQueue",
    "parse",
]
