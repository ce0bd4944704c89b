"""The handoff command: test an IVR's headers and a routing configuration before go-live.

    handoff decode VALUE|HEADERS|INVITE|- [--file F] [--json] [--profile avaya-shared [--item C8=UserData]]
                                                                how User-to-User and X- headers decode
    handoff encode --format plain|hex|pd4|avaya-shared ITEM...  build a User-to-User value
    handoff route [--config F] EVENT|INVITE|-                   the decision for a saved call
    handoff route [--config F] --to NUMBER [--from N] [--uui V] [--header 'X-Name: v']...
    handoff listen [--port 5060] [--config F]                   a SIP probe: prove the SBC passes UUI
    handoff check-config FILE                                   validate a routing configuration
    handoff numbers [--config F]                                the called numbers the Event Grid filter admits
    handoff calls show CORRELATION_ID [--json] [--reveal]       a call's record (HANDOFF_STORE)
    handoff calls list [--since 15m] [--queue Q] [--json]       the calls handled recently
    handoff hash VARIABLE [VALUE]                               the keyed hash telemetry shows
    handoff --version

Exit status: 0 success, 1 the input was understood but is invalid (undecodable value, bad
configuration, unreadable event, fewer INVITEs than --count), 2 usage errors. Sensitive context
values are masked unless --reveal is given. Everything printed goes through visible(): a control
character from the input is shown as an escape, never passed to the terminal.
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, TextIO, cast

from shared.adapters import settings
from shared.core import acs, config, events, redaction, routing, sip, uui

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


#: The most text decode and route read from a file or standard input: a pasted SIP trace is a few
#: kilobytes; a bigger input is a mistake (a capture file), not a message.
MAX_INPUT_BYTES = 1024 * 1024


def _read_input(source: str, stdin: TextIO, err: TextIO, command: str) -> str | None:
    """The text of a file, or of standard input for ``-``; None after a message on err."""
    text: str
    if source == "-":
        binary: BinaryIO | None = getattr(stdin, "buffer", None)  # the real stdin: bytes, so decoding cannot fail
        if binary is not None:
            raw = binary.read(MAX_INPUT_BYTES + 1)
            text, size = raw.decode("utf-8", "surrogateescape"), len(raw)
        else:
            text = stdin.read(MAX_INPUT_BYTES + 1)
            size = len(text.encode("utf-8", "surrogateescape"))
    else:
        try:
            with open(source, "rb") as fh:
                raw = fh.read(MAX_INPUT_BYTES + 1)
        except OSError as exc:
            err.write(f"handoff {command}: cannot read {source}: {exc.strerror}\n")
            return None
        # Undecodable bytes stay visible as \udcXX escapes rather than failing the whole file.
        text, size = raw.decode("utf-8", "surrogateescape"), len(raw)
    if size > MAX_INPUT_BYTES:
        where = "standard input" if source == "-" else source
        err.write(f"handoff {command}: {where} is over {MAX_INPUT_BYTES // 1024} KiB; paste the SIP message only\n")
        return None
    return text.removeprefix("\ufeff")


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


_HEX_DATA = re.compile(r"(?:0[xX])?(?:[0-9A-Fa-f]{2})+")


def _hex_hint(value: str, result: dict[str, Any], args: argparse.Namespace, names: dict[str, str]) -> str | None:
    """A hint when a bare run of hex digits (no ;encoding=hex, no ;pd=) read as plain text but is
    valid hex text: the codec never guesses hex, so the workstream has to say so."""
    if args.default_encoding != "plain" or not result["ok"] or result["params"] or result["encoding"] != "plain":
        return None
    if _HEX_DATA.fullmatch(value.strip()) is None:
        return None
    as_hex = uui.report(
        value, max_length=args.max_length, default_encoding="hex", profile=args.profile, item_names=names
    )
    if not as_hex["ok"]:
        return None
    return (
        "hint: this is all hex digits with no ;encoding=hex or ;pd= parameter, so it reads as plain text "
        "(hex is never guessed); if the IVR sends hex this way, try --default-encoding hex "
        "(in routing.yaml: uui.default_encoding: hex)"
    )


def _write_report(result: dict[str, Any], out: TextIO, positional_names: list[str], indent: str = "") -> None:
    """The text form of one ``uui.report``."""
    if not result["ok"]:
        error = result["error"]
        out.write(f"{indent}cannot decode ({error['kind']}): {error['message']}\n")
        return
    out.write(f"{indent}encoding: {result['encoding']}\n")
    if result["pd"] is not None:
        out.write(f"{indent}protocol discriminator: {result['pd']}\n")
    if result["params"]:
        out.write(f"{indent}parameters: " + ", ".join(f"{k}={v}" for k, v in result["params"].items()) + "\n")
    if result["items"] is not None:
        out.write(f"{indent}Avaya shared UUI: {len(result['items'])} item(s)\n")
        for item in result["items"]:
            out.write(f"{indent}  {item['id']} ({item['length']} bytes) {item['name']} = {item['value']}\n")
    else:
        out.write(f"{indent}text: {result['text']}\n")
        if result["pairs"] is not None:
            for key, value in result["pairs"].items():
                out.write(f"{indent}  {key} = {value}\n")
    if result["positional"] is not None:
        for i, value in enumerate(result["positional"], 1):
            name = f"{positional_names[i - 1]} = " if i <= len(positional_names) else ""
            out.write(f"{indent}  [{i}] {name}{value}\n")
    for warning in result["warnings"]:
        out.write(f"{indent}warning: {warning}\n")


def cmd_decode(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    names = _item_names(args, args.profile == uui.AVAYA_SHARED, "--profile", err)
    if names is None:
        return EXIT_USAGE
    if (args.value is None) == (args.file is None):
        err.write("handoff decode: give one of VALUE, - (standard input) or --file FILE\n")
        return EXIT_USAGE
    text = args.value
    if args.file is not None or text == "-":
        text = _read_input(args.file or "-", stdin, err, "decode")
        if text is None:
            return EXIT_INVALID
    positional_names = _names(args.positional or "")

    def decode_one(value: str) -> dict[str, Any]:
        result = uui.report(
            value, max_length=args.max_length, default_encoding=args.default_encoding, profile=args.profile,
            item_names=names,
        )  # fmt: skip
        if args.positional is not None:
            result["positional_names"] = positional_names
        return result

    if not sip.looks_like_headers(text):
        result = decode_one(text)
        hint = _hex_hint(text, result, args, names)
        if args.json:
            _print_json(result, out)
        else:
            _write_report(result, out, positional_names)
            if hint:
                out.write(hint + "\n")
        return EXIT_OK if result["ok"] else EXIT_INVALID
    return _decode_headers(sip.read_pasted(text), decode_one, args, names, out)


def _decode_headers(
    messages: list[sip.SipMessage],
    decode_one: Callable[[str], dict[str, Any]],
    args: argparse.Namespace,
    names: dict[str, str],
    out: TextIO,
) -> int:
    """Pasted header lines or SIP messages: the User-to-User and X- headers of each request."""
    requests = [m for m in messages if m.status is None]  # responses carry no caller's context
    views: list[dict[str, Any]] = []
    for message in requests:
        headers = sip.context_headers(message)
        found = events.find_uui(headers)
        custom = {h.header: h for h in events.custom_headers(headers, "sip")}
        rows = sip.uui_rows(message, found[0]) if found else 0
        if found and rows > 1:
            error = uui.UUIError("multiple_values", sip.several_uui_rows(found[0], rows))
            result: dict[str, Any] | None = uui.report_error(error)
        else:
            result = decode_one(found[1]) if found else None
        hint = _hex_hint(found[1], result, args, names) if found and result else None
        views.append(
            {
                "message": message.start_line,
                "line": message.line,
                "call_id": message.get("Call-ID"),
                "uui_header": found[0] if found else None,
                "uui_value": found[1] if found else None,
                "uui": result,
                "custom_headers": [
                    {"header": name, "variable": custom[name].name if name in custom else None, "value": value}
                    for name, value in headers.items()
                    if found is None or name != found[0]
                ],
                "hints": [hint] if hint else [],
            }
        )
    ok = any(v["uui"] is not None or v["custom_headers"] for v in views)
    ok = ok and all(v["uui"] is None or v["uui"]["ok"] for v in views)
    if args.json:
        _print_json(views, out)
        return EXIT_OK if ok else EXIT_INVALID
    positional_names = _names(args.positional or "")
    for index, view in enumerate(views, 1):
        if view["message"] is not None:
            label = f"message {index} of {len(views)}: " if len(views) > 1 else ""
            call_id = f", Call-ID {view['call_id']}" if view["call_id"] else ""
            out.write(f"{label}{view['message']} (line {view['line']}{call_id})\n")
        if view["uui"] is not None:
            out.write(f"{view['uui_header']}: {view['uui_value']}\n")
            _write_report(view["uui"], out, positional_names, indent="  ")
        for header in view["custom_headers"]:
            out.write(f"{header['header']}: {header['value']}\n")
            if header["variable"] is not None:
                out.write(f"  context variable {header['variable']} = {header['value']}\n")
            elif header["header"].lower().replace("-", "") == "xusertouser":
                out.write("  not read: X-User-To-User stands in only when no User-to-User header came\n")
            else:
                out.write("  not context: other X-MS- headers are reserved by Microsoft\n")
        if view["uui"] is None and not view["custom_headers"]:
            out.write("no User-to-User or X- header found\n")
        for hint in view["hints"]:
            out.write(f"  {hint}\n")
    if not views:
        out.write("no SIP request and no header lines found\n")
    return EXIT_OK if ok else EXIT_INVALID


def cmd_encode(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    names = _item_names(args, args.format == uui.AVAYA_SHARED, "--format", err)
    if names is None:
        return EXIT_USAGE
    with_equals = [item for item in args.values if "=" in item]
    values: dict[str, str] | list[str]
    if with_equals and len(with_equals) != len(args.values):
        err.write("handoff encode: give either KEY=VALUE pairs or positional values, not both\n")
        return EXIT_USAGE
    if with_equals and args.format == "pd4":
        # pd=4 is the contract's form for values without keys (named by the workstream's
        # uui.positional); keyed pairs go as hex with ;encoding=hex, which every form decodes.
        err.write(
            "handoff encode: --format pd4 carries positional values without keys; "
            "for KEY=VALUE pairs use --format hex (or plain)\n"
        )
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


def _calls_from_text(text: str, source: str, err: TextIO) -> list[events.IncomingCall] | None:
    """IncomingCall JSON (one event or an array, either schema), else SIP text: each INVITE in it,
    or a bare block of header lines as one call."""
    if text.lstrip().startswith(("{", "[")):
        try:
            # As bytes again, so JSON that is not UTF-8 is refused as such (events.load_json).
            return events.parse_events(text.encode("utf-8", "surrogateescape"))
        except events.EventError as exc:
            err.write(f"handoff route: {source}: {exc}\n")
            return None
    messages = sip.read_pasted(text)
    invites = [m for m in messages if m.method == "INVITE"]
    if not invites:
        invites = [m for m in messages if m.method is None and m.status is None]
    if not invites:
        err.write(f"handoff route: {source}: neither IncomingCall JSON nor a SIP INVITE\n")
        return None
    return [sip.incoming_call(m, label=f"{source} line {m.line}") for m in invites]


def _calls_from_options(args: argparse.Namespace, err: TextIO) -> list[events.IncomingCall] | None:
    headers: list[tuple[str, str]] = []
    if args.uui is not None:
        headers.append((acs.UUI_HEADER, args.uui))
    for given in args.header:
        parsed = sip.parse_header_line(given)
        if parsed is None:
            err.write(
                f"handoff route: --header takes 'Name: value' (e.g. 'X-MS-Custom-Intent: billing'), not {given!r}\n"
            )
            return None
        headers.append(parsed)
    return [sip.call_from_parts(args.to, args.caller, headers)]


def _write_decision(view: dict[str, Any], out: TextIO, indent: str = "") -> None:
    context = ", ".join(f"{k}={v}" for k, v in view["context"].items()) or "(none)"
    out.write(
        f"{indent}{view['called']}: workstream {view['workstream'] or '-'}, rule {view['rule']}, "
        f"queue {view['queue'] or '-'}, {view['action']} {view['target'] or ''}".rstrip()
        + "\n"
    )
    out.write(f"{indent}  context: {context}\n")
    for message in view["warnings"]:
        out.write(f"{indent}  warning: {message}\n")
    for message in view["errors"]:
        out.write(f"{indent}  error: {message}\n")


def cmd_route(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    by_flags = args.to is not None
    if by_flags == (args.event is not None):
        err.write("handoff route: give an EVENT file (or - for standard input) or --to NUMBER, not both\n")
        return EXIT_USAGE
    if not by_flags and (args.caller is not None or args.uui is not None or args.header):
        err.write("handoff route: --from, --uui and --header describe a call given with --to\n")
        return EXIT_USAGE
    table = _load_routing(args.config, err)
    if table is None:
        return EXIT_INVALID
    if by_flags:
        calls = _calls_from_options(args, err)
        if calls is None:
            return EXIT_USAGE
    else:
        text = _read_input(args.event, stdin, err, "route")
        calls = None if text is None else _calls_from_text(text, args.event, err)
        if calls is None:
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
        for index, view in enumerate(views, 1):
            if len(views) > 1:
                out.write(f"event {index} of {len(views)} (id {view['event_id']})\n")
            _write_decision(view, out)
    return EXIT_OK


def _uui_summary(view: dict[str, Any] | None) -> str:
    """One line on how the User-to-User value decoded (values are on the context line)."""
    if view is None:
        return "no User-to-User header arrived: many SBCs strip it unless told to pass it on"
    if not view["ok"]:
        return f"cannot decode ({view['error']['kind']}): {view['error']['message']}"
    form = view["encoding"] + (f", protocol discriminator {view['pd']}" if view["pd"] is not None else "")
    if view["items"] is not None:
        return f"decoded: {form}, Avaya shared UUI, {len(view['items'])} item(s)"
    if view["positional"] is not None:
        return f"decoded: {form}, {len(view['positional'])} positional value(s)"
    keys = list(view["pairs"] or {})  # names only: the values are on the context line, masked
    return f"decoded: {form}, {len(keys)} pair(s): {', '.join(keys)}"


def cmd_listen(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    table = _load_routing(args.config, err)
    if table is None:
        return EXIT_INVALID
    from shared.adapters import sip_probe  # here, so the other commands start without the socket code

    reason = sip.REASONS[args.reply]

    def emit(obj: dict[str, Any], text: str) -> None:
        out.write(json.dumps(obj, ensure_ascii=False) + "\n" if args.json else text)
        out.flush()  # line by line: a script or a test reads the output as calls arrive

    def on_request(arrival: sip_probe.Arrival) -> None:
        message, peer = arrival.message, f"{arrival.peer[0]}:{arrival.peer[1]}"
        where = {"transport": arrival.transport, "source": peer, "method": message.method}
        call_id = message.get("Call-ID")
        if message.method == "ACK":
            emit({**where, "call_id": call_id}, f"ACK over {arrival.transport} from {peer} (Call-ID {call_id})\n")
            return
        if message.method != "INVITE":
            code = arrival.code or 0
            emit(
                {**where, "call_id": call_id, "reply": code},
                f"{message.method} over {arrival.transport} from {peer}: answered {code} {sip.REASONS.get(code, '')}\n",
            )
            return
        call = sip.incoming_call(message, label=f"{arrival.transport} {peer}")
        decision = routing.route(call, table)
        view = redaction.decision_view(call, decision, reveal=args.reveal, sensitive_anywhere=table.sensitive_anywhere)
        variables = {h.header: h.name for h in call.custom_headers}
        headers = {
            name: redaction.uui_header_value(value, reveal=args.reveal)
            if name == call.uui_header
            else redaction.header_value(
                variables.get(name, name), value, decision, reveal=args.reveal,
                sensitive_anywhere=table.sensitive_anywhere,
            )
            for name, value in call.sip_headers.items()
        }  # fmt: skip
        lines = [f"INVITE over {arrival.transport} from {peer}: {message.uri} (Call-ID {call_id})\n"]
        lines.append(f"  caller {call.caller.address if call.caller else '-'}\n")
        lines += [f"  {name}: {value}\n" for name, value in headers.items()]
        lines.append(f"  {_uui_summary(view['uui'])}\n")
        decision_text = io.StringIO()
        _write_decision(view, decision_text, indent="  ")
        lines.append(decision_text.getvalue())
        lines.append(f"  answered {arrival.code} {sip.REASONS.get(arrival.code or 0, '')}\n")
        emit({**where, "call_id": call_id, "request_uri": message.uri, "headers": headers, **view,
              "reply": arrival.code}, "".join(lines))  # fmt: skip

    def on_note(note: str) -> None:
        emit({"note": note}, f"note: {note}\n")

    probe = sip_probe.Probe(args.host, args.port, invite_reply=args.reply, on_request=on_request, on_note=on_note)
    try:
        host, port = probe.open()
    except OSError as exc:
        err.write(f"handoff listen: cannot listen on {args.host} port {args.port}: {exc.strerror or exc}\n")
        probe.close()
        return EXIT_INVALID
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    emit(
        {"listening": {"host": host, "port": port, "transports": ["udp", "tcp"], "reply": args.reply}},
        f"listening for SIP on udp and tcp {shown}: INVITE is answered {args.reply} {reason}, OPTIONS 200 OK\n",
    )
    try:
        loopback = ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        err.write(
            f"handoff listen: {host} is reachable from other machines; anyone who can reach it can send "
            "INVITEs here. Stop the probe when the test call is done.\n"
        )
    try:
        answered = probe.serve(count=args.count, timeout=args.timeout)
    except KeyboardInterrupt:
        answered = probe.invites
        emit({"stopped": {"invites": answered}}, f"stopped: {answered} INVITE(s) answered\n")
        return 130
    finally:
        probe.close()
    emit({"stopped": {"invites": answered}}, f"stopped: {answered} INVITE(s) answered\n")
    if args.count is not None and answered < args.count:
        err.write(f"handoff listen: {answered} of {args.count} INVITE(s) arrived within {args.timeout:g} s\n")
        return EXIT_INVALID
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


_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """``15m``, ``2h``, ``1d``, ``30s``: a look-back window, in seconds."""
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 15m, 2h or 1d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _store(env: Mapping[str, str], err: TextIO, reveal: bool) -> Any:
    """The call records' store named by HANDOFF_STORE (and _TABLE), or None with the reason written."""
    from shared.adapters.store import CallStore
    from shared.core.sealing import Sealer

    store = env.get("HANDOFF_STORE", "").strip()
    if not store:
        err.write("handoff calls: set HANDOFF_STORE to the store's table endpoint or connection string\n")
        return None
    keys = tuple(k.strip() for k in env.get("HANDOFF_CONTEXT_KEY", "").split(",") if k.strip())
    if reveal and not keys:
        err.write("handoff calls: --reveal needs HANDOFF_CONTEXT_KEY, the key that sealed the sensitive values\n")
        return None
    table = env.get("HANDOFF_STORE_TABLE", "").strip() or "calls"
    return CallStore(store, table, Sealer(keys) if keys else None, env.get("AZURE_CLIENT_ID") or None)


def cmd_calls(args: argparse.Namespace, out: TextIO, err: TextIO, env: Mapping[str, str]) -> int:
    """``calls show`` one call's record; ``calls list`` the recent ones."""
    from datetime import UTC, datetime, timedelta

    from shared.adapters.store import StoreError
    from shared.core import call_record

    reveal = bool(getattr(args, "reveal", False))
    store = _store(env, err, reveal)
    if store is None:
        return EXIT_USAGE
    try:
        if args.calls_command == "show":
            if not call_record.valid_correlation_id(args.correlation_id):
                err.write("handoff calls show: not a correlation id\n")
                return EXIT_USAGE
            legs = store.legs(args.correlation_id, reveal=reveal)
        else:
            since = datetime.now(UTC) - timedelta(seconds=args.since)
            legs = store.recent(since, args.queue, limit=args.limit)
    except StoreError as exc:
        err.write(f"handoff calls: {exc}\n")
        return EXIT_INVALID
    if args.calls_command == "show":
        if not legs:
            err.write(f"handoff calls show: no record of call {args.correlation_id}\n")
            return EXIT_INVALID
        if args.json:
            out.write(json.dumps(call_record.view(legs[-1], reveal), ensure_ascii=False) + "\n")
            return EXIT_OK
        for n, leg in enumerate(legs, 1):
            out.write(_leg_text(call_record.detail(leg, reveal), n, len(legs)))
        return EXIT_OK
    if args.json:
        out.write(json.dumps([call_record.view(leg) for leg in legs], ensure_ascii=False) + "\n")
        return EXIT_OK
    for leg in legs:
        view = call_record.detail(leg)
        out.write(
            f"{view['acted_at'][:19]}  {view['correlation_id']}  to {view['called'] or '-'}  "
            f"queue {view['queue'] or '-'}  {view['action']} {view['outcome']}"
            f"{'  ' + view['state'] if view['state'] else ''}\n"
        )
    if not legs:
        err.write("handoff calls list: no call in that window\n")
    return EXIT_OK


def _leg_text(view: Mapping[str, Any], n: int, total: int) -> str:
    context = ", ".join(f"{k}={'(not stored)' if v is None else v}" for k, v in view["context"].items())
    lines = [
        f"call {view['correlation_id']}" + (f" (leg {n} of {total})" if total > 1 else ""),
        f"  to {view['called'] or '-'} from {view['caller'] or '-'}: workstream {view['workstream'] or '-'},"
        f" rule {view['rule']}, queue {view['queue'] or '-'}",
        f"  {view['action']} {view['target'] or ''} → {view['outcome']}"
        + (f"; transfer flow {view['state']}" if view["state"] else ""),
        f"  received {view['received_at']}, acted {view['acted_at']}, kept until {view['expires_at']}",
        f"  context: {context or '(none)'}",
    ]
    if view["warnings"] or view["errors"]:
        lines.append(f"  issues: {', '.join([*view['errors'], *view['warnings']])}")
    return "\n".join(lines) + "\n"


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} is not positive")
    return number


DESCRIPTION = """\
Check an IVR's transferred-call context and this app's routing before go-live.

Terms: a context variable is a named value the IVR sends (in the User-to-User header or an
X-MS-Custom-<name> / X-<name> header); a workstream owns called numbers and declares their
context variables and rules; a queue is a routing target named in the routing configuration
(routing.yaml): what Call Automation does with the call (answer, redirect, transfer or reject).
It is not an ACS Job Router queue or a Dynamics 365 queue."""

EPILOG = """\
Exit status: 0 success; 1 the input was understood but is invalid (an undecodable value, a bad
configuration, an unreadable event, fewer INVITEs than --count); 2 a usage error. Sensitive
context values are masked unless --reveal is given."""


def _reply(text: str) -> int:
    try:
        code = int(text)
    except ValueError:
        code = 0
    if code not in sip.FAILURE_REPLIES:
        codes = ", ".join(str(c) for c in sip.FAILURE_REPLIES)
        raise argparse.ArgumentTypeError(f"{text!r} is not one of the failure responses {codes}")
    return code


def _seconds(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return number


def _port(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{number} is not a port number (0-65535)")
    return number


def build_parser(out: TextIO | None = None) -> argparse.ArgumentParser:
    plain = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="handoff", description=DESCRIPTION, epilog=EPILOG, formatter_class=plain)
    parser.add_argument("--version", action=_VersionAction, out=out, help="print handoff's version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "decode",
        help="decode a User-to-User value, header lines or a pasted SIP INVITE",
        description="Decode a User-to-User value as the app would. Give the bare value, a header line "
        "(User-to-User: ..., any case, folded or not), or a whole SIP INVITE as text (sngrep, Wireshark "
        "Follow SIP, an SBC log): the User-to-User and X- headers in it are found and each is decoded.",
    )
    p.add_argument("value", nargs="?", help="the value, header lines or INVITE text; - reads standard input")
    p.add_argument("--file", metavar="FILE", help="read the value, header lines or INVITE text from FILE")
    p.add_argument("--json", action="store_true", help="print JSON: one object for a value, a list for headers")
    p.add_argument(
        "--max-length", type=_positive, default=uui.ACS_UUI_MAX, help="size limit in characters (default 256)"
    )
    p.add_argument(
        "--default-encoding",
        choices=("plain", "hex"),
        default="plain",
        help="how to read a value with no ;encoding= or ;pd= parameter (the workstream's uui.default_encoding)",
    )
    p.add_argument(
        "--positional",
        metavar="A,B,C",
        help="names for values without keys, in order (the workstream's uui.positional)",
    )
    p.add_argument(
        "--profile",
        choices=uui.PROFILES,
        default="standard",
        help="the workstream's uui.profile: avaya-shared reads Avaya shared UUI items and the UCID",
    )
    item_help = "avaya-shared: the context variable item ID fills instead of Item<ID> (uui.items); repeatable"
    p.add_argument("--item", action="append", default=[], metavar="ID=NAME", help=item_help)

    p = sub.add_parser(
        "encode",
        help="build a User-to-User value",
        description="Build a User-to-User value from KEY=VALUE pairs, or from positional values (no keys).",
    )
    p.add_argument(
        "--format",
        choices=uui.ENCODE_FORMATS,
        default="plain",
        help="plain (k=v;k2=v2), hex (;encoding=hex), pd4 (positional values only, ;pd=4) or avaya-shared",
    )
    p.add_argument("--item", action="append", default=[], metavar="ID=NAME", help=item_help)
    p.add_argument("values", nargs="+", metavar="KEY=VALUE|VALUE", help="the context variables, or positional values")

    p = sub.add_parser(
        "route",
        help="show the decision for a saved call: an IncomingCall event, a SIP INVITE, or --to",
        description="Show what the app would do with a call: its workstream, context variables, rule, "
        "queue and action. The call is an IncomingCall event (JSON, one or an array), a SIP INVITE as "
        "text (several in one file are each routed), or described with --to and the options after it.",
    )
    p.add_argument(
        "event", nargs="?", metavar="EVENT", help="IncomingCall JSON or SIP INVITE text; - reads standard input"
    )
    p.add_argument("--config", default="routing.yaml", help="the routing configuration (default: routing.yaml here)")
    p.add_argument("--to", metavar="NUMBER", help="instead of EVENT: the called number (E.164) or a SIP URI")
    p.add_argument("--from", dest="caller", metavar="NUMBER", help="with --to: the caller's number or URI")
    p.add_argument("--uui", metavar="VALUE", help="with --to: the User-to-User value the call carries")
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="with --to: a header the call carries, e.g. 'X-MS-Custom-Intent: billing'; repeatable",
    )
    p.add_argument("--json", action="store_true", help="print JSON: one object, or a list for several calls")
    p.add_argument("--reveal", action="store_true", help="show sensitive context values")

    p = sub.add_parser(
        "listen",
        help="a SIP probe: show what reaches this app through the SBC (go-live check)",
        description="Listen for SIP on UDP and TCP. For each INVITE print the User-to-User and X- headers "
        "that arrived, how they decode, the context variables and the decision the app would take, then "
        "answer with a final failure response so the test call ends. OPTIONS get 200. Listens on "
        "loopback unless --host names another address of this machine.",
    )
    p.add_argument("--port", type=_port, default=5060, help="UDP and TCP port (default 5060; 0 picks a free one)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default 127.0.0.1); name an interface's address, or 0.0.0.0 for all",
    )
    p.add_argument("--config", default="routing.yaml", help="the routing configuration (default: routing.yaml here)")
    p.add_argument(
        "--reply",
        type=_reply,
        default=480,
        metavar="CODE",
        help="the final response to each INVITE (default 480 Temporarily Unavailable; e.g. 486, 603)",
    )
    p.add_argument("--count", type=_positive, help="stop after this many INVITEs (and their ACKs)")
    p.add_argument("--timeout", type=_seconds, metavar="SECONDS", help="stop after this many seconds")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")
    p.add_argument("--reveal", action="store_true", help="show sensitive context values and the raw User-to-User")

    p = sub.add_parser("check-config", help="validate a routing configuration")
    p.add_argument("file", help="the routing configuration, e.g. routing.yaml")

    p = sub.add_parser("numbers", help="the phone numbers the workstreams own, comma-separated (the Event Grid filter)")
    p.add_argument("--config", default="routing.yaml", help="routing YAML (default routing.yaml)")

    p = sub.add_parser(
        "calls",
        help="look calls up in the call records' store (HANDOFF_STORE)",
        description="Read the call records the app keeps (HANDOFF_STORE: the table endpoint, signed in as "
        "you, or a connection string; HANDOFF_STORE_TABLE, default calls). Sensitive context variables are "
        "masked; show --reveal opens them with HANDOFF_CONTEXT_KEY.",
    )
    calls = p.add_subparsers(dest="calls_command", required=True, metavar="show|list")
    q = calls.add_parser("show", help="one call's record, by the correlation id ACS gives every leg of it")
    q.add_argument("correlation_id", metavar="CORRELATION_ID")
    q.add_argument("--json", action="store_true", help="print {correlation_id, called, caller, workstream, queue, ...}")
    q.add_argument("--reveal", action="store_true", help="show sensitive values (needs HANDOFF_CONTEXT_KEY)")
    q = calls.add_parser("list", help="the calls handled recently, newest first")
    q.add_argument("--since", type=_duration, default=_duration("15m"), help="how far back: 30s, 15m, 2h, 1d")
    q.add_argument("--queue", help="only the calls routed to this queue")
    q.add_argument("--limit", type=_positive, default=200, help="at most this many (default 200)")
    q.add_argument("--json", action="store_true", help="print a JSON list of records (sensitive values masked)")

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
    stdin: TextIO | None = None,
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
        code = _run(args, safe_out, safe_err, os.environ if env is None else env, stdin or sys.stdin)
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


def _run(args: argparse.Namespace, out: TextIO, err: TextIO, env: Mapping[str, str], stdin: TextIO) -> int:
    if args.command == "decode":
        return cmd_decode(args, out, err, stdin)
    if args.command == "encode":
        return cmd_encode(args, out, err)
    if args.command == "route":
        return cmd_route(args, out, err, stdin)
    if args.command == "listen":
        return cmd_listen(args, out, err)
    if args.command == "hash":
        return cmd_hash(args, out, err, env)
    if args.command == "numbers":
        return cmd_numbers(args, out, err)
    if args.command == "calls":
        return cmd_calls(args, out, err, env)
    return cmd_check_config(args, out, err)


if __name__ == "__main__":
    sys.exit(main())
