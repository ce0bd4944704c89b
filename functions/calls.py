"""HTTP trigger for looking a call up (``GET /api/calls/{correlationId}``). Thin: the route's id and
the reveal header to the app.

Function-level auth: in Azure the Functions host asks for a function key (``x-functions-key``
header or ``code`` query parameter) before this runs. Whoever receives the call (an agent desktop's
back end, a Teams app, another Call Automation app) asks with the call's correlation id, which ACS
keeps across the legs of a call. Sensitive context variables come back masked unless the request
also carries the ``X-Handoff-Reveal-Key`` header with HANDOFF_REVEAL_KEY.
"""

from __future__ import annotations

import json

import azure.functions as func

from shared import app

bp = func.Blueprint()  # type: ignore[no-untyped-call]

#: The header that unmasks sensitive values (docs: README, "Looking a call up").
REVEAL_HEADER = "X-Handoff-Reveal-Key"


@bp.function_name("calls")
@bp.route(route="calls/{correlation_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def calls(req: func.HttpRequest) -> func.HttpResponse:
    status, body = app.current().lookup(req.route_params.get("correlation_id", ""), req.headers.get(REVEAL_HEADER))
    headers = {"Cache-Control": "no-store"}  # a record may hold revealed values: never cached on the way
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json", headers=headers)
