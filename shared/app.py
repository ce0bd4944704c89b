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

import functools
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.adapters import settings, telemetry
from shared.adapters.call_automation import CallActions, create_client
from shared.adapters.callback_auth import CallbackAuthError, CallbackVerifier, SigningKeysUnavailable
from shared.adapters.dedupe import CallStates, Claims
from shared.core import callback_flow, events, redaction, routing
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
        self._log_call(call, decision, result)
        return Handled(call.event_id, call, decision, result)

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
        connection = event.call_connection_id
        for _ in range(_MAX_STEPS):
            state, version = self.call_states.get(connection) if connection else (callback_flow.CallState.ANSWERED, 0)
            transition = callback_flow.next_step(event, state, self.routing)
            if transition.next_state is None or connection is None:
                return transition
            if self.call_states.set_if(connection, version, transition.next_state):
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
        # rather than on that call's path.
        threading.Thread(target=prewarm, name="handoff-prewarm", daemon=True).start()
    actions = CallActions(cfg, client or create_client(cfg, telemetry.call_automation_policies()), sealer)
    _current = App(cfg, table, actions)
    return _current


def current() -> App:
    if _current is None:
        raise RuntimeError("handoff app not started: function_app must be imported first")
    return _current
