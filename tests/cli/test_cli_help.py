"""The handoff command's help reads as plain text, every option says what it does, and "queue" is
defined once."""

from __future__ import annotations

import argparse
import io
import re
from contextlib import redirect_stdout

import pytest

from shared import cli

# reStructuredText and Markdown that argparse would print as is.
MARKUP = re.compile(r"``|:(func|class|meth|mod|data|attr):|\*\*|`[^`]+`_")


def parsers() -> dict[str, argparse.ArgumentParser]:
    top = cli.build_parser()
    [sub] = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    return {"handoff": top, **{f"handoff {name}": p for name, p in sub.choices.items()}}


def help_text(parser: argparse.ArgumentParser) -> str:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        parser.print_help()
    return buffer.getvalue()


@pytest.mark.parametrize("name", list(parsers()))
def test_every_option_and_argument_has_a_help_line(name: str) -> None:
    parser = parsers()[name]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.dest} has no help"


@pytest.mark.parametrize("name", list(parsers()))
def test_help_is_plain_text(name: str) -> None:
    text = help_text(parsers()[name])
    assert MARKUP.search(text) is None, MARKUP.search(text)


def test_queue_is_defined_once_in_the_top_level_help() -> None:
    texts = {name: help_text(parser) for name, parser in parsers().items()}
    definitions = {name: len(re.findall(r"a queue is", text, re.IGNORECASE)) for name, text in texts.items()}
    assert definitions["handoff"] == 1 and sum(definitions.values()) == 1
    top = " ".join(texts["handoff"].split())
    assert "a queue is a routing target" in top and "not an ACS Job Router queue or a Dynamics 365 queue" in top


@pytest.mark.parametrize("name", list(parsers()))
def test_help_exits_0(name: str) -> None:
    argv = [*name.split()[1:], "--help"]
    with redirect_stdout(io.StringIO()):
        assert cli.main(argv) == 0
