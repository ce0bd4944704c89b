"""The routing configuration as routing uses it: queues, workstreams, context variables and rules,
validated and compiled. Plain frozen dataclasses, and nothing else imported but the UUI facts.

``shared/core/config.py`` builds a ``Routing`` from the YAML an operator writes (with pydantic and
the YAML parser, for its line-numbered report). This module stays free of both on purpose: a
deployed package carries the table ``make package`` built and checked (``local/package.py``), and a
cold start that loads it imports neither the validator nor the parser before the first call is
answered (BENCHMARKS.md, "Cold first answer").

A queue here is a routing target: what Call Automation does with the call (answer for an app,
redirect, transfer, reject) — not an ACS Job Router queue nor a Dynamics 365 queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from shared.core import uui

#: Built-in variables every rule may test, besides the workstream's context variables: the
#: caller's and the called number (the E.164 number of a phone party, the raw id otherwise).
CALL_VARIABLES = ("caller", "called")
#: Names no context variable may take: the built-ins, and the RFC 7433 / gateway UUI parameter
#: names, which a plain payload cannot carry as keys (uui.md, decoding rule 3).
RESERVED_NAMES = frozenset({*CALL_VARIABLES, *uui.HEADER_PARAMS})
OPERATORS: tuple[str, ...] = ("eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "exists", "matches")


class ConfigError(ValueError):
    """The configuration is invalid. ``problems`` lists every ``file:line: place: problem`` line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid routing configuration:\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class AnswerQueue:
    """Answer the call for the queue's own Call Automation app; context travels in operation_context."""

    action: ClassVar[Literal["answer"]] = "answer"
    callback_url: str


@dataclass(frozen=True)
class RedirectQueue:
    """Ring the target without answering. ACS cannot forward context on a redirect."""

    action: ClassVar[Literal["redirect"]] = "redirect"
    target: str


@dataclass(frozen=True)
class TransferQueue:
    """Answer, then transfer to the target with the context re-encoded as UUI / custom headers."""

    action: ClassVar[Literal["transfer"]] = "transfer"
    target: str
    uui_format: Literal["plain", "hex", "pd4", "avaya-shared"] = "plain"


@dataclass(frozen=True)
class RejectQueue:
    action: ClassVar[Literal["reject"]] = "reject"
    #: Call Automation's CallRejectReason values.
    reason: Literal["none", "busy", "forbidden"] = "none"


Queue = AnswerQueue | RedirectQueue | TransferQueue | RejectQueue


@dataclass(frozen=True)
class ContextVariable:
    name: str
    type: Literal["text", "number", "boolean"] = "text"
    sensitive: bool = False


@dataclass(frozen=True)
class UUISettings:
    #: standard: the three product forms. avaya-shared: Avaya shared UUI items (the UCID), and the
    #: standard forms for a value that is not shared UUI (uui.decode_avaya_shared).
    profile: Literal["standard", "avaya-shared"] = "standard"
    default_encoding: Literal["plain", "hex"] = "plain"
    positional: tuple[str, ...] = ()
    max_length: int = uui.ACS_UUI_MAX
    #: avaya-shared: item id (two hex digits, upper case) → the context variable it fills instead of Item<ID>.
    items: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CompiledCondition:
    variable: str
    op: str
    operand: Any  # typed to the variable: bool / int|Decimal / str / frozenset / compiled RE2 pattern
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
    #: True when a rule tests ``caller`` or ``called``: routing then adds them to the values.
    tests_the_call: bool = False


@dataclass(frozen=True)
class Routing:
    """The validated configuration, compiled for fast per-call routing."""

    source: str
    queues: Mapping[str, Queue]
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
