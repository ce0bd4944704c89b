"""A local Azure Communication Services Call Automation emulator on 127.0.0.1.

The real ``azure-communication-callautomation`` SDK (1.6.0) talks to it exactly as it talks to ACS::

    with CallAutomationEmulator() as emu:
        client = CallAutomationClient(emu.endpoint, AzureKeyCredential(emu.access_key))
        props = client.answer_call(context, "http://127.0.0.1:7071/api/callbacks")

Construct the client directly: ``CallAutomationClient.from_connection_string`` silently switches an
``http://`` endpoint to https.

What it emulates, one module each (wire format recorded from SDK 1.6.0):

* :mod:`~local.emulator.calls`: answer, redirect, reject, transfer, hang-up and GET of a call connection,
  expired incoming-call contexts and second actions on an already handled call;
* :mod:`~local.emulator.auth`: HMAC-SHA256 request authentication exactly as ACS checks it (401 ``Denied``
  otherwise), optionally a fixed Bearer token;
* :mod:`~local.emulator.repeatability`: a repeated ``Repeatability-Request-ID`` gets the stored response
  and is not executed again;
* :mod:`~local.emulator.callbacks`: CloudEvents callbacks with a signed JWT, the OpenID configuration and
  JWKS, delivered to loopback receivers only;
* :mod:`~local.emulator.faults`: fault injection (:meth:`CallAutomationEmulator.inject`);
* :mod:`~local.emulator.server`: the HTTP server and the routing of paths to operations;
* :mod:`~local.emulator.emulator`: :class:`CallAutomationEmulator`, which ties them together and records
  every request; :mod:`~local.emulator.model`: the shapes they share.

Only the standard library, ``cryptography`` and ``PyJWT`` are used. Run standalone with
``python -m local.emulator`` (:mod:`~local.emulator.cli`).
"""

# The names imported "as" themselves were public before the split into modules and stay importable from
# here; __all__ is unchanged.
from local.emulator.auth import DeniedRequest
from local.emulator.auth import content_hash as content_hash
from local.emulator.auth import hmac_signature as hmac_signature
from local.emulator.callbacks import CALLBACK_ISSUER, CallbackDelivery
from local.emulator.callbacks import CALLBACK_TOKEN_LIFETIME as CALLBACK_TOKEN_LIFETIME
from local.emulator.callbacks import JWKS_PATH as JWKS_PATH
from local.emulator.callbacks import LOOPBACK_HOSTS as LOOPBACK_HOSTS
from local.emulator.callbacks import MAX_CALLBACK_RESPONSE_BYTES as MAX_CALLBACK_RESPONSE_BYTES
from local.emulator.callbacks import OPENID_CONFIG_PATH as OPENID_CONFIG_PATH
from local.emulator.calls import (
    ALREADY_HANDLED_MARKER,
    ALREADY_HANDLED_SHAPES,
    ALREADY_HANDLED_STATUS,
    ALREADY_HANDLED_SUB_CODE,
    EXPIRED_CONTEXT_MESSAGE,
)
from local.emulator.calls import DEFAULT_EVENT_VERSION as DEFAULT_EVENT_VERSION
from local.emulator.calls import EXPIRED_CONTEXT_STATUS as EXPIRED_CONTEXT_STATUS
from local.emulator.cli import main
from local.emulator.emulator import CallAutomationEmulator, RecordedAction
from local.emulator.model import OPERATIONS, identifier_model
from local.emulator.server import MAX_BODY_BYTES as MAX_BODY_BYTES

__all__ = [
    "ALREADY_HANDLED_MARKER",
    "ALREADY_HANDLED_SHAPES",
    "ALREADY_HANDLED_STATUS",
    "ALREADY_HANDLED_SUB_CODE",
    "CALLBACK_ISSUER",
    "EXPIRED_CONTEXT_MESSAGE",
    "OPERATIONS",
    "CallAutomationEmulator",
    "CallbackDelivery",
    "DeniedRequest",
    "RecordedAction",
    "identifier_model",
    "main",
]
