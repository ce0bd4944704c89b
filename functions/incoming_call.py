"""Event Grid trigger for ACS IncomingCall events. Thin: the worker's event object → an envelope → the app.

The function name ``incoming_call`` is referenced by the Event Grid subscription in infra/bicep.
The trigger takes both schemas: the worker hands a CloudEvents delivery over as ``func.CloudEvent``
and an Event Grid schema one as ``func.EventGridEvent`` whatever the type hint says (handbook
azure.md), each already split from the delivered array and with its time parsed.
"""

from __future__ import annotations

import azure.functions as func

from shared import app
from shared.core.events import Envelope, aware

bp = func.Blueprint()  # type: ignore[no-untyped-call]


def envelope(event: func.EventGridEvent | func.CloudEvent) -> Envelope:
    """The event as the app reads it, straight from the worker's object (no JSON round trip)."""
    if isinstance(event, func.EventGridEvent):
        kind, schema, at = event.event_type, "eventgrid", event.event_time
    else:
        kind, schema, at = event.type, "cloudevents", event.time
    return Envelope(
        event_id=event.id if isinstance(event.id, str) else "" if event.id is None else str(event.id),
        event_type=kind,
        event_schema=schema,
        data=event.get_json(),
        event_time=aware(at) if at is not None else None,
    )


@bp.function_name("incoming_call")
@bp.event_grid_trigger(arg_name="event")
def incoming_call(event: func.EventGridEvent) -> None:
    # Raises RetryableFailure only when Event Grid's redelivery can still reach the ringing call.
    app.current().on_incoming_call(envelope(event))
