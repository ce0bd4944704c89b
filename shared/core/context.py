"""Decoded User-to-User values and custom headers → the typed context variables of a workstream.

Facts:
- Dynamics 365 context variables are matched by name exactly and case-sensitively (name ≤ 100
  characters, value ≤ 4,000); their types are Text and Number. We add Boolean because IVRs send
  flags (``IsVip=1``) and rules want to test them as flags.
- Positional payloads (``500112233445;6789;12`` under ``pd=4``) carry no keys: the workstream names
  them with ``uui.positional``; they are never guessed.
- Values flagged ``sensitive`` (account numbers, PINs) never appear in a message: errors name the
  variable, the value's length and the expected type.

Precedence when the same variable arrives twice: the User-to-User payload is the IVR's primary
context and wins; a custom header with the same name is reported as a warning and not used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.core.routing_table import CompiledWorkstream
from shared.core.values import TypeMismatch, Value, convert


@dataclass(frozen=True)
class Issue:
    """A warning or error about the context, safe to log: it never holds a sensitive value."""

    code: str  # undeclared_key, type_mismatch, extra_positional, duplicate_variable, uui_<kind>
    variable: str | None
    message: str


@dataclass(frozen=True)
class Context:
    #: Each variable's typed value, for rules.
    values: Mapping[str, Value]
    #: Each variable's text exactly as received, for everything that leaves the app.
    texts: Mapping[str, str]
    #: Where each value came from: "uui", "sip-header X-MS-Custom-Foo", ...
    sources: Mapping[str, str]
    warnings: tuple[Issue, ...]
    errors: tuple[Issue, ...]


def _describe(value: str, sensitive: bool) -> str:
    if sensitive:
        return f"a sensitive value of {len(value)} characters"
    shown = value if len(value) <= 40 else value[:40] + "…"
    return f"{shown!r} ({len(value)} characters)"


def map_context(
    workstream: CompiledWorkstream,
    pairs: Mapping[str, str] | None,
    positional: tuple[str, ...] | None,
    headers: tuple[tuple[str, str, str], ...] = (),
) -> Context:
    """Type the received values against the workstream's declared context variables.

    ``headers`` are ``(variable name, value, header description)`` from X-MS-Custom-*/X-* headers.
    """
    received: list[tuple[str, str, str]] = []  # (name, value, source)
    warnings: list[Issue] = []
    errors: list[Issue] = []
    if pairs:
        received.extend((k, v, "uui") for k, v in pairs.items())
    if positional:
        names = workstream.uui.positional
        for i, value in enumerate(positional):
            if i < len(names):
                received.append((names[i], value, f"uui position {i + 1}"))
        if len(positional) > len(names):
            warnings.append(
                Issue(
                    "extra_positional",
                    None,
                    f"the User-to-User payload has {len(positional)} positional values but workstream "
                    f"{workstream.name!r} names {len(names)} (uui.positional); the extra values are ignored",
                )
            )
    received.extend((name, value, source) for name, value, source in headers)

    values: dict[str, Value] = {}
    texts: dict[str, str] = {}
    sources: dict[str, str] = {}
    for name, text, source in received:
        var = workstream.variables.get(name)
        if var is None:
            warnings.append(
                Issue(
                    "undeclared_key",
                    name,
                    f"{name!r} from {source} is not a context variable of workstream {workstream.name!r}; ignored",
                )
            )
            continue
        if name in sources:
            warnings.append(
                Issue(
                    "duplicate_variable",
                    name,
                    f"{name!r} arrived in {sources[name]} and again in {source}; the first is kept",
                )
            )
            continue
        try:
            values[name] = convert(var.type, text)
        except TypeMismatch:
            errors.append(
                Issue(
                    "type_mismatch",
                    name,
                    f"context variable {name!r} expects a {var.type} but {source} carried "
                    f"{_describe(text, var.sensitive)}",
                )
            )
            continue
        texts[name] = text
        sources[name] = source
    return Context(values=values, texts=texts, sources=sources, warnings=tuple(warnings), errors=tuple(errors))
