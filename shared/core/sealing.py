"""Signing and sealing the operationContext this app sends, so its callbacks can be trusted.

Facts (handbook acs.md, "After the call leaves the app"): every Call Automation app of one ACS
resource receives callbacks signed with the same issuer and audience, so a valid callback JWT
proves that ACS sent it, not that the call is one this app set up. ACS echoes the
``operationContext`` of a request verbatim in that request's callbacks. So the context this app
writes carries its own authenticator:

- ``mac``: HMAC-SHA256 over the canonical JSON of everything else, with a key derived from the
  setting ``HANDOFF_CONTEXT_KEY``. A callback whose operation context does not verify is not acted on.
- ``sealed``: the sensitive context variables (account numbers, PINs), encrypted with AES-256-GCM
  (``cryptography``, a dependency already) under a second derived key, so they do not travel in
  clear to ACS and back in every callback.

Several keys may be configured while rotating: the first signs and seals, any of them verifies.
No I/O here: the keys come from the caller (shared/adapters/settings.py reads the setting).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

#: Derivation labels: one setting, two independent keys.
_MAC_LABEL = b"handoff operation-context mac v1"
_SEAL_LABEL = b"handoff operation-context seal v1"
_NONCE_BYTES = 12  # the GCM nonce size NIST SP 800-38D recommends
_NONCE_LABEL = b"handoff synthetic nonce v1"
_AAD = b"handoff operation-context"
#: The call records' sealed values (shared/core/call_record.py) are bound to their own purpose: a
#: blob sealed for a record does not open as an operation context's, nor the other way round.
RECORD_AAD = b"handoff call-record"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical(body: Mapping[str, Any]) -> bytes:
    """The bytes the MAC covers: sorted keys, no spaces, UTF-8 (lone surrogates kept as they came)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


class Sealer:
    """Signs, verifies, seals and unseals with keys derived from ``HANDOFF_CONTEXT_KEY``."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("a Sealer needs at least one key")
        raw = [key.encode("utf-8") for key in keys]
        self._mac_keys = [hmac.new(k, _MAC_LABEL, hashlib.sha256).digest() for k in raw]
        self._seal_keys = [hmac.new(k, _SEAL_LABEL, hashlib.sha256).digest() for k in raw]

    def sign(self, body: Mapping[str, Any]) -> str:
        return _b64(hmac.new(self._mac_keys[0], canonical(body), hashlib.sha256).digest())

    def verify(self, body: Mapping[str, Any], mac: Any) -> int | None:
        """The index of the key that signed ``body`` with ``mac``, or None when none did."""
        if not isinstance(mac, str):
            return None
        message = canonical(body)
        for index, key in enumerate(self._mac_keys):
            expected = _b64(hmac.new(key, message, hashlib.sha256).digest())
            if hmac.compare_digest(expected, mac):
                return index
        return None

    def seal(self, values: Mapping[str, str], aad: bytes = _AAD, deterministic: bool = False) -> str:
        """``values`` encrypted and authenticated (AES-256-GCM) with the first key, bound to ``aad``.

        ``deterministic``: the nonce is derived from the key, ``aad`` and the values (the synthetic-IV
        construction), so the same values seal to the same text: two instances that build the same
        transfer request send the same bytes, which Call Automation's repeatability can recognise.
        A nonce repeats only with the same plaintext, so GCM's nonce-reuse failure cannot occur; what
        it gives away is only that two sealed texts hold the same values."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # ~13 ms: see prewarm()

        plain = json.dumps(dict(values), separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
        if deterministic:
            nonce = hmac.new(self._seal_keys[0], _NONCE_LABEL + aad + b"\0" + plain, hashlib.sha256).digest()
            nonce = nonce[:_NONCE_BYTES]
        else:
            nonce = secrets.token_bytes(_NONCE_BYTES)
        return _b64(nonce + AESGCM(self._seal_keys[0]).encrypt(nonce, plain, aad))

    def unseal_any(self, blob: Any, aad: bytes) -> dict[str, str] | None:
        """What :meth:`seal` sealed with any of the keys (a stored record may predate a rotation)."""
        for index in range(len(self._seal_keys)):
            values = self.unseal(blob, index, aad)
            if values is not None:
                return values
        return None

    def unseal(self, blob: Any, key_index: int, aad: bytes = _AAD) -> dict[str, str] | None:
        """What :meth:`seal` sealed, with the key that verified the context; None when it does not open."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not isinstance(blob, str):
            return None
        try:
            raw = _unb64(blob)
            plain = AESGCM(self._seal_keys[key_index]).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], aad)
            values = json.loads(plain.decode("utf-8", "surrogatepass"))
        except (InvalidTag, ValueError, UnicodeDecodeError):
            return None
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            return None
        return values


def prewarm() -> None:
    """Import AES-GCM ahead of the first transfer call (the import is the costly part)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: F401
