"""`.funcignore`: which files of the project a deployment leaves out (development only).

The file uses gitignore syntax: Azure Functions Core Tools and azd read it that way (azd parses it
with a gitignore library, github.com/denormal/go-gitignore). The rules implemented here are the
ones of https://git-scm.com/docs/gitignore#_pattern_format:

- blank lines and lines starting with ``#`` match nothing; ``\\#`` and ``\\!`` start a literal;
- ``!`` re-includes what an earlier pattern excluded, but never a file inside an excluded
  directory (git does not look into a directory it ignores);
- a trailing ``/`` matches directories only;
- a ``/`` at the start or in the middle anchors the pattern at the project root; without one the
  pattern matches a name at any depth;
- ``*`` and ``?`` never match ``/``; ``[...]`` is a character class; ``**/`` at the start, ``/**``
  at the end and ``/**/`` in the middle span any number of directories;
- the last pattern that matches a path decides.

`local/package.py` builds the deployment package with it, and tests/infra/test_infra.py checks the
project's `.funcignore` with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Rule:
    line: str
    negate: bool
    dir_only: bool
    regex: re.Pattern[str]


def _class(pattern: str, start: int) -> tuple[str, int] | None:
    """The regex of the character class opening at ``start`` and the index after it, if it closes."""
    i = start + 1
    negate = i < len(pattern) and pattern[i] in "!^"
    if negate:
        i += 1
    first = i
    while i < len(pattern) and (pattern[i] != "]" or i == first):
        i += 1
    if i >= len(pattern):
        return None
    body = pattern[first:i].replace("\\", "\\\\")
    return ("(?!/)[^" if negate else "(?!/)[") + body + "]", i + 1


def _translate(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i) and (i == 0 or pattern[i - 1] == "/"):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("/.*")
            i += 3
        elif pattern[i] == "*":
            while i < len(pattern) and pattern[i] == "*":
                i += 1
            out.append("[^/]*")
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (cls := _class(pattern, i)) is not None:
            out.append(cls[0])
            i = cls[1]
        elif pattern[i] == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def parse_line(line: str) -> Rule | None:
    text = line.rstrip("\r\n")
    if text.endswith("\\ "):
        text = text.rstrip(" ") + " "
    else:
        text = text.rstrip(" ")
    if not text or text.startswith("#"):
        return None
    negate = text.startswith("!")
    if negate or text.startswith(("\\#", "\\!")):  # "!" negates; a backslash makes "#" or "!" literal
        text = text[1:]
    dir_only = text.endswith("/")
    text = text.rstrip("/")
    if not text:
        return None
    anchored = "/" in text
    body = _translate(text.lstrip("/"))
    regex = re.compile(("^" if anchored else "^(?:.*/)?") + body + "$", re.DOTALL)
    return Rule(line=line, negate=negate, dir_only=dir_only, regex=regex)


class FuncIgnore:
    def __init__(self, lines: Iterable[str]) -> None:
        self.rules = [rule for line in lines if (rule := parse_line(line)) is not None]

    @classmethod
    def read(cls, root: Path) -> FuncIgnore:
        path = root / ".funcignore"
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        return cls(text.removeprefix("\ufeff").splitlines())

    def matches(self, path: str, is_dir: bool) -> bool:
        """Whether the patterns alone exclude ``path`` (relative, ``/``-separated)."""
        ignored = False
        for rule in self.rules:
            if (not rule.dir_only or is_dir) and rule.regex.match(path):
                ignored = not rule.negate
        return ignored

    def excludes(self, path: str, is_dir: bool = False) -> bool:
        """Whether ``path`` stays out of the package: it matches, or a directory above it does."""
        parts = path.strip("/").split("/")
        if any(self.matches("/".join(parts[:depth]), is_dir=True) for depth in range(1, len(parts))):
            return True
        return self.matches("/".join(parts), is_dir)

    def walk(self, root: Path) -> Iterator[str]:
        """Every file under ``root`` the patterns keep, relative and ``/``-separated, sorted."""
        found: list[str] = []
        stack = [root]
        while stack:
            directory = stack.pop()
            for entry in sorted(directory.iterdir()):
                rel = entry.relative_to(root).as_posix()
                if entry.is_symlink():
                    if not self.matches(rel, is_dir=entry.is_dir()):
                        raise ValueError(f"{rel}: a symbolic link; the package holds regular files only")
                elif entry.is_dir():
                    if not self.matches(rel, is_dir=True):
                        stack.append(entry)
                elif entry.is_file() and not self.matches(rel, is_dir=False):
                    found.append(rel)
        yield from sorted(found)
