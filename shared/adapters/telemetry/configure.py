"""Turning telemetry on: azure-monitor-opentelemetry's ``configure_azure_monitor()``, once per process.

Off unless ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set, and then set up off the path of the
first answer (deferred.py). This app configures the exporter
itself, so the worker's ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY`` must stay unset (never
both), and host.json says ``"telemetryMode": "OpenTelemetry"`` (handbook azure.md). Off, nothing
imports OpenTelemetry: azure.monitor costs ~300 ms of import time, paid only when telemetry is on.
The distro's auto-instrumentations (azure-core tracing, requests, urllib3...) are off, so no span
is made by code that does not follow this package's redaction rules.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from shared.adapters.settings import Settings
from shared.adapters.telemetry.deferred import Deferred, Recorded, live_only
from shared.adapters.telemetry.logs import emit_to_exporter, exporter_handlers, record_processor
from shared.adapters.telemetry.names import LOGGER_NAME
from shared.adapters.telemetry.spans import Runtime

log = logging.getLogger("handoff.telemetry")

#: The distro's instrumentations, all off: every span this app emits is built in spans.py.
_INSTRUMENTATIONS: tuple[str, ...] = (
    "azure_sdk",
    "django",
    "fastapi",
    "flask",
    "httpx",
    "httpx2",
    "psycopg2",
    "requests",
    "urllib",
    "urllib3",
)


class _State:
    """The process's telemetry: off (both None), waiting to be configured (``deferred``), or live."""

    runtime: Runtime | None = None
    deferred: Deferred | None = None


state = _State()


def entra_client_id(authentication_string: str) -> str | None:
    """``ClientId=<id>;Authorization=AAD`` → the client id (None for a system-assigned identity)."""
    pairs = dict(part.split("=", 1) for part in authentication_string.split(";") if "=" in part)
    lowered = {k.strip().lower(): v.strip() for k, v in pairs.items()}
    return lowered.get("clientid") or None


def exporter_options(cfg: Settings) -> dict[str, Any]:
    """Our arguments to ``configure_azure_monitor``: the connection string, the ``handoff`` logger, no
    live metrics, no performance counters, no auto-instrumentation, the log field processor, and the
    managed identity when Entra ID authentication is asked for. Imports no OpenTelemetry exporter."""
    options: dict[str, Any] = {
        "connection_string": cfg.appinsights_connection_string,
        "logger_name": LOGGER_NAME,
        "enable_live_metrics": False,
        "enable_performance_counters": False,  # the platform reports the instance's CPU and memory
        "instrumentation_options": {name: {"enabled": False} for name in _INSTRUMENTATIONS},
        "log_record_processors": [record_processor()],
    }
    if cfg.appinsights_authentication_string:
        # Entra ID ingestion (local auth is off on the component): the app's managed identity.
        # Imported here: azure.identity costs ~170 ms of import time that key-based runs never need.
        from azure.identity import ManagedIdentityCredential

        client_id = entra_client_id(cfg.appinsights_authentication_string) or cfg.azure_client_id
        options["credential"] = ManagedIdentityCredential(client_id=client_id)
    return options


def configure(cfg: Settings, **overrides: Any) -> bool:
    """Turn telemetry on when a connection string is set; True when it is (or is about to be) on.

    The exporter itself is set up off the path of the first answer (deferred.py): after the first
    Call Automation request is sent, or after a quiet second. ``overrides`` go to
    ``configure_azure_monitor`` on top of :func:`exporter_options` (the tests pass
    ``disable_offline_storage=True``). A failure there is logged and leaves telemetry off: a call
    must not go unanswered because telemetry could not start.
    """
    if state.runtime is not None or state.deferred is not None:
        return True
    if not cfg.appinsights_connection_string:
        return False
    handoff = logging.getLogger(LOGGER_NAME)
    if handoff.level == logging.NOTSET:
        handoff.setLevel(logging.INFO)  # one record per call: what operators read first
    deferred = Deferred()
    state.deferred = deferred
    deferred.start(lambda: _configure_now(cfg, overrides, deferred))
    return True


def _configure_now(cfg: Settings, overrides: dict[str, Any], deferred: Deferred) -> None:
    # The distro's default detectors include azure_vm, which probes the VM metadata endpoint over
    # the network at start-up; on Functions the azure_functions detector says all there is.
    os.environ.setdefault("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "azure_functions")
    # cloud_RoleName in Application Insights: the function app's name in Azure.
    os.environ.setdefault("OTEL_SERVICE_NAME", os.environ.get("WEBSITE_SITE_NAME") or "handoff")
    try:
        # Imported here: ~300 ms of imports, paid off the path of any call.
        from azure.monitor.opentelemetry import configure_azure_monitor

        configure_azure_monitor(**{**exporter_options(cfg), **overrides})
        runtime = Runtime()
        for handler in exporter_handlers():
            handler.addFilter(live_only)
    except Exception as exc:
        # About the connection string or the platform, never about a call.
        state.deferred = None
        log.error("telemetry is off: Azure Monitor could not be configured: %s: %s", type(exc).__name__, exc)
        return
    state.runtime = runtime  # new calls are live from here on
    kept = deferred.go_live(_exporting(runtime))  # what finishes later is exported as it finishes
    _replay(runtime, deferred, kept)
    if deferred.dropped:
        log.warning("telemetry: %d calls handled before the exporter was ready could not be kept", deferred.dropped)


def _exporting(runtime: Runtime) -> Callable[[Recorded], None]:
    def export(recorded: Recorded) -> None:
        try:
            runtime.replay(recorded)
        except Exception as exc:  # telemetry never breaks anything else
            log.error("telemetry: a call recorded before the exporter was ready was lost: %s", type(exc).__name__)

    return export


def _replay(runtime: Runtime, deferred: Deferred, kept: list[Recorded]) -> None:
    """Export what happened before the exporter was ready, with its own times."""
    for reason in list(deferred.rejections):
        for _ in range(deferred.rejections.pop(reason, 0)):
            runtime.metrics.callback_rejected(reason)
    for queue in list(deferred.records_lost):
        for _ in range(deferred.records_lost.pop(queue, 0)):
            runtime.metrics.store_record_lost(queue)
    for record in list(deferred.loose):
        try:
            emit_to_exporter(record)
        except Exception as exc:
            log.error("telemetry: a log record could not be exported: %s", type(exc).__name__)
    export = _exporting(runtime)
    for recorded in kept:
        export(recorded)


def flush(timeout_s: float = 10.0) -> bool:
    """Export everything recorded so far (spans and logs, then metrics), once the exporter is set
    up. True when all providers flushed."""
    if state.deferred is not None:
        state.deferred.first_request.set()  # no reason to wait for a quiet second any more
        state.deferred.done.wait(timeout_s)
    if state.runtime is None:
        return state.deferred is None
    from opentelemetry import _logs, metrics, trace

    millis = int(timeout_s * 1000)
    ok = True
    providers: Iterable[Any] = (trace.get_tracer_provider(), _logs.get_logger_provider(), metrics.get_meter_provider())
    for provider in providers:
        force_flush = getattr(provider, "force_flush", None)
        if callable(force_flush):
            ok = bool(force_flush(millis)) and ok
    return ok
