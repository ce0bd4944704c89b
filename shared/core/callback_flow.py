"""The callback flow of a call this app answered: every transition in one table.

Like h11's ``_state.py``, everything that decides what happens after the answer lives here, and
nothing here does I/O: the app feeds in a callback event, the call's state and the routing, and
carries out the :data:`Step` that comes out (shared/app.py), storing the next state.

Facts (handbook acs.md, "Mid-call callbacks"): only a connected call can be transferred, so a
``transfer`` queue's call is answered first and transferred on ``CallConnected``; a transfer ends in
``CallTransferAccepted`` or ``CallTransferFailed``; ``CallDisconnected`` ends the call connection
(after a transfer too). A transfer request that Call Automation refuses outright gets no callback
at all, so the app feeds that refusal back in as :data:`TRANSFER_REFUSED`. Callbacks are delivered at
least once and in no guaranteed order.

States of one call connection::

    answered ──CallConnected──▶ transferring ──accepted──▶ transferred
       │                          │ failed/refused
       │                          ▼
       │                  transferring-fallback ──accepted──▶ transferred
       │                          │ failed/refused             (or hung-up when the workstream's
       │                          ▼                             fallback queue has no target)
       │                       hung-up
       └──CallDisconnected (any state)──▶ ended

``answered`` is also what a process that has never seen the call knows: the operation context
echoed in each callback (which queue, which transfer attempt) lets any instance act correctly on a
first sight; the state only tells a repeated callback from a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal

from shared.core.acs import CALLBACK_EVENT_PREFIX
from shared.core.call_record import CallRecord
from shared.core.decision import OperationContext, TransferAttempt
from shared.core.routing_table import Routing, TransferQueue
from shared.core.sealing import Sealer
from shared.core.transfer import TransferHeaders, build

Level = Literal["info", "warning", "error"]

CALL_CONNECTED = "CallConnected"
TRANSFER_ACCEPTED = "CallTransferAccepted"
TRANSFER_FAILED = "CallTransferFailed"
CALL_DISCONNECTED = "CallDisconnected"
#: Not a callback: the transfer request was refused outright, so no CallTransferFailed will come.
TRANSFER_REFUSED = "TransferRefused"


class CallState(StrEnum):
    ANSWERED = "answered"
    TRANSFERRING = "transferring"
    TRANSFERRING_FALLBACK = "transferring-fallback"
    TRANSFERRED = "transferred"
    HUNG_UP = "hung-up"
    ENDED = "ended"


@dataclass(frozen=True)
class CallbackEvent:
    """One Call Automation callback event (a CloudEvent of the array ACS posts), read once."""

    kind: str  # the type without "Microsoft.Communication.", e.g. CallConnected
    event_id: str | None
    call_connection_id: str | None
    server_call_id: str | None
    correlation_id: str | None
    #: What this app sent as operationContext, echoed; None when the callback carries none of ours.
    operation_context: OperationContext | None
    result_code: Any = None
    result_sub_code: Any = None
    result_message: Any = None

    @property
    def who(self) -> str:
        """The call, for log lines: its correlation id, else its call connection id."""
        op = self.operation_context
        return f"call {(op.correlation_id if op else None) or self.correlation_id or self.call_connection_id}"

    @property
    def reason(self) -> str:
        """``code/subCode: message`` of the callback's resultInformation."""
        return f"{self.result_code}/{self.result_sub_code}: {self.result_message}"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def read_callback(item: Any, sealer: Sealer | None) -> CallbackEvent | None:
    """A callback event from its CloudEvent JSON object; None when it is not an object. Its
    operation context is read only when this app wrote it (``sealer`` verifies its mac)."""
    if not isinstance(item, dict):
        return None
    kind = str(item.get("type", ""))
    kind = kind.removeprefix(CALLBACK_EVENT_PREFIX).rsplit(".", 1)[-1]
    data = item.get("data")
    data = data if isinstance(data, dict) else {}
    info = data.get("resultInformation")
    info = info if isinstance(info, dict) else {}
    return CallbackEvent(
        kind=kind,
        event_id=_text(item.get("id")),
        call_connection_id=_text(data.get("callConnectionId")),
        server_call_id=_text(data.get("serverCallId")),
        correlation_id=_text(data.get("correlationId")),
        operation_context=OperationContext.from_json(data.get("operationContext"), sealer),
        result_code=info.get("code"),
        result_sub_code=info.get("subCode"),
        result_message=info.get("message"),
    )


def refused(event: CallbackEvent, operation_context: OperationContext, reason: str) -> CallbackEvent:
    """The event the app feeds back when Call Automation refused the transfer request itself."""
    return CallbackEvent(
        kind=TRANSFER_REFUSED,
        event_id=event.event_id,
        call_connection_id=event.call_connection_id,
        server_call_id=event.server_call_id,
        correlation_id=event.correlation_id,
        operation_context=operation_context,
        result_message=reason,
    )


# ---- Steps: what the app carries out --------------------------------------------------------


@dataclass(frozen=True)
class Transfer:
    """Transfer the connected call to ``target`` with the context in ``headers``."""

    target: str
    queue: str
    attempt: TransferAttempt
    headers: TransferHeaders
    operation_context: OperationContext  # the transfer's own: it names the target and attempt
    level: Level = "info"
    message: str = ""


@dataclass(frozen=True)
class HangUp:
    """End the call for everyone: nobody is left to take it."""

    level: Level
    message: str


@dataclass(frozen=True)
class Note:
    """Nothing to do on the call; log ``message`` (when given) and report ``result``."""

    result: str  # nothing to do | duplicate | done | logged | ignored
    level: Level = "info"
    message: str = ""


Step = Transfer | HangUp | Note


@dataclass(frozen=True)
class Transition:
    step: Step
    #: The call's state once the step is carried out; None leaves the state as it is.
    next_state: CallState | None = None


@dataclass(frozen=True)
class CallbackResult:
    """What became of one callback event: the HTTP response lists these, telemetry records them."""

    kind: str
    #: What was done, e.g. ``transfer (primary): done``, ``hung up (done)``, ``duplicate``, ``logged``.
    result: str
    #: True when the call was hung up or a Call Automation request failed.
    failed: bool = False

    def __str__(self) -> str:
        return f"{self.kind}: {self.result}"


# ---- the transitions ---------------------------------------------------------------------------


def _transfer_queue(routing: Routing, name: str | None) -> TransferQueue | None:
    queue = routing.queues.get(name) if name is not None else None
    return queue if isinstance(queue, TransferQueue) else None


def _transfer(
    event: CallbackEvent, routing: Routing, queue_name: str, queue: TransferQueue, attempt: TransferAttempt
) -> Transfer:
    op = event.operation_context
    assert op is not None
    workstream = next((ws for ws in routing.workstreams if ws.name == op.workstream), None)
    order = tuple(workstream.variables) if workstream else ()
    return Transfer(
        target=queue.target,
        queue=queue_name,
        attempt=attempt,
        headers=build(op.context, order, queue.target, queue.uui_format, workstream.uui.items if workstream else None),
        operation_context=OperationContext(
            queue_name, op.workstream, op.correlation_id, op.context, queue.target, attempt, op.sealed, op.leg
        ),
    )


def _start_transfer(event: CallbackEvent, routing: Routing) -> Transition:
    op = event.operation_context
    assert op is not None
    queue = _transfer_queue(routing, op.queue)
    if queue is None or op.queue is None:
        return Transition(Note("nothing to do"))
    return Transition(_transfer(event, routing, op.queue, queue, TransferAttempt.PRIMARY), CallState.TRANSFERRING)


def _transferred(event: CallbackEvent, routing: Routing) -> Transition:
    op = event.operation_context
    assert op is not None
    message = f"{event.who} transferred to queue {op.queue} ({op.target})"
    return Transition(Note("done", "info", message), CallState.TRANSFERRED)


def _after_failure(event: CallbackEvent, routing: Routing) -> Transition:
    """One attempt at the workstream's fallback queue (when it has a target), then hang up."""
    op = event.operation_context
    assert op is not None
    reason = event.reason if event.kind == TRANSFER_FAILED else str(event.result_message)
    workstream = next((ws for ws in routing.workstreams if ws.name == op.workstream), None)
    if op.attempt == TransferAttempt.PRIMARY and workstream is not None:
        fallback = routing.queues.get(workstream.fallback_queue)
        if isinstance(fallback, TransferQueue):
            step = _transfer(event, routing, workstream.fallback_queue, fallback, TransferAttempt.FALLBACK)
            message = (
                f"{event.who}: transfer to {op.target} failed ({reason}); "
                f"trying fallback queue {workstream.fallback_queue}"
            )
            return Transition(replace(step, level="warning", message=message), CallState.TRANSFERRING_FALLBACK)
    message = f"{event.who}: transfer to {op.target} failed ({reason}) and no fallback is left; hanging up"
    return Transition(HangUp("error", message), CallState.HUNG_UP)


def _hung_up_before_transfer(event: CallbackEvent, routing: Routing) -> Transition:
    op = event.operation_context
    assert op is not None
    if _transfer_queue(routing, op.queue) is not None:
        message = f"{event.who}: caller hung up before the transfer to queue {op.queue}"
        return Transition(Note("logged", "warning", message), CallState.ENDED)
    return _ended(event, routing)


def _ended(event: CallbackEvent, routing: Routing) -> Transition:
    return Transition(Note("logged", "info", f"{event.who}: call ended"), CallState.ENDED)


def stranded(record: CallRecord, routing: Routing, waited_s: float) -> Transition:
    """A call answered for a transfer that no transfer reached: its CallConnected callback never came
    (or reached an instance that failed). The sweep moves it to the workstream's fallback queue when
    that queue transfers, else hangs up: nobody is left on an answered call."""
    context = record.context_text()
    sensitive = frozenset(v.name for v in record.context if v.sensitive) & context.keys()
    op = OperationContext(
        record.queue, record.workstream, record.correlation_id, context, sealed=frozenset(sensitive), leg=record.leg
    )
    event = CallbackEvent(
        kind="Stranded",
        event_id=None,
        call_connection_id=record.call_connection_id,
        server_call_id=None,
        correlation_id=record.correlation_id,
        operation_context=op,
    )
    why = f"call {record.correlation_id}: answered for queue {record.queue}, and no transfer {waited_s:g} s later"
    workstream = next((ws for ws in routing.workstreams if ws.name == record.workstream), None)
    if workstream is not None:
        fallback = routing.queues.get(workstream.fallback_queue)
        if isinstance(fallback, TransferQueue):
            step = _transfer(event, routing, workstream.fallback_queue, fallback, TransferAttempt.FALLBACK)
            message = f"{why} (its CallConnected callback never arrived); transferring to fallback queue {step.queue}"
            return Transition(replace(step, level="warning", message=message), CallState.TRANSFERRING_FALLBACK)
    message = f"{why} (its CallConnected callback never arrived), and no fallback queue transfers; hanging up"
    return Transition(HangUp("error", message), CallState.HUNG_UP)


def _duplicate(event: CallbackEvent, routing: Routing) -> Transition:
    return Transition(Note("duplicate"))


def _failure_of(attempt: TransferAttempt) -> Callable[[CallbackEvent, Routing], Transition]:
    """A failure is acted on only for the attempt the state is waiting on; else it is a repeat."""

    def on_failure(event: CallbackEvent, routing: Routing) -> Transition:
        op = event.operation_context
        if op is None or op.attempt not in (attempt, None):
            return _duplicate(event, routing)
        return _after_failure(event, routing)

    return on_failure


S = CallState
_FAILURES = (TRANSFER_FAILED, TRANSFER_REFUSED)

#: (state, event) → what happens. Anything not in the table is ignored (logged as such).
TRANSITIONS: dict[tuple[CallState, str], Callable[[CallbackEvent, Routing], Transition]] = {
    (S.ANSWERED, CALL_CONNECTED): _start_transfer,
    (S.ANSWERED, TRANSFER_ACCEPTED): _transferred,
    # A process that has not seen the call yet trusts the attempt the echoed context names.
    **{(S.ANSWERED, kind): _after_failure for kind in _FAILURES},
    (S.ANSWERED, CALL_DISCONNECTED): _hung_up_before_transfer,
    (S.TRANSFERRING, CALL_CONNECTED): _duplicate,
    (S.TRANSFERRING, TRANSFER_ACCEPTED): _transferred,
    **{(S.TRANSFERRING, kind): _failure_of(TransferAttempt.PRIMARY) for kind in _FAILURES},
    (S.TRANSFERRING, CALL_DISCONNECTED): _ended,
    (S.TRANSFERRING_FALLBACK, CALL_CONNECTED): _duplicate,
    (S.TRANSFERRING_FALLBACK, TRANSFER_ACCEPTED): _transferred,
    **{(S.TRANSFERRING_FALLBACK, kind): _failure_of(TransferAttempt.FALLBACK) for kind in _FAILURES},
    (S.TRANSFERRING_FALLBACK, CALL_DISCONNECTED): _ended,
    **{(S.TRANSFERRED, kind): _duplicate for kind in (CALL_CONNECTED, TRANSFER_ACCEPTED, *_FAILURES)},
    (S.TRANSFERRED, CALL_DISCONNECTED): _ended,
    **{(S.HUNG_UP, kind): _duplicate for kind in (CALL_CONNECTED, TRANSFER_ACCEPTED, *_FAILURES)},
    (S.HUNG_UP, CALL_DISCONNECTED): _ended,
    **{(S.ENDED, kind): _duplicate for kind in (CALL_CONNECTED, TRANSFER_ACCEPTED, *_FAILURES, CALL_DISCONNECTED)},
}


def next_step(event: CallbackEvent, state: CallState, routing: Routing) -> Transition:
    """What happens to the call on ``event`` in ``state``. Pure: the caller carries out the step."""
    if event.operation_context is None or event.call_connection_id is None:
        # Every app of the ACS resource gets callbacks signed alike (acs.md): a valid token is not
        # enough, the operation context must be one this app wrote (its mac verifies).
        message = (
            f"callback {event.kind} for a call this app did not set up (its operation context does not verify): ignored"
        )
        return Transition(Note("ignored", "warning", message))
    handler = TRANSITIONS.get((state, event.kind))
    if handler is None:
        return Transition(Note("ignored"))
    return handler(event, routing)
