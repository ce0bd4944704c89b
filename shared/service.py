"""The per-process service: settings, routing and the Call Automation client, built once.

``start()`` runs when ``function_app`` is imported (the worker's start-up), so a missing setting or
an invalid routing file fails there, naming what is wrong, before any call arrives. After that each
delivery costs one parse, one route and one Call Automation request: nothing is read or created
between the event and the answer.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared import calls, config, events, redaction, routing, settings, telemetry, transfer
from shared.callback_auth import CallbackAuthError, CallbackVerifier
from shared.dedupe import Claims

log = logging.getLogger("handoff")

#: The function app's root (where function_app.py and routing.yaml live in the deployed package).
APP_ROOT = Path(__file__).resolve().parent.parent

#: A call rings for 30 s and Event Grid's first retry comes ~10 s after a failed delivery: a retry
#: can still reach a ringing call only if the event is younger than this when we give up.
RETRY_CAN_HELP_BEFORE_AGE_S = 15.0


@dataclass(frozen=True)
class Handled:
    """What became of one delivered event."""

    event_id: str
    call: events.IncomingCall | None
    decision: routing.Decision | None
    outcome: calls.Outcome


class RetryableFailure(Exception):
    """Raised to the Functions host so Event Grid redelivers: a retry can still reach the call."""


def _event_age_s(event_time: str | None, now: float) -> float | None:
    if not event_time:
        return None
    text = event_time.replace("Z", "+00:00")
    # Event Grid writes 7 fractional digits; Python's parser takes at most 6.
    if "." in text:
        head, _, tail = text.partition(".")
        count = len(tail) - len(tail.lstrip("0123456789"))
        digits, zone = tail[:count], tail[count:]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return now - at.timestamp()


class Service:
    def __init__(self, cfg: settings.Settings, table: config.Routing, actions: calls.CallActions):
        self.settings = cfg
        self.routing = table
        self.actions = actions
        self.claims = Claims()
        self.workstreams = {ws.name: ws for ws in table.workstreams}
        self.verifier = CallbackVerifier(cfg.openid_config_url, cfg.acs_resource_id)

    def handle_delivery(self, payload: Any) -> list[Handled]:
        """One Event Grid delivery (an event or an array). Never raises except RetryableFailure."""
        try:
            body = events.load_json(payload)
        except events.EventError as exc:
            log.error("delivery refused: %s", exc)
            return [Handled("", None, None, calls.Outcome(calls.PERMANENT, "none", str(exc)))]
        items = body if isinstance(body, list) else [body]
        # Each event on its own: one malformed item must not cost the other calls of the batch.
        results = [self.handle_item(item, i if isinstance(body, list) else None) for i, item in enumerate(items)]
        retry = [r for r in results if r.outcome.retryable]
        if retry:
            raise RetryableFailure("; ".join(f"event {r.event_id}: {r.outcome.detail}" for r in retry))
        return results

    def handle_item(self, item: Any, index: int | None) -> Handled:
        try:
            env = events.envelope(item, index=index)
        except events.EventError as exc:
            log.error("delivery item refused: %s", exc)
            return Handled("", None, None, calls.Outcome(calls.PERMANENT, "none", str(exc)))
        return self.handle_envelope(env)

    def handle_envelope(self, env: events.Envelope) -> Handled:
        if env.event_type != events.INCOMING_CALL_TYPE:
            log.warning("event %s of type %s ignored: only IncomingCall is handled", env.event_id, env.event_type)
            return Handled(env.event_id, None, None, calls.Outcome(calls.PERMANENT, "none", "not an IncomingCall"))
        try:
            call = events.incoming_call(env)
        except events.EventError as exc:
            # Without a readable incomingCallContext nothing can act on the call; a retry sends the same bytes.
            log.error("IncomingCall %s cannot be read: %s", env.event_id, exc)
            return Handled(env.event_id, None, None, calls.Outcome(calls.PERMANENT, "none", str(exc)))
        return self.handle_call(call)

    @telemetry.traced_incoming_call(_event_age_s)
    def handle_call(self, call: events.IncomingCall) -> Handled:
        keys = (
            f"event:{call.event_id}",
            f"correlation:{call.correlation_id}" if call.correlation_id else None,
        )
        decision = routing.route(call, self.routing)
        if not self.claims.claim(keys):
            outcome = calls.Outcome(calls.DUPLICATE, decision.action, "this call is already being handled")
            self._log(call, decision, outcome)
            return Handled(call.event_id, call, decision, outcome)
        outcome = self.actions.execute(call, decision)
        if outcome.status == calls.TRANSIENT:
            age = _event_age_s(call.event_time, time.time())
            can_help = age is None or age < RETRY_CAN_HELP_BEFORE_AGE_S
            outcome = replace(
                outcome,
                detail=outcome.detail
                + ("" if can_help else f"; the event is {age:.0f}s old, a redelivery cannot help"),
                retryable=can_help,
            )
            if can_help:
                self.claims.release(keys)  # let Event Grid's redelivery act
        self._log(call, decision, outcome)
        return Handled(call.event_id, call, decision, outcome)

    def _log(self, call: events.IncomingCall, decision: routing.Decision, outcome: calls.Outcome) -> None:
        fields: Mapping[str, Any] = {
            "event_id": call.event_id,
            "correlation_id": call.correlation_id,
            "server_call_id": call.server_call_id,
            "called": call.called.address,
            "workstream": decision.workstream,
            "uui_form": decision.uui_form,
            "rule": decision.rule,
            "queue": decision.queue,
            "action": decision.action,
            "outcome": outcome.status,
            "context": redaction.masked_context(decision, key=self.settings.redaction_key),
            "warnings": [w.message for w in decision.warnings],
            "errors": [e.message for e in decision.errors],
            "elapsed_ms": round(outcome.elapsed_ms, 2),
        }
        level = logging.INFO
        if outcome.status in (calls.PERMANENT, calls.TRANSIENT):
            level = logging.ERROR
        elif (
            outcome.status in (calls.STALE, calls.DUPLICATE, calls.ALREADY_HANDLED)
            or decision.errors
            or decision.rule == routing.RULE_UNKNOWN_NUMBER  # the Event Grid filter should have kept it out
        ):
            level = logging.WARNING
        log.log(
            level,
            "call %s to %s: rule %s, queue %s, %s → %s%s",
            call.correlation_id or call.event_id,
            call.called.address,
            decision.rule,
            decision.queue,
            decision.action,
            outcome.status,
            f" ({outcome.detail})" if outcome.detail else "",
            extra={"handoff": fields},
        )

    # ---- Call Automation callbacks: the transfer with context -------------------------------

    def handle_callback_request(self, authorization: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
        """Verify the callback's JWT, then act on each event. Returns (HTTP status, JSON body)."""
        try:
            self.verifier.verify(authorization)
        except CallbackAuthError as exc:
            log.warning("callback refused (401): %s", exc)
            return 401, {"error": "unauthorized"}
        try:
            items = json.loads(body)
        except ValueError:
            return 400, {"error": "body is not JSON"}
        items = items if isinstance(items, list) else [items]
        handled = [self.handle_callback_event(item) for item in items if isinstance(item, dict)]
        return 200, {"handled": handled}

    @telemetry.traced_callback
    def handle_callback_event(self, event: dict[str, Any]) -> str:
        kind = str(event.get("type", "")).rsplit(".", 1)[-1]
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        assert isinstance(data, dict)
        connection = data.get("callConnectionId")
        try:
            op = json.loads(data.get("operationContext") or "{}")
        except ValueError:
            op = {}
        if not isinstance(op, dict) or not isinstance(connection, str):
            log.info("callback %s for a call this app did not set up: ignored", kind)
            return f"{kind}: ignored"
        who = f"call {op.get('correlationId') or connection}"
        if kind == "CallConnected":
            queue = self.routing.queues.get(str(op.get("queue")))
            if not isinstance(queue, config.TransferQueue):
                return f"{kind}: nothing to do"
            if not self.claims.claim([f"connected:{connection}"]):
                return f"{kind}: duplicate"
            return self._transfer(connection, op, queue.target, queue.uui_format, attempt="primary")
        if kind == "CallTransferAccepted":
            log.info("%s transferred to queue %s (%s)", who, op.get("queue"), op.get("target"))
            return f"{kind}: done"
        if kind == "CallTransferFailed":
            info = data.get("resultInformation") or {}
            reason = (
                f"{info.get('code')}/{info.get('subCode')}: {info.get('message')}" if isinstance(info, dict) else ""
            )
            return f"{kind}: " + self._after_failed_transfer(connection, op, reason)
        if kind == "CallDisconnected":
            queue = self.routing.queues.get(str(op.get("queue")))
            if isinstance(queue, config.TransferQueue) and f"transferring:{connection}" not in self.claims:
                log.warning("%s: caller hung up before the transfer to queue %s", who, op.get("queue"))
            else:
                log.info("%s: call ended", who)
            return f"{kind}: logged"
        return f"{kind}: ignored"

    def _transfer(self, connection: str, op: dict[str, Any], target: str, fmt: str, *, attempt: str) -> str:
        context = op.get("context") if isinstance(op.get("context"), dict) else {}
        assert isinstance(context, dict)
        ws = self.workstreams.get(str(op.get("workstream")))
        order = tuple(ws.variables) if ws else ()
        headers = transfer.build(context, order, target, fmt)
        for note in headers.notes:
            log.warning("call %s: %s", op.get("correlationId") or connection, note)
        self.claims.claim([f"transferring:{connection}"])
        op = {**op, "target": target, "attempt": attempt}
        outcome = self.actions.transfer(connection, target, headers, json.dumps(op, separators=(",", ":")))
        if outcome.status == calls.DONE:
            log.info(
                "call %s: transfer to %s (%s attempt) requested", op.get("correlationId") or connection, target, attempt
            )
            return f"transfer ({attempt}): done"
        # Refused outright: no CallTransferFailed will follow, so act on it now.
        return f"transfer ({attempt}): {outcome.status}; " + self._after_failed_transfer(connection, op, outcome.detail)

    def _after_failed_transfer(self, connection: str, op: dict[str, Any], reason: str) -> str:
        """One attempt at the workstream's fallback queue (when it has a target), then hang up."""
        who = f"call {op.get('correlationId') or connection}"
        if not self.claims.claim([f"transfer-failed:{connection}:{op.get('attempt')}"]):
            return "duplicate"
        ws = self.workstreams.get(str(op.get("workstream")))
        fallback = self.routing.queues.get(ws.fallback_queue) if ws else None
        target = getattr(fallback, "target", None)
        if op.get("attempt") == "primary" and ws is not None and isinstance(target, str):
            log.warning(
                "%s: transfer to %s failed (%s); trying fallback queue %s",
                who,
                op.get("target"),
                reason,
                ws.fallback_queue,
            )
            fmt = getattr(fallback, "uui_format", "plain")
            return self._transfer(connection, {**op, "queue": ws.fallback_queue}, target, fmt, attempt="fallback")
        log.error("%s: transfer to %s failed (%s) and no fallback is left; hanging up", who, op.get("target"), reason)
        outcome = self.actions.hang_up(connection)
        return f"hung up ({outcome.status})"


_current: Service | None = None


def start(env: Mapping[str, str] | None = None, client: Any = None) -> Service:
    """Build the process's service from settings (raises SettingsError / ConfigError naming the problem)."""
    global _current
    cfg = settings.load(env)
    table = config.load_file(str(APP_ROOT / cfg.config_path))  # an absolute path stays as it is
    telemetry.configure(cfg)  # before the client: its pipeline gets telemetry's policy; a no-op when off
    _current = Service(cfg, table, calls.CallActions(cfg, client))
    return _current


def current() -> Service:
    if _current is None:
        raise RuntimeError("handoff service not started: function_app must be imported first")
    return _current
