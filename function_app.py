"""The Handoff function app: one FunctionApp, blueprints from functions/.

Importing this module is the worker's start-up: settings and the routing configuration are read
and checked here, and the Call Automation client is created, so a bad setting fails now with a
message naming it, not on the first ringing call.
"""

import azure.functions as func

from functions import callbacks, calls, incoming_call, sweep
from shared import app as handoff

handoff.start()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(incoming_call.bp)
app.register_functions(callbacks.bp)
app.register_functions(calls.bp)
app.register_functions(sweep.bp)
