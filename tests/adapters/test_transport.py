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


def _client_for(acs: RecordingServer) -> CallAutomationClient:
    cfg = settings.load(
        {"ACS_ENDPOINT": acs.url, "ACS_ACCESS_KEY": "a2V5", "HANDOFF_CALLBACK_URL": "https://x.example/api/callbacks"}
    )
    return call_automation.create_client(cfg)


def _answer(client: CallAutomationClient) -> None:
    with pytest.raises(HttpResponseError):
        client.answer_call("context", "https://x.example/api/callbacks")


def test_a_proxy_in_the_settings_carries_the_requests(
    acs_and_proxy: tuple[RecordingServer, RecordingServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    acs, proxy = acs_and_proxy
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    _answer(_client_for(acs))
    # A forward proxy receives the absolute URL; the endpoint itself is never reached directly.
    assert [target.split("?")[0] for target in proxy.seen] == [f"{acs.url}/calling/callConnections:answer"]
    assert acs.seen == []


def test_no_proxy_covering_the_endpoint_goes_direct(
    acs_and_proxy: tuple[RecordingServer, RecordingServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    acs, proxy = acs_and_proxy
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    _answer(_client_for(acs))
    assert [target.split("?")[0] for target in acs.seen] == ["/calling/callConnections:answer"]
    assert proxy.seen == []


def test_the_proxy_settings_are_read_once_at_start(
    acs_and_proxy: tuple[RecordingServer, RecordingServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    acs, proxy = acs_and_proxy
    client = _client_for(acs)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)  # an app setting changes only with a restart
    _answer(client)
    assert len(acs.seen) == 1
    assert proxy.seen == []


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
    _answer(_client_for(acs))
    assert [r for r in caplog.records if r.levelno < logging.WARNING] == []


def test_the_wire_logger_brings_them_back_for_troubleshooting(
    acs_and_proxy: tuple[RecordingServer, RecordingServer], caplog: pytest.LogCaptureFixture
) -> None:
    acs, _ = acs_and_proxy
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger=transport.WIRE_LOGGER)
    _answer(_client_for(acs))
    wire = [r for r in caplog.records if r.name == transport.WIRE_LOGGER]
    assert len(wire) == 2
    assert "Authorization" in wire[0].getMessage()
    assert "a2V5" not in wire[0].getMessage()  # azure-core redacts the signature
