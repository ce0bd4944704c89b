"""The Call Automation adapter: how its client authenticates, and how it classifies what ACS answers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.adapters import call_automation, settings
from tests.adapters.loopback import reply_json

GOOD = {
    "ACS_ENDPOINT": "http://127.0.0.1:9",
    "ACS_ACCESS_KEY": "a2V5",
    "HANDOFF_CALLBACK_URL": "https://x.example/api/callbacks",
}


class _IdentityEndpoint(BaseHTTPRequestHandler):
    """The App Service / Functions managed identity endpoint (IDENTITY_ENDPOINT), on loopback."""

    requests: ClassVar[list[dict[str, Any]]] = []

    def do_GET(self) -> None:
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        type(self).requests.append({"query": query, "header": self.headers.get("X-IDENTITY-HEADER")})
        reply_json(
            self, 200, {"access_token": "token-for-the-test", "expires_on": "4102444800", "token_type": "Bearer"}
        )

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def identity_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    _IdentityEndpoint.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _IdentityEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "secret-header")
    try:
        yield _IdentityEndpoint.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_in_azure_the_client_asks_the_managed_identity_endpoint_for_the_user_assigned_identity(
    identity_endpoint: list[dict[str, Any]],
) -> None:
    from azure.identity import ManagedIdentityCredential

    client_id = "11111111-2222-3333-4444-555555555555"
    cfg = settings.load(
        {
            "ACS_ENDPOINT": "https://contoso.communication.azure.com",
            "HANDOFF_CALLBACK_URL": GOOD["HANDOFF_CALLBACK_URL"],
            "AZURE_CLIENT_ID": client_id,
        }
    )
    credential = call_automation.create_client(cfg)._client._config.authentication_policy._credential
    assert isinstance(credential, ManagedIdentityCredential)  # no probe chain on a cold start
    # The token request on the wire names AZURE_CLIENT_ID's identity (azure-identity's App Service flow).
    token = credential.get_token("https://communication.azure.com//.default")
    assert token.token == "token-for-the-test"
    [request] = identity_endpoint
    assert request["query"]["client_id"] == client_id
    assert request["header"] == "secret-header"


def test_locally_the_client_signs_with_the_access_key() -> None:
    policy = call_automation.create_client(settings.load(GOOD))._client._config.authentication_policy
    assert type(policy).__name__ == "HMACCredentialsPolicy"
