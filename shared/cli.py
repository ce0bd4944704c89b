"""The ``handoff`` command: test an IVR's headers and a routing configuration before go-live.

    handoff decode VALUE [--json]                 how a User-to-User value decodes
    handoff encode --format plain|hex|pd4 K=V...  build a User-to-User value (or positional values)
    handoff route --config FILE EVENT.json        the Decision for a saved IncomingCall
    handoff check-config FILE                     validate a routing configuration
    handoff hash VARIABLE [VALUE]                 the keyed hash telemetry shows for a sensitive value
    handoff --version

Exit status: 0 success, 1 the input was understood but is invalid (undecodable value, bad
configuration, unreadable event), 2 usage errors. Sensitive context values are masked unless
``--reveal`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from shared.adapters import settings
from shared.core import config, events, redaction, routing, uui

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def version() -> str:
    """The installed distribution's version; from a source checkout that is not installed, pyproject.toml's."""
    from importlib import metadata  # here, not at start-up: only --version needs it

    try:
        return metadata.version("handoff")
    except metadata.PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


class _VersionAction(argparse.Action):
    """argparse's own version action prints to sys.stdout; this one to the stream main() was given."""

    def __init__(self, option_strings: Sequence[str], dest: str, out: TextIO | None = None, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)
        self.out = out

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> NoReturn:
        (self.out or sys.stdout).write(f"handoff {version()}\n")
        parser.exit(EXIT_OK)


def _print_json(obj: Any, out: TextIO) -> None:
    out.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def cmd_decode(args: argparse.Namespace, out: TextIO) -> int:
    result = uui.report(args.value, max_length=args.max_length, default_encoding=args.default_encoding)
    if args.json:
        _print_json(result, out)
    elif result["ok"]:
        out.write(f"encoding: {result['encoding']}\n")
        if result["pd"] is not None:
            out.write(f"protocol discriminator: {result['pd']}\n")
        if result["params"]:
            out.write("parameters: " + ", ".join(f"{k}={v}" for k, v in result["params"].items()) + "\n")
        out.write(f"text: {result['text']}\n")
        if result["pairs"] is not None:
            for key, value in result["pairs"].items():
                out.write(f"  {key} = {value}\n")
        if result["positional"] is not None:
            for i, value in enumerate(result["positional"], 1):
                out.write(f"  [{i}] {value}\n")
        for warning in result["warnings"]:
            out.write(f"warning: {warning}\n")
    else:
        error = result["error"]
        out.write(f"cannot decode ({error['kind']}): {error['message']}\n")
    return EXIT_OK if result["ok"] else EXIT_INVALID


def cmd_encode(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with_equals = [item for item in args.values if "=" in item]
    values: dict[str, str] | list[str]
    if with_equals and len(with_equals) != len(args.values):
        err.write("handoff encode: give either KEY=VALUE pairs or positional values, not both\n")
        return EXIT_USAGE
    if with_equals:
        values = dict(item.split("=", 1) for item in args.values)
    else:
        values = list(args.values)
    try:
        encoded = uui.encode(values, args.format)
    except uui.UUIEncodeError as exc:
        err.write(f"handoff encode: {exc}\n")
        return EXIT_INVALID
    out.write(encoded + "\n")
    return EXIT_OK


def _load_routing(path: str, err: TextIO) -> config.Routing | None:
    try:
        return settings.load_routing(path)
    except config.ConfigError as exc:
        err.write(str(exc) + "\n")
        return None


def cmd_route(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    table = _load_routing(args.config, err)
    if table is None:
        return EXIT_INVALID
    try:
        with open(args.event, "rb") as fh:
            calls = events.parse_events(fh.read())
    except OSError as exc:
        err.write(f"handoff route: cannot read {args.event}: {exc.strerror}\n")
        return EXIT_INVALID
    except events.EventError as exc:
        err.write(f"handoff route: {args.event}: {exc}\n")
        return EXIT_INVALID
    views = []
    for call in calls:
        decision = routing.route(call, table)
        views.append(redaction.decision_view(call, decision, reveal=args.reveal))
    if args.json:
        _print_json(views[0] if len(views) == 1 else views, out)
    else:
        for view in views:
            context = ", ".join(f"{k}={v}" for k, v in view["context"].items()) or "(none)"
            out.write(
                f"{view['called']}: workstream {view['workstream'] or '-'}, rule {view['rule']}, "
                f"queue {view['queue'] or '-'}, {view['action']} {view['target'] or ''}".rstrip()
                + "\n"
            )
            out.write(f"  context: {context}\n")
            for message in view["warnings"]:
                out.write(f"  warning: {message}\n")
            for message in view["errors"]:
                out.write(f"  error: {message}\n")
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    table = _load_routing(args.file, err)
    if table is None:
        return EXIT_INVALID
    out.write(table.summary() + "\n")
    return EXIT_OK


def cmd_hash(args: argparse.Namespace, out: TextIO, err: TextIO, env: Mapping[str, str]) -> int:
    """The ``hmac:...`` value logs and telemetry carry for VARIABLE=VALUE, with the deployment's key."""
    key = env.get("HANDOFF_REDACTION_KEY", "").strip()
    if not key:
        err.write("handoff hash: set HANDOFF_REDACTION_KEY to the deployment's key (it is not taken as an argument)\n")
        return EXIT_USAGE
    if len(key) < settings.REDACTION_KEY_MIN:
        err.write(f"handoff hash: HANDOFF_REDACTION_KEY must be at least {settings.REDACTION_KEY_MIN} characters\n")
        return EXIT_INVALID
    value = args.value
    if value is None:  # read from stdin, so the value stays out of the shell history
        value = sys.stdin.readline().rstrip("\r\n")
    out.write(redaction.keyed_hash(key, args.variable, value) + "\n")
    return EXIT_OK


def build_parser(out: TextIO | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="handoff", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action=_VersionAction, out=out, help="print handoff's version and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("decode", help="decode a User-to-User header value")
    p.add_argument("value", help="the header value, e.g. '7369...;encoding=hex'")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--max-length", type=int, default=uui.ACS_UUI_MAX, help="size limit (default 256)")
    p.add_argument("--default-encoding", choices=("plain", "hex"), default="plain")

    p = sub.add_parser("encode", help="build a User-to-User header value")
    p.add_argument("--format", choices=uui.ENCODE_FORMATS, default="plain")
    p.add_argument("values", nargs="+", metavar="KEY=VALUE|VALUE")

    p = sub.add_parser("route", help="show the Decision for a saved IncomingCall event")
    p.add_argument("--config", required=True, help="routing YAML")
    p.add_argument("event", help="IncomingCall JSON (Event Grid or CloudEvents schema, one or an array)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--reveal", action="store_true", help="show sensitive context values")

    p = sub.add_parser("check-config", help="validate a routing configuration")
    p.add_argument("file")

    p = sub.add_parser(
        "hash",
        help="the keyed hash that logs and telemetry show for a sensitive value (key from HANDOFF_REDACTION_KEY)",
    )
    p.add_argument("variable", help="the context variable's name, e.g. AccountNumber (case-sensitive)")
    p.add_argument("value", nargs="?", help="its value as the IVR sends it; omitted: read one line from stdin")
    return parser


def main(
    argv: Sequence[str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser(out)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if args.command == "decode":
        return cmd_decode(args, out)
    if args.command == "encode":
        return cmd_encode(args, out, err)
    if args.command == "route":
        return cmd_route(args, out, err)
    if args.command == "hash":
        return cmd_hash(args, out, err, os.environ if env is None else env)
    return cmd_check_config(args, out, err)


if __name__ == "__main__":
    sys.exit(main())
