"""Event Grid trigger for ACS IncomingCall events. Thin: unwrap the event, hand it to the service.

The function name ``incoming_call`` is referenced by the Event Grid subscription in infra/bicep.
The trigger takes both schemas: the worker hands a CloudEvents delivery over as ``func.CloudEvent``
and an Event Grid schema one as ``func.EventGridEvent`` whatever the type hint says.
"""

from __future__ import annotations

from typing import Any

import azure.functions as func

from shared import service

bp = func.Blueprint()


def as_event_dict(event: func.EventGridEvent | func.CloudEvent) -> dict[str, Any]:
    """Back to the wire shape our parser reads, whichever schema the worker decoded."""
    if isinstance(event, func.EventGridEvent):
        return {
            "id": event.id,
            "topic": event.topic,
            "subject": event.subject,
            "eventType": event.event_type,
            "eventTime": event.event_time.isoformat() if event.event_time else None,
            "dataVersion": event.data_version,
            "data": event.get_json(),
        }
    return {
        "id": event.id,
        "source": event.source,
        "subject": event.subject,
        "type": event.type,
        "specversion": event.specversion,
        "time": event.time.isoformat() if event.time else None,
        "data": event.get_json(),
    }


@bp.function_name("incoming_call")
@bp.event_grid_trigger(arg_name="event")
def incoming_call(event: func.EventGridEvent) -> None:
    # Raises RetryableFailure only when Event Grid's redelivery can still reach the ringing call.
    service.current().handle_delivery(as_event_dict(event))
