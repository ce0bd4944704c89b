"""The Call Automation client's HTTP settings (shared/adapters/transport.py): read once at start, and
still what requests would have done per request: a proxy in the settings is used, NO_PROXY is
honoured, the CA bundle is kept, and azure-core's header logs stay out of the worker's root logger."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from azure.communication.callautomation import CallAutomationClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError

from shared.adapters import call_automation, settings, transport
from tests.adapters.loopback import RecordingServer

AZURE_CORE_HTTP_LOGGER = "azure.core.pipeline.policies.http_logging_policy"


@pytest.fixture
def acs_and_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RecordingServer, RecordingServer]]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    acs, proxy = RecordingServer(), RecordingServer()
    try:
        yield acs, proxy
    finally:
        acs.stop()
        proxy.stop()


#: An ACS endpoint only the loopback proxy ever hears of: nothing resolves or connects to it (.invalid,
#: RFC 2606), so a request that went direct instead would fail, not leave the machine.
REMOTE_ACS = "http://acs.handoff.invalid"


def _client_for(endpoint: str) -> CallAutomationClient:
    cfg = settings.load(
        {"ACS_ENDPOINT": endpoint, "ACS_ACCESS_KEY": "a2V5", "HANDOFF_CALLBACK_URL": "https://x.example/api/callbacks"}
    )
    return call_automation.create_client(cfg)


def _answer(client: CallAutomationClient) -> None:
    with pytest.raises(HttpResponseError):
        client.answer_call("context", "https://x.example/api/callbacks")


def _paths(seen: list[str]) -> list[str]:
    return [target.split("?")[0] for target in seen]


def test_a_proxy_in_the_settings_carries_the_requests(
    acs_and_proxy: tuple[RecordingServer, RecordingServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, proxy = acs_and_proxy
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    _answer(_client_for(REMOTE_ACS))
    # A forward proxy receives the absolute URL.
    assert _paths(proxy.seen) == [f"{REMOTE_ACS}/calling/callConnections:answer"]


def test_no_proxy_covering_the_endpoint_leaves_it_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.setenv("NO_PROXY", "handoff.invalid")
    monkeypatch.delenv("no_proxy", raising=False)
    assert transport.environment_proxies(REMOTE_ACS) == {}
    monkeypatch.setenv("NO_PROXY", "other.invalid")
    assert transport.environment_proxies(REMOTE_ACS) == {"http": "http://127.0.0.1:9"}


def test_a_loopback_endpoint_goes_direct_whatever_proxy_is_set(
    acs_and_proxy: tuple[RecordingServer, RecordingServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`handoff calls` against make run's Azurite, or the app against the local emulator, from a
    shell with a proxy: the proxy could not reach this machine's 127.0.0.1."""
    acs, proxy = acs_and_proxy
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    _answer(_client_for(acs.url))
    assert _paths(acs.seen) == ["/calling/callConnections:answer"]
    assert proxy.seen == []
    for endpoint in ("http://localhost:9", "http://[::1]:9", "http://127.0.0.2:9"):
        assert transport.environment_proxies(endpoint) == {}, endpoint


def test_the_proxy_settings_are_read_once_at_start(
    acs_and_proxy: tuple[RecordingServer, RecordingServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, proxy = acs_and_proxy
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    client = _client_for(REMOTE_ACS)
    monkeypatch.delenv("HTTP_PROXY")  # an app setting changes only with a restart
    _answer(client)
    assert len(proxy.seen) == 1


def test_a_ca_bundle_from_the_environment_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/corp-bundle.pem")
    options = transport.client_options("https://contoso.communication.azure.com", 1.0, 1.0)
    assert options["transport"].connection_config.verify == "/etc/ssl/corp-bundle.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/requests-bundle.pem")  # requests' own order
    options = transport.client_options("https://contoso.communication.azure.com", 1.0, 1.0)
    assert options["transport"].connection_config.verify == "/etc/ssl/requests-bundle.pem"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE")
    options = transport.client_options("https://contoso.communication.azure.com", 1.0, 1.0)
    assert options["transport"].connection_config.verify is True


def test_the_timeouts_reach_the_transport() -> None:
    cfg = settings.load(
        {
            "ACS_ENDPOINT": "http://127.0.0.1:9",
            "ACS_ACCESS_KEY": "a2V5",
            "HANDOFF_CALLBACK_URL": "https://x.example/api/callbacks",
            "HANDOFF_DEADLINE_SECONDS": "6",
        }
    )
    config = call_automation.create_client(cfg)._client._client._pipeline._transport.connection_config
    assert (config.timeout, config.read_timeout) == (2.0, 2.0)


def test_request_and_response_headers_are_not_logged_for_the_worker(
    acs_and_proxy: tuple[RecordingServer, RecordingServer], caplog: pytest.LogCaptureFixture
) -> None:
    acs, _ = acs_and_proxy
    caplog.set_level(logging.INFO)  # the Functions worker's root logger
    key = AzureKeyCredential("a2V5")
    # The SDK's default client logs both at INFO: what the app's client must not do.
    _answer(CallAutomationClient(acs.url, key))
    assert [r.name for r in caplog.records].count(AZURE_CORE_HTTP_LOGGER) == 2
    caplog.clear()
    _answer(_client_for(acs.url))
    assert [r for r in caplog.records if r.levelno < logging.WARNING] == []


def test_the_wire_logger_brings_them_back_for_troubleshooting(
    acs_and_proxy: tuple[RecordingServer, RecordingServer], caplog: pytest.LogCaptureFixture
) -> None:
    acs, _ = acs_and_proxy
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger=transport.WIRE_LOGGER)
    _answer(_client_for(acs.url))
    wire = [r for r in caplog.records if r.name == transport.WIRE_LOGGER]
    assert len(wire) == 2
    assert "Authorization" in wire[0].getMessage()
    assert "a2V5" not in wire[0].getMessage()  # azure-core redacts the signature
