"""A small reader of Bicep templates for offline checks: tree-sitter-bicep plus an evaluator.

No Bicep compiler runs here (it is .NET; every PyPI/npm wrapper downloads the binary). Every
template is parsed with tree-sitter-bicep and read through a small evaluator: literals, objects,
arrays, string interpolation, variables, parameter defaults, module arguments and ``union``.
Anything else stays an :class:`Expr` whose source text is kept, so a check can still tell *what* a
value is wired to (``acs.outputs.immutableResourceId``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

from tests.conftest import ROOT

BICEP_DIR = ROOT / "infra" / "bicep"

_PARSER = Parser(Language(tree_sitter_bicep.language()))


# --- the parsed model -------------------------------------------------------------------------


@dataclass(frozen=True)
class Expr:
    """A value the evaluator does not reduce; ``text`` is its source (or rendered) text."""

    text: str


@dataclass(frozen=True)
class Interpolated:
    """A string with parts the evaluator does not reduce, rendered as ``${source}``."""

    text: str


@dataclass(frozen=True)
class Ternary:
    condition: str
    when_true: Any
    when_false: Any


@dataclass
class Resource:
    template: Template
    symbol: str
    type: str  # without the API version
    body: Node
    condition: Node | None
    existing: bool
    comments: str  # the comment lines right above the declaration
    api_version: str
    declaration: Node  # the whole resource_declaration (its line, its type string)


@dataclass
class Module:
    symbol: str
    path: Path
    body: Node
    condition: Node | None


@dataclass
class Template:
    path: Path
    root: Node
    params: dict[str, Node] = field(default_factory=dict)  # name -> parameter_declaration
    decorators: dict[str, list[Node]] = field(default_factory=dict)  # param name -> decorator calls
    variables: dict[str, Node] = field(default_factory=dict)  # name -> value node
    resources: list[Resource] = field(default_factory=list)
    modules: dict[str, Module] = field(default_factory=dict)
    outputs: dict[str, Node] = field(default_factory=dict)  # name -> value node

    def param_default(self, name: str) -> Node | None:
        values = [c for c in self.params[name].named_children if c.type not in ("identifier", "type")]
        return values[0] if values else None

    def decorator_args(self, param: str, decorator: str) -> list[Node] | None:
        for call in self.decorators.get(param, []):
            if source_text(call.named_children[0]) == decorator:
                return [c for c in call.named_children[1].named_children if c.type != "comment"]
        return None

    def resource(self, type_: str, *, existing: bool = False) -> Resource:
        found = [r for r in self.resources if r.type == type_ and r.existing == existing]
        assert len(found) == 1, f"{self.path.name}: expected one {type_}, found {len(found)}"
        return found[0]


@dataclass
class Model:
    directory: Path
    templates: dict[str, Template]  # path relative to the directory -> template

    @property
    def main(self) -> Template:
        return self.templates["main.bicep"]

    def module(self, symbol: str) -> tuple[Template, dict[str, Any]]:
        """A module of main.bicep and the arguments main passes it (evaluated in main's scope)."""
        module = self.main.modules[symbol]
        template = self.templates[module.path.relative_to(self.directory).as_posix()]
        params = prop(module.body, "params")
        args = evaluate(params, Scope(self.main)) if params is not None else {}
        assert isinstance(args, dict)
        return template, args

    def module_arg_text(self, symbol: str, name: str) -> str:
        """The source text of an argument main.bicep passes to a module."""
        arg = prop(prop(self.main.modules[symbol].body, "params"), name)
        assert arg is not None, f"main.bicep passes no {name} to module {symbol}"
        return source_text(arg)

    def all_resources(self) -> Iterator[Resource]:
        for template in self.templates.values():
            yield from template.resources


def source_text(node: Node) -> str:
    return (node.text or b"").decode()


def named_children(node: Node) -> list[Node]:
    return [c for c in node.named_children if c.type not in ("comment", "diagnostic_comment")]


def _body(node: Node) -> tuple[Node, Node | None]:
    """The object of a resource/module declaration, and its ``if`` condition if any."""
    last = named_children(node)[-1]
    if last.type == "if_statement":
        condition, obj = named_children(last)
        return obj, condition
    return last, None


def key_of(prop: Node) -> str:
    key = named_children(prop)[0]
    return rendered(Scope(None).eval(key)) if key.type == "string" else source_text(key)


def prop(obj: Node | None, name: str) -> Node | None:
    """The value node of property ``name`` of an object node."""
    if obj is None or obj.type != "object":
        return None
    for prop in named_children(obj):
        is_property = prop.type == "object_property" and named_children(prop)[0].type != "resource_declaration"
        if is_property and key_of(prop) == name:
            return named_children(prop)[-1]
    return None


def string_literal(node: Node) -> str:
    value = Scope(None).eval(node)
    assert isinstance(value, str), f"not a literal string: {source_text(node)}"
    return value


def parse(path: Path) -> Node:
    return _PARSER.parse(path.read_bytes()).root_node


def _comments_above(node: Node) -> str:
    lines: list[str] = []
    sibling = node.prev_named_sibling
    while sibling is not None and sibling.type == "comment":
        lines.insert(0, source_text(sibling))
        sibling = sibling.prev_named_sibling
    return "\n".join(lines)


def load_template(path: Path) -> Template:
    root = parse(path)
    template = Template(path=path, root=root)
    pending_decorators: list[Node] = []
    for node in root.named_children:
        if node.type == "decorators":
            pending_decorators = [d.named_children[0] for d in node.named_children if d.type == "decorator"]
            continue
        if node.type == "parameter_declaration":
            name = source_text(node.named_children[0])
            template.params[name] = node
            template.decorators[name] = [d for d in pending_decorators if d.type == "call_expression"]
        elif node.type == "variable_declaration":
            template.variables[source_text(node.named_children[0])] = named_children(node)[-1]
        elif node.type == "resource_declaration":
            _add_resource(template, node, parent_type=None)
        elif node.type == "module_declaration":
            obj, condition = _body(node)
            module_path = (path.parent / string_literal(named_children(node)[1])).resolve()
            template.modules[source_text(node.named_children[0])] = Module(
                source_text(node.named_children[0]), module_path, obj, condition
            )
        elif node.type == "output_declaration":
            template.outputs[source_text(node.named_children[0])] = named_children(node)[-1]
        if node.type != "comment":
            pending_decorators = []
    return template


def _add_resource(template: Template, node: Node, parent_type: str | None) -> None:
    type_with_api = string_literal(named_children(node)[1])
    type_, _, api_version = type_with_api.partition("@")
    if parent_type is not None:
        type_ = f"{parent_type}/{type_}"
    obj, condition = _body(node)
    existing = any(c.type == "existing" or source_text(c) == "existing" for c in node.children)
    template.resources.append(
        Resource(
            template,
            source_text(node.named_children[0]),
            type_,
            obj,
            condition,
            existing,
            _comments_above(node),
            api_version,
            node,
        )
    )
    for prop in named_children(obj):
        inner = named_children(prop)
        if prop.type == "object_property" and inner and inner[0].type == "resource_declaration":
            _add_resource(template, inner[0], parent_type=type_)


def load_model(directory: Path = BICEP_DIR) -> Model:
    templates = {
        path.relative_to(directory).as_posix(): load_template(path) for path in sorted(directory.rglob("*.bicep"))
    }
    return Model(directory, templates)


# --- the evaluator ----------------------------------------------------------------------------


class Scope:
    """Names visible in one template: module arguments, then variables, then parameter defaults."""

    def __init__(self, template: Template | None, args: dict[str, Any] | None = None) -> None:
        self.template = template
        self.args = args or {}

    def lookup(self, name: str) -> Any:
        if name in self.args:
            return self.args[name]
        if self.template is not None:
            if name in self.template.variables:
                return self.eval(self.template.variables[name])
            if name in self.template.params:
                default = self.template.param_default(name)
                if default is not None:
                    return self.eval(default)
        return Expr(name)

    def eval(self, node: Node) -> Any:
        kind = node.type
        if kind == "object":
            result: dict[str, Any] = {}
            for prop in named_children(node):
                inner = named_children(prop)
                if prop.type == "object_property" and inner[0].type != "resource_declaration":
                    result[key_of(prop)] = self.eval(inner[-1])
            return result
        if kind == "array":
            return [self.eval(item) for item in named_children(node)]
        if kind == "string":
            return self._string(node)
        if kind == "number":
            return int(source_text(node))
        if kind == "boolean":
            return source_text(node) == "true"
        if kind == "null":
            return None
        if kind == "identifier":
            return self.lookup(source_text(node))
        if kind == "parenthesized_expression":
            return self.eval(named_children(node)[0])
        if kind == "ternary_expression":
            condition, when_true, when_false = named_children(node)
            return Ternary(source_text(condition), self.eval(when_true), self.eval(when_false))
        if kind == "call_expression":
            function = source_text(node.named_children[0])
            args = [self.eval(arg) for arg in named_children(node.named_children[1])]
            if function == "union" and all(isinstance(arg, dict) for arg in args):
                merged: dict[str, Any] = {}
                for arg in args:
                    merged.update(arg)
                return merged
            # Keep the call, with its arguments resolved (a role id variable becomes its GUID).
            shown = [repr(a) if isinstance(a, str) else rendered(a).removeprefix("${").removesuffix("}") for a in args]
            return Expr(f"{function}({', '.join(shown)})")
        return Expr(source_text(node))

    def _string(self, node: Node) -> Any:
        parts: list[Any] = []
        for child in node.named_children:
            if child.type == "string_content":
                parts.append(source_text(child))
            elif child.type == "escape_sequence":
                escaped = source_text(child)[1:]
                parts.append({"n": "\n", "r": "\r", "t": "\t"}.get(escaped, escaped))
            elif child.type == "interpolation":
                parts.append(self.eval(named_children(child)[0]))
        if all(isinstance(part, (str, int)) for part in parts):
            return "".join(str(part) for part in parts)
        return Interpolated("".join(rendered(part) for part in parts))


def evaluate(node: Node, scope: Scope) -> Any:
    return scope.eval(node)


def rendered(value: Any) -> str:
    """A value as text: literal strings as they are, expressions as ``${source}``."""
    if isinstance(value, Expr):
        return "${" + value.text + "}"
    if isinstance(value, Interpolated):
        return value.text
    if isinstance(value, Ternary):
        return f"{value.condition} ? {rendered(value.when_true)} : {rendered(value.when_false)}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {rendered(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(rendered(v) for v in value) + "]"
    return str(value)
