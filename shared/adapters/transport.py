"""The HTTP settings of the app's Azure clients (Call Automation, the call store): what azure-core
would do on every request, done once.

Both changes are about the time between a ringing call's event and its answer request, measured
side by side in bench/handler.py and bench/client.py (BENCHMARKS.md, "Handler overhead"):

- requests reads the proxy and CA-bundle variables on every request (``trust_env``):
  ``merge_environment_settings`` costs ~80 µs with 39 variables here (``make bench ARGS=client``)
  and scans them all, so it grows with them; on Functions every app setting is one. A client talks
  to one endpoint and an app's settings change only with a restart, so they are read once, at
  start, with requests' own rules (``NO_PROXY`` included), and handed to the transport: a proxy
  set in the app settings is still used (never for a loopback endpoint, which no proxy can reach).
- azure-core's HttpLoggingPolicy formats every request's and response's headers at INFO for the
  root logger, which the Functions worker forwards to the host, where host.json drops the
  functions' user logs and the exporter keeps only the ``handoff`` logger: work for nobody. They go
  to :data:`WIRE_LOGGER` instead, off unless someone sets it to INFO while troubleshooting.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from typing import Any
from urllib.parse import urlsplit

from azure.core.pipeline.policies import HttpLoggingPolicy
from azure.core.pipeline.transport import RequestsTransport
from requests.utils import get_environ_proxies

#: azure-core's request/response logs for the app's clients; WARNING (so silent) unless configured.
WIRE_LOGGER = "handoff.wire"


def environment_proxies(endpoint: str) -> dict[str, str]:
    """The proxies requests would use for ``endpoint`` from the environment ({} when NO_PROXY covers
    it), and none for a loopback endpoint (Azurite for `handoff calls`, the local emulator): a proxy
    cannot reach this machine's loopback, its 127.0.0.1 is its own."""
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost" or _is_loopback_address(host):
        return {}
    # urllib reports NO_PROXY as "no": already applied to this endpoint, it is not a proxy.
    return {scheme: url for scheme, url in get_environ_proxies(endpoint).items() if scheme != "no"}


def _is_loopback_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def environment_ca_bundle() -> str | None:
    """The CA bundle requests would take from the environment instead of its own (requests'
    ``merge_environment_settings``: REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE)."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


def client_options(endpoint: str, connection_timeout: float, read_timeout: float) -> dict[str, Any]:
    """Keyword arguments for an azure-core client of ``endpoint``: its transport, proxies and HTTP log."""
    wire = logging.getLogger(WIRE_LOGGER)
    if wire.level == logging.NOTSET:
        wire.setLevel(logging.WARNING)
    transport = RequestsTransport(
        use_env_settings=False,  # read once below, not per request
        connection_timeout=connection_timeout,
        read_timeout=read_timeout,
        connection_verify=environment_ca_bundle() or True,
    )
    options: dict[str, Any] = {"transport": transport, "http_logging_policy": HttpLoggingPolicy(logger=wire)}
    proxies = environment_proxies(endpoint)
    if proxies:
        options["proxies"] = proxies  # azure-core's ProxyPolicy hands them to every request
    return options
