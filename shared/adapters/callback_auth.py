"""Verify the ``Authorization: Bearer`` JWT that Call Automation puts on every callback.

Facts (handbook acs.md, "Mid-call callbacks"): RS256, 5-minute lifetime, issuer
``https://acscallautomation.communication.azure.com``, audience = the ACS resource's immutable
resource id (a GUID); signing keys published through an OpenID configuration whose ``jwks_uri``
is ``/calling/keys``. Anything else gets 401 and nothing is acted on.

Keys are fetched on the first callback and cached by PyJWT's ``PyJWKClient`` (refetched when an
unknown ``kid`` appears), never on the IncomingCall → answer path.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jwt

ISSUER = "https://acscallautomation.communication.azure.com"
_FETCH_TIMEOUT_S = 5.0


class CallbackAuthError(Exception):
    """The callback is not from Call Automation for our resource; the message says why (no token text)."""


class SigningKeysUnavailable(CallbackAuthError):
    """The signing keys cannot be fetched, so no callback can be verified: our problem, not the sender's.
    Every transfer waits on a callback, so this strands answered calls: logged and counted for an alert."""


class CallbackVerifier:
    def __init__(self, openid_config_url: str, audience: str | None, issuer: str = ISSUER):
        self.openid_config_url = openid_config_url
        self.audience = audience
        self.issuer = issuer
        self._jwks: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def _client(self) -> jwt.PyJWKClient:
        # PyJWT loads cryptography (~35 ms): the first callback pays for it, not the worker's start-up.
        import jwt

        with self._lock:
            if self._jwks is None:
                try:
                    with urllib.request.urlopen(self.openid_config_url, timeout=_FETCH_TIMEOUT_S) as response:
                        document = json.load(response)
                except (OSError, ValueError) as exc:
                    raise SigningKeysUnavailable(
                        f"cannot fetch the OpenID configuration {self.openid_config_url}: {type(exc).__name__}: {exc}"
                    ) from None
                if not isinstance(document, dict):
                    raise SigningKeysUnavailable(f"{self.openid_config_url} is not an OpenID configuration")
                # The setting may name the OpenID configuration or the JWKS itself.
                jwks_uri = document.get("jwks_uri") if "keys" not in document else self.openid_config_url
                if not isinstance(jwks_uri, str):
                    raise SigningKeysUnavailable(f"{self.openid_config_url} has no jwks_uri")
                self._jwks = jwt.PyJWKClient(jwks_uri, cache_keys=True, lifespan=3600, timeout=int(_FETCH_TIMEOUT_S))
            return self._jwks

    def verify(self, authorization: str | None) -> dict[str, Any]:
        if not self.audience:
            raise CallbackAuthError("ACS_RESOURCE_ID is not set, so no callback can be verified")
        if not authorization or not authorization.startswith("Bearer "):
            raise CallbackAuthError("no Bearer token")
        token = authorization[len("Bearer ") :].strip()
        import jwt

        try:
            key = self._client().get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise CallbackAuthError("token expired") from None
        except jwt.InvalidAudienceError:
            raise CallbackAuthError("token is for another ACS resource (audience)") from None
        except jwt.InvalidIssuerError:
            raise CallbackAuthError("token issuer is not Call Automation") from None
        except jwt.PyJWKClientConnectionError as exc:
            raise SigningKeysUnavailable(f"cannot fetch the signing keys: {exc}") from None
        except jwt.PyJWKClientError as exc:
            raise CallbackAuthError(f"signing key not found: {exc}") from None
        except jwt.InvalidTokenError as exc:
            raise CallbackAuthError(f"invalid token: {type(exc).__name__}") from None
        except OSError as exc:
            raise SigningKeysUnavailable(f"cannot fetch the signing keys: {exc}") from None
        return claims
