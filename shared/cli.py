"""The ``handoff`` command: test an IVR's headers and a routing configuration before go-live.

    handoff decode VALUE [--json] [--profile avaya-shared [--item C8=UserData]]
                                                  how a User-to-User value decodes
    handoff encode --format plain|hex|pd4|avaya-shared K=V...
                                                  build a User-to-User value (or positional values)
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
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO, cast

from shared.adapters import settings
from shared.core import config, events, redaction, routing, uui

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


#: Characters a terminal may act on: C0 controls but TAB and newline, DEL, C1 controls (0x9B is
#: a one-byte CSI on some terminals), the bidirectional overrides and isolates (Trojan Source), and
#: lone surrogates (what undecodable bytes in an argument become; they cannot be printed).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def visible(text: str) -> str:
    """``text`` with every character a terminal may act on shown as an escape (``\\x1b``, ``\\u202e``)."""
    return _UNSAFE.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text
    )


class _Visible:
    """A text stream that never passes on a control character from the input (see :func:`visible`)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(visible(text))

    def flush(self) -> None:
        self._stream.flush()


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


def _item_names(args: argparse.Namespace, avaya_shared: bool, option: str, err: TextIO) -> dict[str, str] | None:
    """The ``--item ID=NAME`` options as the workstream's ``uui.items``; None after a usage error."""
    if not args.item:
        return {}
    if not avaya_shared:
        err.write(f"handoff {args.command}: --item names the items of {option} {uui.AVAYA_SHARED}\n")
        return None
    pairs: dict[str, str] = {}
    for given in args.item:
        ident, equals, name = given.partition("=")
        if not equals or not name:
            err.write(f"handoff {args.command}: --item takes ID=NAME (e.g. C8=UserData), not {given!r}\n")
            return None
        pairs[ident] = name
    try:
        return uui.normalise_item_names(pairs)
    except ValueError as exc:
        err.write(f"handoff {args.command}: --item: {exc}\n")
        return None


def cmd_decode(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    names = _item_names(args, args.profile == uui.AVAYA_SHARED, "--profile", err)
    if names is None:
        return EXIT_USAGE
    result = uui.report(
        args.value,
        max_length=args.max_length,
        default_encoding=args.default_encoding,
        profile=args.profile,
        item_names=names,
    )
    if args.json:
        _print_json(result, out)
    elif result["ok"]:
        out.write(f"encoding: {result['encoding']}\n")
        if result["pd"] is not None:
            out.write(f"protocol discriminator: {result['pd']}\n")
        if result["params"]:
            out.write("parameters: " + ", ".join(f"{k}={v}" for k, v in result["params"].items()) + "\n")
        if result["items"] is not None:
            out.write(f"Avaya shared UUI: {len(result['items'])} item(s)\n")
            for item in result["items"]:
                out.write(f"  {item['id']} ({item['length']} bytes) {item['name']} = {item['value']}\n")
        else:
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
    names = _item_names(args, args.format == uui.AVAYA_SHARED, "--format", err)
    if names is None:
        return EXIT_USAGE
    with_equals = [item for item in args.values if "=" in item]
    values: dict[str, str] | list[str]
    if with_equals and len(with_equals) != len(args.values):
        err.write("handoff encode: give either KEY=VALUE pairs or positional values, not both\n")
        return EXIT_USAGE
    if with_equals:
        # Split at the first "=" only: ItemC8=ACCT=42 is the item ItemC8 with the value ACCT=42.
        values = dict(item.split("=", 1) for item in args.values)
    else:
        values = list(args.values)
    try:
        encoded = uui.encode(values, args.format, item_names=names)
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
        views.append(
            redaction.decision_view(call, decision, reveal=args.reveal, sensitive_anywhere=table.sensitive_anywhere)
        )
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


def cmd_numbers(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """The called numbers the Event Grid subscription must let through: every E.164 number a
    workstream owns, comma-separated (the deploy derives its filter from this, so the numbers live
    in routing.yaml only). Its filter is on data.to.PhoneNumber.Value: a workstream number that is
    an ACS or Teams raw id cannot be in it, and is named on stderr."""
    table = _load_routing(args.config, err)
    if table is None:
        return EXIT_INVALID
    numbers = sorted(n for n in table.by_number if n.startswith("+"))
    for other in sorted(n for n in table.by_number if not n.startswith("+")):
        err.write(
            f"handoff numbers: {other} is not a phone number; the Event Grid filter on phone numbers cannot admit it\n"
        )
    if not numbers:
        err.write("handoff numbers: no workstream owns a phone number, so no call would pass the filter\n")
        return EXIT_INVALID
    out.write(",".join(numbers) + "\n")
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


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} is not positive")
    return number


def build_parser(out: TextIO | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="handoff", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action=_VersionAction, out=out, help="print handoff's version and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("decode", help="decode a User-to-User header value")
    p.add_argument("value", help="the header value, e.g. '7369...;encoding=hex'")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--max-length", type=_positive, default=uui.ACS_UUI_MAX, help="size limit (default 256)")
    p.add_argument("--default-encoding", choices=("plain", "hex"), default="plain")
    p.add_argument(
        "--profile",
        choices=uui.PROFILES,
        default="standard",
        help="the workstream's uui.profile: avaya-shared reads Avaya shared UUI items and the UCID",
    )
    item_help = "avaya-shared: the context variable item ID fills instead of Item<ID> (uui.items); repeatable"
    p.add_argument("--item", action="append", default=[], metavar="ID=NAME", help=item_help)

    p = sub.add_parser("encode", help="build a User-to-User header value")
    p.add_argument("--format", choices=uui.ENCODE_FORMATS, default="plain")
    p.add_argument("--item", action="append", default=[], metavar="ID=NAME", help=item_help)
    p.add_argument("values", nargs="+", metavar="KEY=VALUE|VALUE")

    p = sub.add_parser("route", help="show the Decision for a saved IncomingCall event")
    p.add_argument("--config", required=True, help="routing YAML")
    p.add_argument("event", help="IncomingCall JSON (Event Grid or CloudEvents schema, one or an array)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--reveal", action="store_true", help="show sensitive context values")

    p = sub.add_parser("check-config", help="validate a routing configuration")
    p.add_argument("file")

    p = sub.add_parser("numbers", help="the phone numbers the workstreams own, comma-separated (the Event Grid filter)")
    p.add_argument("--config", default="routing.yaml", help="routing YAML (default routing.yaml)")

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
    stdout = out or sys.stdout
    safe_out = cast(TextIO, _Visible(stdout))
    safe_err = cast(TextIO, _Visible(err or sys.stderr))
    parser = build_parser(safe_out)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    try:
        code = _run(args, safe_out, safe_err, os.environ if env is None else env)
        stdout.flush()  # here, so a closed pipe is met inside the try
        return code
    except BrokenPipeError:
        # The reader went away (`| head`): nothing left to say. Point stdout at /dev/null so the
        # interpreter's own flush at exit does not raise again.
        if stdout is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_INVALID
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace, out: TextIO, err: TextIO, env: Mapping[str, str]) -> int:
    if args.command == "decode":
        return cmd_decode(args, out, err)
    if args.command == "encode":
        return cmd_encode(args, out, err)
    if args.command == "route":
        return cmd_route(args, out, err)
    if args.command == "hash":
        return cmd_hash(args, out, err, env)
    if args.command == "numbers":
        return cmd_numbers(args, out, err)
    return cmd_check_config(args, out, err)


if __name__ == "__main__":
    sys.exit(main())
