"""Check infra/bicep against the ARM models of the Azure management SDKs, and module wiring.

No Bicep compiler runs here, and checkov has no rules for most of these resources, so a misspelled
property or one that its API version does not have would reach the first deployer. This walks
every resource body of the templates against the ARM model of its exact ``type@apiVersion``, as
infra/arm_models.py dumped them from the pinned SDKs (``make arm-models`` writes
``.venv-arm/arm-models.json``), and reports, each as ``file:line: type@apiVersion: path: problem``:

* a property the model does not have, with the closest one it has ("did you mean");
* a read-only property set in a body (Azure sets it; ARM ignores or rejects it);
* a discriminator value the model does not know (an Event Grid ``endpointType``, an advanced
  filter's ``operatorType``; for ``Microsoft.Web/sites/config``, its name);
* a literal of the wrong shape: an object where the model has a string, a string where it has a
  number...;
* a property read from a resource (``site.properties.defaultHostName``) that its model lacks;
* a module argument that is not a parameter of the module, a required parameter not passed, and
  a module output read that the module does not declare.

Property *names* are literal in Bicep objects (but for the keys of free-form dictionaries, such as
``userAssignedIdentities``), so names are checked wherever they are; values only where they decide
the model (discriminators) or are literals. A value the evaluator cannot reduce (a parameter
without a default, a function call) is not checked, and ``existing`` resources have no body. A
resource whose ``type@apiVersion`` has no model is listed in :attr:`Report.unmodelled`, never
checked against another version's model.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tree_sitter import Node

from tests.conftest import ROOT
from tests.infra.bicep import Model, Resource, Scope, Template, key_of, named_children, prop, source_text

ARM_MODELS = ROOT / ".venv-arm" / "arm-models.json"

#: The type@apiVersion the templates declare that no SDK on PyPI has a model of, and why: these
#: bodies are not checked. A new resource without a model fails the check until it is added here.
NO_MODEL = {
    "Microsoft.Resources/resourceGroups@2024-03-01": (
        "azure-mgmt-resource has the resources API 2022-09-01 (up to 23.2.0), then 2024-07-01 and later "
        "(23.3.0 on), never 2024-03-01; the body is only name, location and tags"
    ),
    "Microsoft.OperationalInsights/workspaces@2023-09-01": (
        "azure-mgmt-loganalytics has 2021-06-01 (12.0.0), 2022-10-01 (13.0.0b1-b7) and 2025-07-01 "
        "(13.1.0 on), never 2023-09-01"
    ),
}

#: Keys of a resource body that are Bicep's own, not part of the ARM body (``name`` is in the
#: models too, read-only: Bicep puts it in the resource id).
BICEP_KEYS = {"name", "parent", "scope", "dependsOn"}
#: What every resource reference has besides its model's properties.
RESOURCE_READS = {"id", "name", "type", "apiVersion"}
LITERAL_KINDS = {"string": "str", "number": "int", "boolean": "bool"}
ACCEPTS = {"str": {"str"}, "int": {"int"}, "float": {"int"}, "bool": {"bool"}}


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    subject: str  # type@apiVersion, or module <symbol>
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.subject}: {self.path}: {self.message}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    #: type@apiVersion with no model -> where it is declared
    unmodelled: dict[str, list[str]] = field(default_factory=dict)
    #: type@apiVersion checked -> where its bodies are
    checked: dict[str, list[str]] = field(default_factory=dict)
    #: every type@apiVersion declared, existing ones too
    declared: set[str] = field(default_factory=set)

    def add(self, finding: Finding) -> None:
        if finding not in self.findings:
            self.findings.append(finding)


def load_arm_models(path: Path = ARM_MODELS) -> dict[str, Any]:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing: `make arm-models` writes it (make test does)"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    options = sorted(choices)
    same_case = [c for c in options if c.lower() == name.lower()]
    close = same_case or difflib.get_close_matches(name, options, n=1)
    return f"; did you mean {close[0]}?" if close else ""


class Where:
    """A template as one module declaration deploys it: its arguments, in the caller's scope."""

    def __init__(self, template: Template, args: dict[str, tuple[Node, Where]] | None = None) -> None:
        self.template = template
        self.args = args or {}


def _literal(node: Node) -> Any:
    """The value of a literal node (no names, no calls), else None."""
    value = Scope(None).eval(node)
    return value if isinstance(value, (str, int, bool)) else None


class Checker:
    def __init__(self, model: Model, arm: dict[str, Any]) -> None:
        self.model = model
        self.types: dict[str, Any] = arm["types"]
        self.models: dict[str, Any] = arm["models"]
        self.report = Report()

    # --- where things are --------------------------------------------------------------------

    def file_of(self, template: Template) -> str:
        path = template.path.resolve()
        base = ROOT if path.is_relative_to(ROOT) else self.model.directory.parent
        return path.relative_to(base).as_posix()

    def finding(self, where: Where, node: Node, subject: str, path: str, message: str) -> None:
        self.report.add(Finding(self.file_of(where.template), node.start_point[0] + 1, subject, path, message))

    def template_of(self, path: Path) -> Template | None:
        try:
            return self.model.templates[path.relative_to(self.model.directory).as_posix()]
        except (KeyError, ValueError):
            return None

    def scopes(self) -> Iterator[Where]:
        """main.bicep, then every template as each module declaration deploys it."""
        seen: set[str] = set()

        def visit(where: Where) -> Iterator[Where]:
            yield where
            seen.add(where.template.path.as_posix())
            for module in where.template.modules.values():
                target = self.template_of(module.path)
                if target is None:
                    continue
                args: dict[str, tuple[Node, Where]] = {}
                for value, scope in self.resolve(prop(module.body, "params"), where):
                    if value.type == "object":
                        for item in self.properties(value):
                            args[key_of(item)] = (named_children(item)[-1], scope)
                yield from visit(Where(target, args))

        yield from visit(Where(self.model.main))
        for template in self.model.templates.values():
            if template.path.as_posix() not in seen:
                yield Where(template)

    # --- values ------------------------------------------------------------------------------

    @staticmethod
    def properties(obj: Node) -> list[Node]:
        """The object_property children of an object node, but nested resource declarations."""
        return [
            p
            for p in named_children(obj)
            if p.type == "object_property" and named_children(p)[0].type != "resource_declaration"
        ]

    def resolve(self, node: Node | None, where: Where, depth: int = 0) -> list[tuple[Node, Where]]:
        """The nodes an expression may stand for: through variables, module arguments, parameter
        defaults, both branches of ``?:`` and each argument of ``union``; [] when unknown."""
        if node is None or depth > 50:
            return []
        kind = node.type
        if kind == "parenthesized_expression":
            return self.resolve(named_children(node)[0], where, depth + 1)
        if kind == "identifier":
            name = source_text(node)
            template = where.template
            if name in where.args:
                value, caller = where.args[name]
                return self.resolve(value, caller, depth + 1)
            if name in template.variables:
                return self.resolve(template.variables[name], where, depth + 1)
            if name in template.params:
                return self.resolve(template.param_default(name), where, depth + 1)
            return []
        if kind == "ternary_expression":
            _, when_true, when_false = named_children(node)
            return self.resolve(when_true, where, depth + 1) + self.resolve(when_false, where, depth + 1)
        if kind == "call_expression":
            if source_text(node.named_children[0]) == "union":
                args = named_children(node.named_children[1])
                return [found for arg in args for found in self.resolve(arg, where, depth + 1)]
            return []
        return [(node, where)]

    # --- resource bodies ---------------------------------------------------------------------

    def check_resource(self, resource: Resource, where: Where) -> None:
        type_api = f"{resource.type}@{resource.api_version}"
        self.report.declared.add(type_api)
        spec = self.types.get(type_api)
        at = f"{self.file_of(resource.template)}:{resource.declaration.start_point[0] + 1}"
        if spec is None:
            places = self.report.unmodelled.setdefault(type_api, [])
            if at not in places:
                places.append(at)
            return
        if resource.existing:
            return
        body = resource.body
        if body.type == "for_statement":  # resource x '...' = [for ...: {...}]
            body = named_children(body)[-1]
        if body.type == "if_statement":
            body = named_children(body)[-1]
        ref = self.model_of(spec, body, where, type_api)
        if ref is None:
            return
        places = self.report.checked.setdefault(type_api, [])
        if at not in places:
            places.append(at)
        self.check_object(body, where, {"model": ref}, type_api, "", top=True)

    def model_of(self, spec: dict[str, Any], body: Node, where: Where, type_api: str) -> str | None:
        if "model" in spec:
            model: str = spec["model"]
            return model
        # A type whose body depends on its name (Microsoft.Web/sites/config).
        names: dict[str, str] = spec["by_name"]
        name_node = prop(body, "name")
        values = self.resolve(name_node, where)
        literals = [_literal(value) for value, _ in values]
        if name_node is None or not values or any(not isinstance(v, str) for v in literals):
            self.finding(where, name_node or body, type_api, "name", "not a literal: cannot tell which model it is")
            return None
        for name in literals:
            if name not in names:
                self.finding(
                    where,
                    name_node,
                    type_api,
                    "name",
                    f"{name!r} is none of {sorted(names)}{did_you_mean(name, names)}",
                )
                return None
        return names[literals[0]]

    def fields_of(self, type_: Any) -> tuple[dict[str, Any], dict[str, Any] | None, str]:
        if "model" in type_:
            entry = self.models[type_["model"]]
            return entry["fields"], entry["discriminator"], type_["model"].rsplit(":", 1)[-1]
        return type_["fields"], None, "properties"

    def check_value(self, node: Node, where: Where, type_: Any, subject: str, path: str) -> None:
        for value, scope in self.resolve(node, where):
            self.check_resolved(value, scope, type_, subject, path)

    def check_resolved(self, node: Node, where: Where, type_: Any, subject: str, path: str) -> None:
        if type_ == "any":
            return
        kind = node.type
        shape = {"object": "an object", "array": "an array", "for_statement": "an array"}
        if isinstance(type_, str):
            literal = LITERAL_KINDS.get(kind)
            if kind in shape:
                self.finding(where, node, subject, path, f"{shape[kind]} where the model has {type_}")
            elif literal is not None and literal not in ACCEPTS.get(type_, {literal}):
                self.finding(where, node, subject, path, f"a {literal} literal where the model has {type_}")
            return
        if "array" in type_:
            if kind == "array":
                for index, item in enumerate(named_children(node)):
                    self.check_value(item, where, type_["array"], subject, f"{path}[{index}]")
            elif kind == "for_statement":
                item = named_children(node)[-1]
                if item.type == "if_statement":
                    item = named_children(item)[-1]
                self.check_value(item, where, type_["array"], subject, f"{path}[]")
            elif kind == "object" or kind in LITERAL_KINDS:
                self.finding(where, node, subject, path, f"{shape.get(kind, 'a ' + kind)} where the model has an array")
            return
        if kind in ("array", "for_statement") or kind in LITERAL_KINDS:
            self.finding(where, node, subject, path, f"{shape.get(kind, 'a ' + kind)} where the model has an object")
            return
        if kind != "object":
            return  # an expression the evaluator does not reduce: its value is not checked
        if "dict" in type_:
            for item in self.properties(node):
                value = named_children(item)[-1]
                self.check_value(value, where, type_["dict"], subject, f"{path}.{key_of(item)}".lstrip("."))
            return
        self.check_object(node, where, type_, subject, path)

    def check_object(self, obj: Node, where: Where, type_: Any, subject: str, path: str, top: bool = False) -> None:
        fields, discriminator, label = self.fields_of(type_)
        if discriminator is not None:
            fields = self.subtype_fields(obj, where, fields, discriminator, label, subject, path)
        for item in self.properties(obj):
            key_node = named_children(item)[0]
            name = key_of(item)
            at = f"{path}.{name}".lstrip(".")
            if top and name in BICEP_KEYS:
                continue
            if key_node.type == "string" and _literal(key_node) is None:
                self.finding(where, item, subject, at, f"a computed name where {label} has fixed property names")
                continue
            spec = fields.get(name)
            if spec is None:
                self.finding(where, item, subject, at, f"unknown property{did_you_mean(name, fields)}")
            elif spec["readonly"]:
                self.finding(where, item, subject, at, "read-only property: Azure sets it, a template cannot")
            else:
                self.check_value(named_children(item)[-1], where, spec["type"], subject, at)

    def subtype_fields(
        self,
        obj: Node,
        where: Where,
        fields: dict[str, Any],
        discriminator: dict[str, Any],
        label: str,
        subject: str,
        path: str,
    ) -> dict[str, Any]:
        """The properties of the subtypes the discriminator of ``obj`` may choose."""
        key: str = discriminator["key"]
        values: dict[str, str] = discriminator["values"]
        at = f"{path}.{key}".lstrip(".")
        node = prop(obj, key)
        # Where the subtype is not known (an expression, a mistake), any subtype's properties pass:
        # one mistake, one finding.
        chosen: list[str] = []
        if node is None:
            self.finding(where, obj, subject, at, f"missing: {label} needs it to be one of {sorted(values)}")
            chosen.extend(values.values())
        resolved = self.resolve(node, where) if node is not None else []
        if node is not None and not resolved:
            chosen.extend(values.values())
        for value, scope in resolved:
            literal = _literal(value)
            if isinstance(literal, str) and literal in values:
                chosen.append(values[literal])
                continue
            chosen.extend(values.values())
            if isinstance(literal, str):
                options = f"{sorted(values)}{did_you_mean(literal, values)}"
                self.finding(scope, value, subject, at, f"{literal!r} is none of {options}")
        merged = dict(fields)
        for ref in chosen:
            for name, spec in self.models[ref]["fields"].items():
                merged.setdefault(name, spec)
        return merged

    # --- reads of resource properties --------------------------------------------------------

    def check_reads(self, where: Where) -> None:
        """``symbol.a.b`` where symbol is a resource of this template: a.b must be in its model."""
        template = where.template
        symbols = {r.symbol: r for r in template.resources}
        for node in walk(template.root):
            if node.type != "member_expression" or (node.parent and node.parent.type == "member_expression"):
                continue
            chain = _member_chain(node)
            if chain is None or chain[0] not in symbols:
                continue
            resource = symbols[chain[0]]
            type_api = f"{resource.type}@{resource.api_version}"
            spec = self.types.get(type_api)
            ref = None
            if spec is not None and "model" in spec:
                ref = spec["model"]
            elif spec is not None:  # by name: only a literal name tells which model
                literal = _literal(prop(resource.body, "name") or resource.body)
                ref = spec["by_name"].get(literal) if isinstance(literal, str) else None
            if ref is None:
                continue
            self.check_read(node, where, {"model": ref}, chain, type_api)

    def check_read(self, node: Node, where: Where, type_: Any, chain: list[str], subject: str) -> None:
        path = chain[0]
        for depth, name in enumerate(chain[1:]):
            if depth == 0 and name in RESOURCE_READS:
                return
            if type_ == "any" or (isinstance(type_, dict) and "dict" in type_):
                return
            if isinstance(type_, str) or "array" in type_:
                self.finding(where, node, subject, f"{path}.{name}", f"read of a property of {type_}")
                return
            fields, discriminator, _ = self.fields_of(type_)
            if discriminator is not None:
                fields = dict(fields)
                for ref in discriminator["values"].values():
                    for sub, spec in self.models[ref]["fields"].items():
                        fields.setdefault(sub, spec)
            path = f"{path}.{name}"
            if name not in fields:
                self.finding(where, node, subject, path, f"unknown property{did_you_mean(name, fields)}")
                return
            type_ = fields[name]["type"]

    # --- modules -----------------------------------------------------------------------------

    def check_modules(self, where: Where) -> None:
        template = where.template
        for module in template.modules.values():
            target = self.template_of(module.path)
            if target is None:
                continue  # check_modules_exist_and_are_used reports it
            subject = f"module {module.symbol}"
            params = prop(module.body, "params")
            passed: set[str] = set()
            for value, scope in self.resolve(params, where):
                if value.type != "object":
                    continue
                for item in self.properties(value):
                    name = key_of(item)
                    passed.add(name)
                    if name not in target.params:
                        self.finding(
                            scope,
                            item,
                            subject,
                            f"params.{name}",
                            f"not a parameter of {self.file_of(target)}{did_you_mean(name, target.params)}",
                        )
            if params is not None and not self.resolve(params, where):
                continue  # params from an expression: not known here
            declaration = module.body
            while declaration.parent is not None and declaration.type != "module_declaration":
                declaration = declaration.parent
            for name in target.params:
                if name not in passed and target.param_default(name) is None:
                    message = f"missing {name}, a parameter without a default"
                    self.finding(where, declaration, subject, "params", message)
        # Outputs read from a module: symbol.outputs.name.
        for node in walk(template.root):
            if node.type != "member_expression" or (node.parent and node.parent.type == "member_expression"):
                continue
            chain = _member_chain(node)
            if chain is None or len(chain) < 3 or chain[0] not in template.modules or chain[1] != "outputs":
                continue
            target = self.template_of(template.modules[chain[0]].path)
            if target is not None and chain[2] not in target.outputs:
                self.finding(
                    where,
                    node,
                    f"module {chain[0]}",
                    f"outputs.{chain[2]}",
                    f"not an output of {self.file_of(target)}{did_you_mean(chain[2], target.outputs)}",
                )

    def run(self) -> Report:
        for where in self.scopes():
            for resource in where.template.resources:
                self.check_resource(resource, where)
            self.check_reads(where)
            self.check_modules(where)
        return self.report


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def _member_chain(node: Node) -> list[str] | None:
    """``a.b.c`` -> [a, b, c]; None when the chain does not start at a plain name."""
    names: list[str] = []
    while node.type == "member_expression":
        obj, member = named_children(node)[0], named_children(node)[-1]
        names.insert(0, source_text(member))
        node = obj
    if node.type != "identifier":
        return None
    return [source_text(node), *names]


def check_arm(model: Model, arm: dict[str, Any]) -> Report:
    """Check every template of ``model`` against the ARM models ``arm`` (infra/arm_models.py's JSON)."""
    return Checker(model, arm).run()


def problems(report: Report, arm: dict[str, Any], root: Path = ROOT) -> list[str]:
    """What fails the check: every finding, a resource without a model that NO_MODEL does not expect,
    and a models file that is stale or maps a type no template declares."""
    found = [str(finding) for finding in report.findings]
    for type_api, places in sorted(report.unmodelled.items()):
        if type_api not in NO_MODEL:
            found.append(f"{', '.join(places)}: {type_api}: no model of this exact API version in infra/arm_models.py")
    found += [f"NO_MODEL lists {t}, which no template declares" for t in sorted(NO_MODEL.keys() - report.unmodelled)]
    found += [
        f"infra/arm_models.py maps {t}, which no template declares"
        for t in sorted(arm["types"].keys() - report.declared)
    ]
    for name, digest in sorted(arm["inputs"].items()):
        if hashlib.sha256((root / name).read_bytes()).hexdigest() != digest:
            found.append(f"{ARM_MODELS.relative_to(ROOT)} is older than {name}: run `make arm-models`")
    return found


def main() -> int:
    """``make arm-check``: check infra/bicep and print what was checked, and what was not."""
    from tests.infra.bicep import load_model

    arm = load_arm_models()
    report = check_arm(load_model(), arm)
    packages = ", ".join(f"{name}=={version}" for name, version in arm["packages"].items())
    bodies = sum(len(places) for places in report.checked.values())
    print(f"arm-check: {bodies} resource bodies of {len(report.checked)} types against {packages}")
    for type_api, places in sorted(report.unmodelled.items()):
        print(f"arm-check: no model for {type_api} ({', '.join(places)}): {NO_MODEL.get(type_api, 'unexpected')}")
    found = problems(report, arm)
    for problem in found:
        print(problem, file=sys.stderr)
    print(f"arm-check: {len(found)} problem(s)", file=sys.stderr if found else sys.stdout)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
