"""The handoff command on hostile input: a clear message and exit 1 (2 for usage), never a traceback,
never a raw terminal control character echoed back."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared import cli
from tests.conftest import EXAMPLES, ROOT

HANDOFF = str(Path(sys.executable).parent / "handoff")


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def hostile_files(tmp_path: Path) -> dict[str, Path]:
    binary = tmp_path / "binary.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"id": 5, "eventType": []')
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps([1, "x", None]))
    return {"missing": tmp_path / "missing.json", "directory": tmp_path, "binary": binary, "deep": deep,
            "garbage": garbage, "odd": odd}  # fmt: skip


@pytest.mark.parametrize("kind", ["missing", "directory", "binary", "deep", "garbage", "odd"])
def test_route_answers_an_unreadable_event_file_with_a_message_and_exit_1(tmp_path: Path, kind: str) -> None:
    path = hostile_files(tmp_path)[kind]
    code, out, err = run("route", "--config", str(ROOT / "routing.yaml"), str(path))
    assert (code, out) == (1, "")
    assert err.startswith("handoff route: ") and "Traceback" not in err


@pytest.mark.parametrize("kind", ["missing", "directory", "binary", "deep", "garbage"])
def test_check_config_answers_an_unreadable_file_with_a_message_and_exit_1(tmp_path: Path, kind: str) -> None:
    path = hostile_files(tmp_path)[kind]
    code, out, err = run("check-config", str(path))
    assert (code, out) == (1, "") and str(path) in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["decode"],
        ["decode", "a=b", "--max-length", "0"],
        ["decode", "a=b", "--max-length", "-3"],
        ["decode", "a=b", "--max-length", "lots"],
        ["decode", "a=b", "--default-encoding", "base64"],
        ["encode", "--format", "rot13", "a=b"],
        ["route", "--config"],
        ["nonsense"],
        [],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    assert run(*argv)[0] == 2


def test_decode_never_echoes_a_terminal_control_character(tmp_path: Path) -> None:
    # %1B is refused by the codec (control characters); C1 CSI (U+009B) and a bidi override (U+202E)
    # are valid text in a value, so they are shown as escapes, in the text form and in JSON.
    value = "Note=a\u009b31m\u202eevil;Name=%C2%9B"
    for argv in (["decode", value], ["decode", value, "--json"]):
        code, out, _ = run(*argv)
        assert code == 0
        assert "\u009b" not in out and "\u202e" not in out
        assert "\\x9b" in out and "\\u202e" in out


def test_error_messages_never_echo_a_control_character_from_the_input() -> None:
    code, _, err = run("encode", "--format", "hex", "K\u001b[2J=v")
    assert code == 1 and "\u001b" not in err and "\\x1b" in err


def test_an_argument_with_undecodable_bytes_is_shown_not_a_crash() -> None:
    result = subprocess.run(
        [HANDOFF, "decode", b"a=\xff\xfe".decode("utf-8", "surrogateescape")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 1) and "\\udcff" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["check-config", str(EXAMPLES / "routing.example.yaml")],
        ["decode", "3530303131323233333434353b363738393b3132;pd=4", "--json"],
        ["route", "--config", str(ROOT / "routing.yaml"), str(EXAMPLES / "calls" / "billing-priority.json"), "--json"],
    ],
    ids=["check-config", "decode", "route"],
)
def test_a_closed_pipe_ends_the_command_quietly(argv: list[str]) -> None:
    # `handoff ... | head -0`: the reader is gone before anything is written.
    reader, writer = os.pipe()
    os.close(reader)
    try:
        result = subprocess.run(
            [HANDOFF, *argv], stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60, check=False
        )
    finally:
        os.close(writer)
    assert result.stderr == "" and result.returncode == 1
