"""What the emulator's parts share: identifier wire models, ACS-shaped responses and errors, the
operation names, and the state kept for an incoming call and for a call connection."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Operation names used by :meth:`CallAutomationEmulator.inject` and :class:`RecordedAction`.
#: ``hangup`` covers both ``DELETE {id}`` and ``POST {id}:terminate``; ``get`` is GET of a connection.
OPERATIONS = ("answer", "redirect", "reject", "transfer", "hangup", "get")


@dataclass
class Call:
    """A call connection created by an answer."""

    call_connection_id: str
    server_call_id: str
    correlation_id: str
    callback_uri: str
    source: dict[str, Any]
    target: dict[str, Any]
    answered_by: dict[str, Any]
    api_version: str
    source_display_name: str | None = None
    state: str = "connecting"
    #: The answer's operationContext: ACS echoes it in CallConnected and in CallDisconnected (acs.md,
    #: "After the call leaves the app", from the SDKs' live test recordings).
    operation_context: Any = None


@dataclass
class IncomingCall:
    """What an incomingCallContext issued by :meth:`CallAutomationEmulator.incoming_call` stands for."""

    source: dict[str, Any]
    target: dict[str, Any]
    server_call_id: str
    correlation_id: str
    display_name: str
    expires_at: float | None = None


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None

    def encoded(self) -> bytes:
        if self.raw is not None:
            return self.raw
        if self.body is None:
            return b""
        return json.dumps(self.body, separators=(",", ":")).encode("utf-8")


class RequestError(Exception):
    """Raised inside handlers to answer with an ACS-shaped error."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code

    def response(self) -> Response:
        error: dict[str, Any] = {}
        if self.code is not None:
            error["code"] = self.code
        error["message"] = self.message
        return Response(self.status, {"error": error})


def identifier_model(raw: str | Mapping[str, Any]) -> dict[str, Any]:
    """The wire model of an identifier given a raw id or phone number (``+1425...``, ``4:+1...``,
    ``8:acs:...``), or pass a model through (adding ``rawId`` when missing)."""
    if isinstance(raw, Mapping):
        model = dict(raw)
        if "rawId" not in model:
            model["rawId"] = raw_id(model)
        return model
    text = str(raw)
    if text.startswith("+"):
        return {"kind": "phoneNumber", "rawId": f"4:{text}", "phoneNumber": {"value": text}}
    if text.startswith("4:"):
        return {"kind": "phoneNumber", "rawId": text, "phoneNumber": {"value": text[2:]}}
    if text.startswith("8:acs:") or text.startswith("8:spool:"):
        return {"kind": "communicationUser", "rawId": text, "communicationUser": {"id": text}}
    if text.startswith("8:orgid:"):
        return {
            "kind": "microsoftTeamsUser",
            "rawId": text,
            "microsoftTeamsUser": {"userId": text[len("8:orgid:") :], "cloud": "public"},
        }
    return {"kind": "unknown", "rawId": text}


def raw_id(model: Mapping[str, Any]) -> str:
    """The raw id of an identifier model ("" when it has none)."""
    if model.get("rawId"):
        return str(model["rawId"])
    phone = model.get("phoneNumber")
    if isinstance(phone, Mapping) and phone.get("value"):
        return f"4:{phone['value']}"
    user = model.get("communicationUser")
    if isinstance(user, Mapping) and user.get("id"):
        return str(user["id"])
    teams = model.get("microsoftTeamsUser")
    if isinstance(teams, Mapping) and teams.get("userId"):
        return f"8:orgid:{teams['userId']}"
    return ""


def phone_of(model: Mapping[str, Any]) -> str | None:
    """The phone number of an identifier model, None when it is not a phone number."""
    phone = model.get("phoneNumber")
    if isinstance(phone, Mapping) and phone.get("value"):
        return str(phone["value"])
    raw = raw_id(model)
    return raw[2:] if raw.startswith("4:") else None


def b64url(data: bytes) -> str:
    """base64url without padding, as in JWTs and JWKs."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
