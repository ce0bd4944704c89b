"""Request authentication, checked exactly as ACS checks it: HMAC-SHA256, optionally a fixed Bearer token.

A request that fails gets 401 ``Denied`` and is recorded as a :class:`DeniedRequest`; it never reaches the
Call Automation handlers. What the SDK (and ACS) compute:

* ``x-ms-content-sha256``: base64(sha256(body)), see :func:`content_hash`;
* the string to sign: ``METHOD\\n<path and query>\\n<values of the signed headers joined by ";">``, the
  signed headers being at least ``x-ms-date;host;x-ms-content-sha256``;
* ``Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=<signature>``,
  the signature being base64(HMAC-SHA256(base64decode(access key), string to sign)), see
  :func:`hmac_signature`.

``x-ms-date`` further than the allowed clock skew from now is refused too. ``Authorization: Bearer <token>``
is accepted only when the emulator was given that token (it stands in for an Entra token).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime

_SIGNED_HEADERS_REQUIRED = ("x-ms-date", "host", "x-ms-content-sha256")


@dataclass(frozen=True)
class DeniedRequest:
    """A request refused with 401: it never reached the Call Automation handlers."""

    method: str
    path: str
    reason: str
    at: float


def content_hash(body: bytes) -> str:
    """``x-ms-content-sha256`` of a body: base64(sha256(body))."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def hmac_signature(access_key: str, string_to_sign: str) -> str:
    """base64(HMAC-SHA256(base64decode(access_key), string_to_sign)), as ACS and the SDK compute it."""
    digest = hmac.new(base64.b64decode(access_key), string_to_sign.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def authenticate(
    method: str,
    target: str,
    headers: Message[str, str],
    body: bytes,
    *,
    access_key: str,
    bearer_token: str | None,
    max_clock_skew: float,
) -> str | None:
    """None when the request is authentic, else what failed.

    ``target`` is the request's path and query as sent; ``headers`` are looked up case-insensitively.
    """
    authorization = headers.get("Authorization") or ""
    if authorization.startswith("Bearer "):
        if bearer_token is None:
            return "Bearer tokens are not accepted by this emulator (no bearer_token configured)."
        if hmac.compare_digest(authorization[len("Bearer ") :].strip(), bearer_token):
            return None
        return "invalid Bearer token."
    if not authorization:
        return "missing Authorization header."
    scheme, _, params = authorization.partition(" ")
    if scheme != "HMAC-SHA256":
        return f"unsupported authorization scheme {scheme!r}."
    fields: dict[str, str] = {}
    for part in params.split("&"):
        key, sep, value = part.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    signed = [h.strip().lower() for h in fields.get("SignedHeaders", "").split(";") if h.strip()]
    signature = fields.get("Signature")
    if not signed or not signature:
        return "Authorization must carry SignedHeaders and Signature."
    missing = [h for h in _SIGNED_HEADERS_REQUIRED if h not in signed]
    if missing:
        required = ";".join(_SIGNED_HEADERS_REQUIRED)
        return f"SignedHeaders must include {required} (missing {';'.join(missing)})."
    sent_hash = headers.get("x-ms-content-sha256")
    if not sent_hash:
        return "missing x-ms-content-sha256 header."
    if not hmac.compare_digest(sent_hash, content_hash(body)):
        return "x-ms-content-sha256 does not match the body (content hash mismatch)."
    date_text = headers.get("x-ms-date")
    if not date_text:
        return "missing x-ms-date header."
    try:
        sent_at = parsedate_to_datetime(date_text)
    except (TypeError, ValueError):
        return f"unparseable x-ms-date {date_text!r}."
    if sent_at.tzinfo is None:
        sent_at = sent_at.replace(tzinfo=UTC)
    skew = abs((datetime.now(UTC) - sent_at).total_seconds())
    if skew > max_clock_skew:
        return f"x-ms-date is {skew:.0f} s away from the emulator's clock (limit {max_clock_skew:.0f} s)."
    values = []
    for name in signed:
        header_value = headers.get(name)
        if header_value is None:
            return f"signed header {name} is missing."
        values.append(header_value)
    string_to_sign = f"{method.upper()}\n{target}\n{';'.join(values)}"
    try:
        expected = hmac_signature(access_key, string_to_sign)
    except (binascii.Error, ValueError):
        return "the emulator's access key is not base64."
    if not hmac.compare_digest(expected, signature):
        return "HMAC signature mismatch (wrong access key, or a signed part was altered)."
    return None
