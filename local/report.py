"""What ``make run`` prints: one block per event delivered to the local host, from what happened.

The replay's events and every event posted to the serving stack afterwards get the same block,
built from three records and nothing else:

- the host's :class:`~local.host.Delivery`: the event as posted, and the exception if its invocation raised;
- what the app logged on the invoking thread during that invocation: the per-call record, whose
  ``extra={"handoff": ...}`` fields are masked already (shared/core/redaction.py), and its warnings and
  errors: an event that could not be read, one that is not an IncomingCall, a duplicate, a failed action;
- the emulator's record of the Call Automation requests for that call since the delivery began (the
  answer, redirect or reject, and the transfer that follows an answered call's CallConnected callback).

A callback prints a line only when the app refused it or logged a warning about it: the routine ones
show already as the emulator's actions. Requests the host answered without invoking anything (not
JSON, a wrong ``aeg-event-type``, an unknown function) and validation handshakes print a line too.

Blocks are printed by one thread, in delivery order; an answered call's block waits (at most
``settle`` seconds) for the transfer its queue promises. A replayed event carries a :class:`Claim`
(its file and what the manifest expects of it), which gets the verdict ``OK`` or ``BAD``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from local.emulator import CallAutomationEmulator, RecordedAction
from local.host import Delivery

#: The emulator requests each action takes: a transfer queue's call is answered first, and the
#: transfer follows its CallConnected callback.
OPERATIONS: dict[str, list[str]] = {
    "answer": ["answer"],
    "redirect": ["redirect"],
    "reject": ["reject"],
    "transfer": ["answer", "transfer"],
}
#: What a manifest entry's ``expect`` may name.
EXPECT_KEYS = ("action", "queue", "rule")
#: Records kept per thread between two deliveries: a thread that never delivers cannot grow without bound.
_MAX_RECORDS = 200


@dataclass
class Claim:
    """A replayed event's label and what the manifest expects of it; the printer sets ``ok``, then ``done``."""

    label: str
    expect: Mapping[str, str] | None = None
    #: False for a file's later events (a redelivery, say): printed with ``-- ``, never BAD.
    checked: bool = True
    ok: bool = False
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Seen:
    delivery: Delivery
    records: list[logging.LogRecord]
    claim: Claim | None
    at: float  # wall clock, for the time shown on a live line


def describe_actions(actions: list[RecordedAction]) -> str:
    """What the emulator recorded for one call, e.g. 'answer (callback …) → transfer to 4:+14255550123'."""
    parts = []
    for action in actions:
        body = action.body if isinstance(action.body, dict) else {}
        if action.operation == "redirect":
            text = f"redirect to {body.get('target', {}).get('rawId')}"
        elif action.operation == "reject":
            text = f"reject ({body.get('callRejectReason', 'none')})"
        elif action.operation == "answer":
            text = f"answer (callback {body.get('callbackUri')})"
        elif action.operation == "transfer":
            text = f"transfer to {body.get('targetParticipant', {}).get('rawId')}"
        else:
            text = action.operation
        if not action.succeeded:
            text += f" refused {action.status}" + (" (injected)" if action.fault else "")
        parts.append(text)
    return " → ".join(parts) or "nothing"


def call_actions(emu: CallAutomationEmulator, context: str, since: float) -> list[RecordedAction]:
    """The emulator's requests for one call since ``since``: those on its incomingCallContext, then
    the mid-call ones (transfer, hang-up) on the connection an answer among them created."""
    recent = [a for a in emu.actions if a.at >= since]
    first = [a for a in recent if isinstance(a.body, dict) and a.body.get("incomingCallContext") == context]
    connections = {a.call_connection_id for a in first if a.operation == "answer" and a.succeeded}
    return first + [a for a in recent if a.operation != "answer" and a.call_connection_id in connections]


def _log_line(record: logging.LogRecord) -> str:
    """A record the app logged, as it logged it (its messages name fields, never sensitive values)."""
    return f"    {record.levelname.lower()}: {record.getMessage()}\n"


def _handoff_fields(record: logging.LogRecord) -> dict[str, Any] | None:
    """The per-call record's structured fields (shared/app.py ``_log_call``), None for other records."""
    fields = getattr(record, "handoff", None)
    return fields if isinstance(fields, dict) and "queue" in fields else None


class Reporter(logging.Handler):
    """A handler on the ``handoff`` logger and an observer of the local host: prints each delivery."""

    def __init__(self, emu: CallAutomationEmulator, out: TextIO, settle: float = 5.0) -> None:
        super().__init__(logging.DEBUG)
        self.emu = emu
        self.out = out
        self.settle = settle
        self._local = threading.local()
        self._claims: deque[Claim] = deque()
        self._claims_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._queue: queue.Queue[Seen | None] = queue.Queue()
        self._printer = threading.Thread(target=self._print_loop, name="make-run-printer", daemon=True)

    def start(self) -> Reporter:
        self._printer.start()
        return self

    def close(self) -> None:
        """Print what is queued (bounded), then stop the printer."""
        if self._printer.is_alive():
            self._queue.put(None)
            self._printer.join(timeout=self.settle + 5)
        super().close()

    def write(self, text: str) -> None:
        with self._write_lock:
            self.out.write(text)
            self.out.flush()  # a live log: each block as it happens, also through a pipe

    # ---- what happened, as it happens -------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        records = self._thread_records()
        records.append(record)
        if len(records) > _MAX_RECORDS:
            del records[0]

    def _thread_records(self) -> list[logging.LogRecord]:
        records: list[logging.LogRecord] | None = getattr(self._local, "records", None)
        if records is None:
            records = self._local.records = []
        return records

    def observe(self, delivery: Delivery) -> None:
        """The host's observer: runs on the thread that invoked the function, right after it."""
        records = self._thread_records()
        self._local.records = []
        claim = None
        if delivery.kind == "event":
            with self._claims_lock:
                claim = self._claims.popleft() if self._claims else None
        self._queue.put(Seen(delivery, records, claim, time.time()))

    def claim(self, claims: list[Claim]) -> None:
        """The next events delivered are these, in order (the replay posts one file at a time)."""
        with self._claims_lock:
            self._claims.extend(claims)

    def unclaim(self) -> list[Claim]:
        """Claims no delivery took (the host refused the request): forget and return them."""
        with self._claims_lock:
            left = list(self._claims)
            self._claims.clear()
        return left

    # ---- printing ---------------------------------------------------------------------------

    def _print_loop(self) -> None:
        while True:
            seen = self._queue.get()
            if seen is None:
                return
            try:
                text = self.block(seen)
            except Exception as exc:  # a bug here must not stop the printing of later events
                text = f"(make run could not describe a delivery: {type(exc).__name__}: {exc})\n"
                if seen.claim is not None:
                    seen.claim.ok = False
            if text:
                self.write(text)
            if seen.claim is not None:
                seen.claim.done.set()

    def block(self, seen: Seen) -> str:
        """The lines for one delivery ("" when there is nothing worth a line)."""
        d = seen.delivery
        clock = time.strftime("%H:%M:%S", time.localtime(seen.at))
        warnings = [_log_line(r) for r in seen.records if r.levelno >= logging.WARNING]
        if d.kind == "refused":
            return f"{clock} request refused ({d.status}): {d.error}\n"
        if d.kind == "validation":
            return f"{clock} subscription validation for {d.function}: answered with the validation code (200)\n"
        if d.kind == "timer":
            errors = [f"    host: the function raised {d.error}\n"] if d.error else []
            return f"{clock} timer {d.function}\n" + "".join(warnings + errors) if warnings or errors else ""
        if d.kind == "http":
            if d.status == 200 and not warnings and d.error is None:
                return ""
            host_error = [f"    host: the function raised {d.error}\n"] if d.error else []
            return f"{clock} POST /api/{d.function} → {d.status}\n" + "".join(warnings + host_error)
        return self._event_block(seen, clock)

    def _event_block(self, seen: Seen, clock: str) -> str:
        d, claim = seen.delivery, seen.claim
        item = d.item if isinstance(d.item, dict) else {}
        label = claim.label if claim is not None else f"event {item.get('id') or '(no id)'}"
        call_record = next((r for r in seen.records if _handoff_fields(r) is not None), None)
        others = [r for r in seen.records if r is not call_record and r.levelno >= logging.WARNING]
        tail = [_log_line(r) for r in others]
        if d.error:
            # shared/app.py raises only when a redelivery can still reach the ringing call.
            tail.append(f"    host: the invocation raised {d.error}; Event Grid gets 500 and redelivers\n")

        if call_record is None:  # nothing was decided: not an IncomingCall, unreadable, or the host failed
            if claim is None:
                head = f"{clock} {label}"
            elif not claim.checked:
                claim.ok, head = True, f"--  {label}"
            else:
                claim.ok, head = False, f"BAD {label}"
            kind = item.get("eventType") or item.get("type")
            return f"{head}{f'  ({kind})' if kind else ''}\n" + "".join(tail or ["    (the app logged nothing)\n"])

        fields = _handoff_fields(call_record) or {}
        data = item.get("data")
        context = data.get("incomingCallContext") if isinstance(data, dict) else None
        done = fields.get("outcome") == "done"
        wanted = OPERATIONS.get(str(fields.get("action"))) if done else None
        actions = self._wait_for_actions(context, d.started, wanted)
        executed = [a.operation for a in actions if a.succeeded]

        lines = [
            f"    context: {', '.join(f'{k}={v}' for k, v in (fields.get('context') or {}).items()) or '(none)'}\n",
            f"    rule {fields.get('rule')} → queue {fields.get('queue')} → emulator: {describe_actions(actions)}\n",
        ]
        lines += [f"    note: {m}\n" for m in (fields.get("errors") or []) + (fields.get("warnings") or [])]
        if not done:
            lines.append(_log_line(call_record))
        lines += tail

        if claim is None:
            mark = clock
        elif not claim.checked:
            claim.ok, mark = True, "-- "
        else:
            problems = self._check(claim.expect, fields, executed) if claim.expect else []
            if not claim.expect and not (done and executed == OPERATIONS.get(str(fields.get("action")))):
                problems.append("the call did not get its action")
            lines += [f"    {p}\n" for p in problems]
            claim.ok = not problems and d.error is None
            mark = "OK " if claim.ok else "BAD"
        label = f"{label:22}" if claim is not None else label  # the replay's file names line up
        head = f"{mark} {label} to {fields.get('called') or '?'}  uui {fields.get('uui_form', '?')}\n"
        return head + "".join(lines)

    @staticmethod
    def _check(expect: Mapping[str, str], fields: Mapping[str, Any], executed: list[str]) -> list[str]:
        """What differs from the manifest: the decision's queue, rule and action, and what the emulator did."""
        problems = [
            f"expected {key} {expect[key]}, got {fields.get(key)}"
            for key in EXPECT_KEYS
            if key in expect and str(fields.get(key)) != expect[key]
        ]
        if "action" in expect and executed != OPERATIONS.get(expect["action"]):
            wanted = " then ".join(OPERATIONS.get(expect["action"], [expect["action"]]))
            problems.append(f"expected the emulator to {wanted}; it did: {', '.join(executed) or 'nothing'}")
        return problems

    def _wait_for_actions(self, context: Any, since: float, wanted: list[str] | None) -> list[RecordedAction]:
        """The call's emulator requests, waiting (at most ``settle`` seconds) until they are ``wanted``."""
        if not isinstance(context, str) or not context:
            return []
        deadline = time.monotonic() + self.settle
        while True:
            actions = call_actions(self.emu, context, since)
            if wanted is None or [a.operation for a in actions if a.succeeded] == wanted:
                return actions
            if time.monotonic() > deadline:
                return actions
            time.sleep(0.02)
