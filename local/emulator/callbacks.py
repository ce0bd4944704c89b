"""Callbacks: the CloudEvents ACS POSTs about a call, their delivery, and the JWT that authenticates them.

* Each callback is a CloudEvents array POSTed with ``Authorization: Bearer <JWT>``: RS256, ``iss``
  :data:`CALLBACK_ISSUER`, ``aud`` the ACS immutable resource id, signed by a key the emulator generates when
  it is created and publishes at ``/calling/.well-known/acsopenidconfiguration`` and ``/calling/keys``.
* Events have the members, in the order, of the live ``CallConnected`` in
  ``tests/data/callbacks.recorded.json``; ``time`` has 7 fractional digits, as ACS renders it.
* Callbacks are delivered, one at a time by one thread, after the response to the request that caused them,
  and only to loopback URLs given by a literal host (127.0.0.1, ::1, localhost); any other host is recorded
  and never contacted. No name is resolved.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import queue
import ssl
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from local.emulator.model import Call, b64url, identifier_model

#: ``iss`` of every callback JWT, as in Azure (handbook acs.md, "Mid-call callbacks").
CALLBACK_ISSUER = "https://acscallautomation.communication.azure.com"
OPENID_CONFIG_PATH = "/calling/.well-known/acsopenidconfiguration"
JWKS_PATH = "/calling/keys"
#: Lifetime of a callback JWT (iat/nbf .. exp).
CALLBACK_TOKEN_LIFETIME = 300
#: Largest callback response body read from a receiver.
MAX_CALLBACK_RESPONSE_BYTES = 64 * 1024
#: Hosts callbacks may be sent to: literal loopback only, never resolved.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class CallbackDelivery:
    """One callback POST: delivered (``sent``) to a loopback receiver, or only recorded."""

    url: str
    events: list[dict[str, Any]]
    token: str
    sent: bool
    status: int | None
    error: str | None
    at: float

    @property
    def types(self) -> list[str]:
        return [str(e.get("type", "")) for e in self.events]


def is_loopback_url(url: str) -> bool:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return host is not None and host.lower() in LOOPBACK_HOSTS


def openid_document(jwks_uri: str) -> dict[str, Any]:
    """The document at :data:`OPENID_CONFIG_PATH`."""
    return {
        "issuer": CALLBACK_ISSUER,
        "jwks_uri": jwks_uri,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["iss", "aud", "iat", "nbf", "exp"],
    }


# --------------------------------------------------------------------------------------------------
# Events


def _event_time() -> str:
    # ACS renders 7 fractional digits: 2025-03-17T05:20:36.2389607+00:00
    now = datetime.now(UTC)
    return f"{now:%Y-%m-%dT%H:%M:%S}.{now.microsecond:06d}0+00:00"


def call_event(
    name: str,
    call: Call,
    operation_context: Any,
    result: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The CloudEvent ``Microsoft.Communication.<name>`` about ``call``."""
    # Same members, same order as the live CallConnected in callbacks.recorded.json.
    data: dict[str, Any] = {
        "version": call.api_version,
        "resultInformation": dict(result or {"code": 200, "subCode": 0, "message": ""}),
    }
    if extra:
        data.update(extra)
    data["callConnectionId"] = call.call_connection_id
    data["serverCallId"] = call.server_call_id
    data["correlationId"] = call.correlation_id
    if operation_context is not None:
        data["operationContext"] = operation_context
    data["publicEventType"] = f"Microsoft.Communication.{name}"
    source = f"calling/callConnections/{call.call_connection_id}"
    return {
        "id": str(uuid.uuid4()),
        "source": source,
        "type": f"Microsoft.Communication.{name}",
        "data": data,
        "time": _event_time(),
        "specversion": "1.0",
        "datacontenttype": "application/json",
        "subject": source,
    }


def disconnected_event(call: Call, operation_context: Any) -> dict[str, Any]:
    result = {"code": 200, "subCode": 7000, "message": "The conversation has ended. DiagCode: 0#7000.@"}
    return call_event("CallDisconnected", call, operation_context, result)


def participants_event(call: Call) -> dict[str, Any]:
    participants = [
        {"identifier": identifier_model(p), "isMuted": False, "isOnHold": False}
        for p in (call.source, {"communicationUser": call.answered_by})
    ]
    event = call_event("ParticipantsUpdated", call, None)
    event["data"] = {"participants": participants, "sequenceNumber": 1, **event["data"]}
    return event


# --------------------------------------------------------------------------------------------------
# Signing and delivery


class CallbackSettings(Protocol):
    """The emulator settings callbacks read, at the time they are used."""

    @property
    def resource_id(self) -> str: ...

    @property
    def callback_timeout(self) -> float: ...

    @property
    def lost_callbacks(self) -> set[str]: ...


class Callbacks:
    """The signing key, the delivery queue and thread, and the record of every callback.

    Records are guarded by the emulator's lock; ``changed`` (a condition on it) is notified on each one.
    """

    def __init__(self, settings: CallbackSettings, changed: threading.Condition, stopping: threading.Event) -> None:
        self._settings = settings
        self._changed = changed
        self._stopping = stopping
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.signing_key.public_key()))
        thumbprint_input = json.dumps(
            {"e": public_jwk["e"], "kty": "RSA", "n": public_jwk["n"]}, separators=(",", ":"), sort_keys=True
        )
        self.key_id = b64url(hashlib.sha256(thumbprint_input.encode("ascii")).digest())
        self._jwk = {**public_jwk, "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.key_id}
        self.sent: list[CallbackDelivery] = []
        self.recorded: list[CallbackDelivery] = []
        self._queue: queue.Queue[tuple[str, list[dict[str, Any]]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def token(self, now: float | None = None) -> str:
        """A callback JWT exactly as attached to every callback."""
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": CALLBACK_ISSUER,
            "aud": self._settings.resource_id,
            "iat": issued,
            "nbf": issued,
            "exp": issued + CALLBACK_TOKEN_LIFETIME,
        }
        return jwt.encode(claims, self.signing_key, algorithm="RS256", headers={"kid": self.key_id})

    def jwks(self) -> dict[str, Any]:
        """The document at :data:`JWKS_PATH`."""
        return {"keys": [dict(self._jwk)]}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._deliver, name="call-automation-emulator-callbacks", daemon=True)
        self._thread.start()

    def stop(self, deadline: float) -> None:
        """Let the delivery thread finish (every callback queued so far is recorded), until ``deadline``."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        self._thread = None

    def enqueue(self, url: str, events: list[dict[str, Any]]) -> None:
        lost = self._settings.lost_callbacks
        if lost:
            # A callback ACS never delivers (the stranded-call sweep's test): recorded, never sent.
            dropped = [e for e in events if str(e.get("type", "")).rsplit(".", 1)[-1] in lost]
            if dropped:
                self._store(CallbackDelivery(url, dropped, "", False, None, "lost (emulator)", time.monotonic()))
                events = [e for e in events if e not in dropped]
                if not events:
                    return
        if not self._stopping.is_set():
            self._queue.put((url, events))

    def clear(self) -> None:
        with self._changed:
            self.sent.clear()
            self.recorded.clear()

    def _deliver(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            url, events = item
            token = self.token()
            if self._stopping.is_set():
                self._store(CallbackDelivery(url, events, token, False, None, "emulator stopped", time.monotonic()))
                continue
            if not is_loopback_url(url):
                # Never contact a non-loopback host; the URL is only recorded.
                self._store(CallbackDelivery(url, events, token, False, None, None, time.monotonic()))
                continue
            status, error = self._post(url, events, token)
            self._store(CallbackDelivery(url, events, token, True, status, error, time.monotonic()))

    def _store(self, delivery: CallbackDelivery) -> None:
        with self._changed:
            (self.sent if delivery.sent else self.recorded).append(delivery)
            self._changed.notify_all()

    def _post(self, url: str, events: list[dict[str, Any]], token: str) -> tuple[int | None, str | None]:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host not in LOOPBACK_HOSTS:  # defence in depth: callers already checked
            return None, "refused: not a loopback host"
        # Connect to the literal loopback address; "localhost" is never resolved.
        address = "::1" if host == "::1" else "127.0.0.1"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        timeout = self._settings.callback_timeout
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            # Local receivers use self-signed certificates; this only ever talks to loopback.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(address, port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection(address, port, timeout=timeout)
        path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~") + (f"?{parts.query}" if parts.query else "")
        payload = json.dumps(events, separators=(",", ":")).encode("utf-8")
        host_header = parts.netloc.rpartition("@")[2]
        try:
            conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host_header)
            conn.putheader("Content-Type", "application/json; charset=utf-8")
            conn.putheader("Content-Length", str(len(payload)))
            conn.putheader("Authorization", f"Bearer {token}")
            conn.putheader("User-Agent", "CallAutomationEmulator/1.0")
            conn.endheaders(payload)
            response = conn.getresponse()
            response.read(MAX_CALLBACK_RESPONSE_BYTES)
            return response.status, None
        except (OSError, http.client.HTTPException) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
