"""The composition root: settings, routing, the Call Automation client and telemetry, built once per
process; and the two entry points the triggers call, which carry out what the core decides.

One IncomingCall: ``on_incoming_call(envelope)`` reads the call (core/events), routes it
(core/routing: the whole decision), claims it against duplicates and carries the decision out
through Call Automation (adapters/call_automation). One callback: ``on_callback(authorization,
body)`` verifies the JWT, reads each event, asks the callback flow (core/callback_flow) for the
next step and carries it out. Nothing between the event and the answer reads a file or the
network: :func:`start` does all of that when ``function_app`` is imported, so a missing setting or
an invalid routing file fails there, naming what is wrong, before any call arrives.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.adapters import settings, telemetry
from shared.adapters.call_automation import CallActions, create_client
from shared.adapters.callback_auth import CallbackAuthError, CallbackVerifier, SigningKeysUnavailable
from shared.adapters.dedupe import CallStates, Claims
from shared.adapters.store import CallStore, FlowStates, RecordWriter, StoreError
from shared.core import call_record, callback_flow, events, redaction, routing
from shared.core.acs import INCOMING_CALL_EVENT
from shared.core.callback_flow import CallbackEvent, CallbackResult, HangUp, Note, Transfer, Transition
from shared.core.decision import RULE_UNKNOWN_NUMBER, ActionResult, Decision, Outcome, after_transient
from shared.core.routing_table import Routing
from shared.core.sealing import Sealer, prewarm

log = logging.getLogger("handoff")

#: The function app's root (where function_app.py and routing.yaml live in the deployed package).
APP_ROOT = Path(__file__).resolve().parent.parent

#: A callback event leads to at most a transfer, a fallback transfer and a hang-up.
_MAX_STEPS = 3
#: Call Automation posts a handful of events per callback; a bound keeps a hostile sender's cost small.
MAX_CALLBACK_EVENTS = 50
MAX_CALLBACK_BODY_BYTES = 256 * 1024
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@dataclass(frozen=True)
class Handled:
    """What became of one delivered event."""

    event_id: str
    call: events.IncomingCall | None
    decision: Decision | None
    result: ActionResult


class RetryableFailure(Exception):
    """Raised to the Functions host so Event Grid redelivers: a retry can still reach the call."""


class App:
    def __init__(self, cfg: settings.Settings, table: Routing, actions: CallActions):
        self.settings = cfg
        self.routing = table
        self.actions = actions
        self.claims = Claims()
        self.call_states = CallStates()
        self.workstreams = {ws.name: ws for ws in table.workstreams}
        self.verifier = CallbackVerifier(cfg.openid_config_url, cfg.acs_resource_id)
        #: The call records (HANDOFF_STORE), or None: then lookups answer 503 and the flow's state
        #: is this process's own.
        self.store = CallStore.from_settings(cfg, actions.sealer) if cfg.store else None
        self.records = (
            RecordWriter(self.store, on_written=telemetry.store_record_written, on_lost=telemetry.store_record_lost)
            if self.store is not None
            else None
        )
        self.flow_states = FlowStates(self.store, self.call_states, self.records)

    # ---- IncomingCall ------------------------------------------------------------------------

    def on_incoming_call(self, envelope: events.Envelope) -> Handled:
        """The Event Grid trigger's entry. Raises RetryableFailure only when Event Grid's redelivery
        can still reach the ringing call; every other outcome is logged and acknowledged."""
        handled = self.handle(envelope)
        if handled.result.retryable:
            raise RetryableFailure(f"event {handled.event_id}: {handled.result.detail}")
        return handled

    def handle(self, envelope: events.Envelope) -> Handled:
        """One event, whatever its content: never raises."""
        if envelope.event_type != INCOMING_CALL_EVENT:
            log.warning(
                "event %s of type %s ignored: only IncomingCall is handled", envelope.event_id, envelope.event_type
            )
            return Handled(
                envelope.event_id, None, None, ActionResult(Outcome.PERMANENT, "none", "not an IncomingCall")
            )
        try:
            call = events.incoming_call(envelope)
        except events.EventError as exc:
            # Without a readable incomingCallContext nothing can act on the call; a retry sends the same bytes.
            log.error("IncomingCall %s cannot be read: %s", envelope.event_id, exc)
            return Handled(envelope.event_id, None, None, ActionResult(Outcome.PERMANENT, "none", str(exc)))
        return telemetry.incoming_call(call, lambda: self._act(call))

    def _act(self, call: events.IncomingCall) -> Handled:
        decision = routing.route(call, self.routing)
        keys = call.delivery_keys
        if not self.claims.claim(keys):
            result = ActionResult(Outcome.DUPLICATE, decision.action, "this call is already being handled")
        else:
            result = self.actions.execute(call, decision)
            if result.outcome == Outcome.TRANSIENT:
                result = after_transient(result, events.age_s(call.event_time, time.time()))
                if result.retryable:
                    self.claims.release(keys)  # let Event Grid's redelivery act
            self._record(call, decision, result)
        self._log_call(call, decision, result)
        return Handled(call.event_id, call, decision, result)

    def _record(self, call: events.IncomingCall, decision: Decision, result: ActionResult) -> None:
        """Queue the call's record: after the Call Automation request, never delaying it."""
        if self.records is None or result.retryable:
            return  # a retryable failure: the redelivery that acts writes the record
        ws = self.workstreams.get(decision.workstream) if decision.workstream else None
        ttl = timedelta(hours=self.settings.context_ttl_hours)
        try:
            record = call_record.for_call(call, decision, result, ws.variables if ws else None, _now(), ttl)
        except Exception as exc:  # the call has its action: a bug here must not cost it its log line
            log.error("call %s: its record could not be built (%s)", call.correlation_id, type(exc).__name__)
            return
        if record is not None:
            self.records.submit(record)

    def _log_call(self, call: events.IncomingCall, decision: Decision, result: ActionResult) -> None:
        fields: dict[str, Any] = {
            "event_id": call.event_id,
            "correlation_id": call.correlation_id,
            "server_call_id": call.server_call_id,
            "called": call.called_address,
            "workstream": decision.workstream,
            "uui_form": decision.uui_form,
            "rule": decision.rule,
            "queue": decision.queue,
            "action": str(decision.action),
            "outcome": str(result.outcome),
            "context": redaction.masked_context(decision, key=self.settings.redaction_key),
            "warnings": [w.message for w in decision.warnings],
            "errors": [e.message for e in decision.errors],
            "elapsed_ms": round(result.elapsed_ms, 2),
        }
        level = logging.INFO
        if result.outcome in (Outcome.PERMANENT, Outcome.TRANSIENT):
            level = logging.ERROR
        elif (
            result.outcome in (Outcome.STALE, Outcome.DUPLICATE, Outcome.ALREADY_HANDLED)
            or decision.errors
            or decision.rule == RULE_UNKNOWN_NUMBER  # the Event Grid filter should have kept it out
        ):
            level = logging.WARNING
        log.log(
            level,
            "call %s to %s: rule %s, queue %s, %s → %s%s",
            call.correlation_id or call.event_id,
            call.called_address or "(unknown number)",
            decision.rule,
            decision.queue,
            decision.action,
            result.outcome,
            f" ({result.detail})" if result.detail else "",
            extra={"handoff": fields},
        )

    # ---- Call Automation callbacks: the transfer with context --------------------------------

    def on_callback(self, authorization: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
        """Verify the callback's JWT, then act on each event. Returns (HTTP status, JSON body).

        401: no valid token. 503: the signing keys cannot be fetched (logged and counted: every
        transfer waits on a callback). 413/400: a body too large, or not a JSON array of at most
        50 event objects. Otherwise 200, even for events this app does not act on: ACS must not
        redeliver them. Nothing here answers 500."""
        if len(body) > MAX_CALLBACK_BODY_BYTES:
            telemetry.callback_rejected("too_large")
            return 413, {"error": f"the body is over {MAX_CALLBACK_BODY_BYTES} bytes"}
        try:
            self.verifier.verify(authorization)
        except SigningKeysUnavailable as exc:
            log.error("callback refused (503): the signing keys cannot be fetched: %s", exc)
            telemetry.callback_rejected("keys_unavailable")
            return 503, {"error": "the callback signing keys cannot be fetched"}
        except CallbackAuthError as exc:
            log.warning("callback refused (401): %s", exc)
            telemetry.callback_rejected("unauthorized")
            return 401, {"error": "unauthorized"}
        problem, items = _callback_items(body)
        if problem:
            log.warning("callback refused (400): %s", problem)
            telemetry.callback_rejected("malformed")
            return 400, {"error": problem}
        handled = []
        for item in items:
            event = callback_flow.read_callback(item, self.actions.sealer)
            assert event is not None  # _callback_items let only objects through
            try:
                handled.append(str(telemetry.callback(event, functools.partial(self._follow, event))))
            except Exception as exc:  # a bug must not turn into a 500 that ACS retries forever
                log.error("%s: callback %s could not be handled: %s", event.who, event.kind, type(exc).__name__)
                handled.append(f"{event.kind}: error")
        return 200, {"handled": handled}

    def _transition(self, event: CallbackEvent) -> Transition:
        """The flow's next step for ``event``, with the call's state moved on atomically: of two
        threads handling the same callback, one acts and the other sees a repeat."""
        for _ in range(_MAX_STEPS):
            state, version = self.flow_states.get(event)
            transition = callback_flow.next_step(event, state, self.routing)
            if transition.next_state is None or event.call_connection_id is None:
                return transition
            if self.flow_states.set_if(event, version, transition.next_state):
                return transition
        return Transition(Note("duplicate"))

    def _follow(self, event: CallbackEvent) -> CallbackResult:
        """Carry out the steps the callback flow gives for ``event`` (a refused transfer is fed back in)."""
        done: list[str] = []
        failed = False
        current = event
        for _ in range(_MAX_STEPS):
            step = self._transition(current).step
            if step.message:
                log.log(_LEVELS[step.level], step.message)
            if isinstance(step, Note):
                done.append(step.result)
                break
            assert current.call_connection_id is not None  # the flow acts only on known connections
            if isinstance(step, HangUp):
                result = self.actions.hang_up(current.call_connection_id)  # retried inside the deadline
                done.append(f"hung up ({result.outcome})")
                if result.failed:
                    log.error(
                        "%s: hanging up failed too (%s); the caller may still be on the line", event.who, result.detail
                    )
                failed = True
                break
            result = self._transfer(current, step)
            done.append(f"transfer ({step.attempt}): {result.outcome}")
            if result.outcome == Outcome.DONE:
                break
            # Refused outright: no CallTransferFailed will follow, so the flow hears of it now.
            failed = True
            current = callback_flow.refused(current, step.operation_context, result.detail)
        return CallbackResult(event.kind, "; ".join(done), failed)

    def _transfer(self, event: CallbackEvent, step: Transfer) -> ActionResult:
        assert event.call_connection_id is not None
        for note in step.headers.notes:
            log.warning("%s: %s", event.who, note)
        result = self.actions.transfer(event.call_connection_id, step.target, step.headers, step.operation_context)
        if result.outcome == Outcome.DONE:
            log.info("%s: transfer to %s (%s attempt) requested", event.who, step.target, step.attempt)
        return result

    # ---- the call's record: lookups and the stranded-call sweep --------------------------------

    def lookup(self, correlation_id: str, reveal_key: str | None = None) -> tuple[int, dict[str, Any]]:
        """``GET /api/calls/{correlationId}``: the call's latest leg as JSON (404 unknown, 503 store
        off or unavailable). Sensitive values are masked unless ``reveal_key`` is HANDOFF_REVEAL_KEY;
        a wrong key is refused (403) rather than silently masked, so a misconfigured desktop shows."""
        if self.store is None:
            return 503, {"error": "store off: HANDOFF_STORE is not set, so no call records are kept"}
        if not call_record.valid_correlation_id(correlation_id):
            return 400, {"error": "not a correlation id"}
        reveal = False
        if reveal_key is not None:
            expected = self.settings.reveal_key
            if expected is None or not hmac.compare_digest(reveal_key.encode(), expected.encode()):
                log.warning("lookup of call %s refused (403): the reveal key does not match", correlation_id)
                return 403, {"error": "the reveal key does not match"}
            reveal = True
        try:
            legs = self.store.legs(correlation_id, reveal=reveal)
        except StoreError as exc:
            log.error("lookup of call %s: the store is unavailable (%s)", correlation_id, exc)
            return 503, {"error": "the store is unavailable"}
        if not legs:
            return 404, {"error": "no record of this call"}
        log.info("lookup of call %s: %d leg(s)%s", correlation_id, len(legs), ", sensitive values revealed" * reveal)
        return 200, {**call_record.detail(legs[-1], reveal), "legs": len(legs)}

    def sweep(self, now: datetime | None = None) -> dict[str, int]:
        """The timer's work (every minute): calls answered for a transfer that no transfer reached
        within HANDOFF_TRANSFER_TIMEOUT_SECONDS (their CallConnected callback never came, or came
        to an instance that failed) are transferred to the workstream's fallback queue, or hung up;
        then records past their time to live are deleted. Returns what it did, by kind."""
        done = {"stranded": 0, "transferred": 0, "hung_up": 0, "settled": 0, "failed": 0, "deleted": 0}
        if self.store is None:
            return done
        now = now or _now()
        waited = timedelta(seconds=self.settings.transfer_timeout_seconds)
        try:
            stranded = self.store.stranded(now - waited)
        except StoreError as exc:
            log.error("sweep: the store is unavailable (%s); stranded calls are looked for again next minute", exc)
            return done
        for record in stranded:
            self._rescue(record, now, done)
        try:
            done["deleted"] = self.store.delete_expired(now)
        except StoreError as exc:
            log.error("sweep: expired records not deleted: %s", exc)
        return done

    def _rescue(self, record: call_record.CallRecord, now: datetime, done: dict[str, int]) -> None:
        assert self.store is not None
        try:
            state, version = self.store.flow(record.correlation_id, record.leg)
            if state not in (None, callback_flow.CallState.ANSWERED):
                self.store.settle(record)  # its flow moved on after the record was written
                done["settled"] += 1
                return
            transition = callback_flow.stranded(record, self.routing, self.settings.transfer_timeout_seconds)
            assert transition.next_state is not None
            if not self.store.set_flow_if(record.correlation_id, record.leg, version, transition.next_state, now):
                return  # a callback or another instance's sweep got there first
        except StoreError as exc:
            log.error("sweep: call %s not looked at: %s", record.correlation_id, exc)
            done["failed"] += 1
            return
        done["stranded"] += 1
        step = transition.step
        log.log(_LEVELS[getattr(step, "level", "warning")], getattr(step, "message", ""))
        connection = record.call_connection_id
        result: ActionResult | None = None
        if isinstance(step, Transfer) and connection:
            result = self.actions.transfer(connection, step.target, step.headers, step.operation_context)
            if result.outcome == Outcome.DONE:
                done["transferred"] += 1
        if connection and (result is None or result.outcome != Outcome.DONE):
            hang_up = self.actions.hang_up(connection)
            if hang_up.outcome in (Outcome.DONE, Outcome.ALREADY_HANDLED):
                done["hung_up"] += 1
            else:
                done["failed"] += 1
                log.error("sweep: call %s could not be hung up either (%s)", record.correlation_id, hang_up.detail)
        elif not connection:
            done["failed"] += 1
            log.error("sweep: call %s has no call connection id: nothing can act on it", record.correlation_id)
        with contextlib.suppress(StoreError):  # else the next sweep sees the flow moved on and settles it
            self.store.settle(record)


def _now() -> datetime:
    return datetime.now(UTC)


def _callback_items(body: bytes) -> tuple[str, list[dict[str, Any]]]:
    """(problem, events): a callback body is a JSON array of at most 50 event objects (or one object)."""
    try:
        items = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "the body is not JSON", []
    except RecursionError:
        return "the body's JSON is nested too deeply", []
    items = items if isinstance(items, list) else [items]
    if len(items) > MAX_CALLBACK_EVENTS:
        return f"{len(items)} events in one callback; at most {MAX_CALLBACK_EVENTS} are accepted", []
    if not all(isinstance(item, dict) for item in items):
        return "every callback event must be a JSON object", []
    return "", items


_current: App | None = None


def start(env: dict[str, str] | None = None, client: Any = None) -> App:
    """Build the process's app from settings (raises SettingsError / ConfigError naming the problem)."""
    global _current
    cfg = settings.load(env)
    table = settings.load_routing(str(APP_ROOT / cfg.config_path))  # an absolute path stays as it is
    settings.check_for_routing(cfg, table)
    # Telemetry before the client: its per-attempt policy joins the client's pipeline; a no-op when off.
    telemetry.configure(cfg)
    sealer = Sealer(cfg.context_keys) if cfg.context_keys else None
    if sealer is not None and any(ws.sensitive for ws in table.workstreams):
        # The first transfer call seals its sensitive values: load AES-GCM now, beside the start-up,
        # rather than on that call's path. Not a daemon: a process that ends while a daemon thread
        # is inside cryptography's Rust module init aborts ("FATAL: exception not rethrown", SIGABRT:
        # the thread is unwound through a frame that catches the unwind). Exit waits for the import.
        threading.Thread(target=prewarm, name="handoff-prewarm").start()
    actions = CallActions(cfg, client or create_client(cfg, telemetry.call_automation_policies()), sealer)
    _current = App(cfg, table, actions)
    return _current


def current() -> App:
    if _current is None:
        raise RuntimeError("handoff app not started: function_app must be imported first")
    return _current
