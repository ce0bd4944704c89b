"""Timer trigger, every minute: nobody is left on an answered call, and records do not outlive
their time to live. Thin: the app's sweep (shared/app.py, ``App.sweep``) does the work.

A call answered for a transfer is transferred on its CallConnected callback. If that callback never
arrives (lost, or sent to an instance that failed), the caller would sit in silence on an answered
call; the sweep finds such calls in the store after HANDOFF_TRANSFER_TIMEOUT_SECONDS and transfers
them to the workstream's fallback queue, or hangs up, logging why. Does nothing without a store.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared import app

bp = func.Blueprint()  # type: ignore[no-untyped-call]

log = logging.getLogger("handoff")

#: NCRONTAB with seconds (https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer):
#: at second 0 of every minute.
EVERY_MINUTE = "0 * * * * *"


@bp.function_name("timer_trigger")
@bp.timer_trigger(arg_name="timer", schedule=EVERY_MINUTE, run_on_startup=False)
def timer_trigger(timer: func.TimerRequest) -> None:
    done = app.current().sweep()
    if any(done.values()):
        log.info("sweep: %s", ", ".join(f"{kind} {count}" for kind, count in done.items() if count))
