"""HTTP trigger for Call Automation callbacks (``/api/callbacks``). Thin: headers and bytes to the app.

Anonymous at the Functions level on purpose: Call Automation cannot send a function key, so every
request is authenticated by its Bearer JWT instead (shared/adapters/callback_auth.py); 401 otherwise.
"""

from __future__ import annotations

import json

import azure.functions as func

from shared import app

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("callbacks")
@bp.route(route="callbacks", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def callbacks(req: func.HttpRequest) -> func.HttpResponse:
    status, body = app.current().on_callback(req.headers.get("Authorization"), req.get_body())
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")
