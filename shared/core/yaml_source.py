"""YAML read with every value's line and its text as written, and duplicate keys refused.

Facts (YAML 1.1, which PyYAML implements): a plain (unquoted) scalar is typed by how it looks —
``0100003`` is an octal integer (32771), ``no``/``off``/``yes`` are booleans, ``2026-11-30`` a
date, ``~`` or nothing null, ``1_000`` the integer 1000. An operator pasting a list of customer
ids or language codes gets something else than they wrote. So besides the constructed value
(what pydantic validates), each scalar keeps its source text and whether it was quoted, and each
node its line: rule operands are typed from the text as written (shared/core/config.py), and every
problem names its line. A mapping that repeats a key is an error (PyYAML keeps the last silently).
No I/O: the caller reads the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

Path = tuple[Any, ...]  # keys and list indexes from the root: ("workstreams", 0, "rules", 1)


@dataclass(frozen=True)
class Scalar:
    """A scalar as written: its text, whether it was quoted, and what YAML 1.1 reads it as."""

    text: str
    quoted: bool
    tag: str  # the resolved tag: tag:yaml.org,2002:int, :bool, :str, :null, :float, :timestamp...
    line: int

    @property
    def yaml_type(self) -> str:
        """int, bool, str, null, float, timestamp..."""
        return self.tag.rsplit(":", 1)[-1]


@dataclass
class Document:
    """The constructed data, each node's line by path, and each scalar as written by path."""

    data: Any
    lines: dict[Path, int]
    scalars: dict[Path, Scalar]
    problems: list[tuple[int, str]]

    def line(self, path: Path) -> int:
        """The line of ``path``, or of its nearest ancestor that exists (a missing key: its mapping)."""
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)


class YAMLSyntaxError(ValueError):
    def __init__(self, line: int, column: int, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.column = column
        self.problem = problem


def read(text: str) -> Document:
    """Compose ``text`` (libyaml's safe loader when PyYAML has it) and walk its nodes."""
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        root = yaml.compose(text, Loader=loader_class)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise YAMLSyntaxError(mark.line + 1 if mark else 1, mark.column + 1 if mark else 1, problem) from None
    document = Document(data=None, lines={}, scalars={}, problems=[])
    if root is not None:
        constructor = yaml.constructor.SafeConstructor()
        document.data = _walk(root, (), constructor, document)
    return document


def _walk(node: yaml.Node, path: Path, constructor: yaml.constructor.SafeConstructor, doc: Document) -> Any:
    doc.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
        out: dict[Any, Any] = {}
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, list | dict):
                doc.problems.append((line, "a key must be a plain name, not a list or a mapping"))
                continue
            if key in seen:
                doc.problems.append(
                    (line, f"the key {key!r} appears twice in one mapping (also on line {seen[key]}); keep one")
                )
                continue
            seen[key] = line
            out[key] = _walk(value_node, (*path, key), constructor, doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*path, i), constructor, doc) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    doc.scalars[path] = Scalar(
        text=node.value, quoted=node.style in ("'", '"'), tag=node.tag, line=node.start_mark.line + 1
    )
    return constructor.construct_object(node, deep=True)
