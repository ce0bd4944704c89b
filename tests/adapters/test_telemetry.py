"""Telemetry to Application Insights: what the exporter really sends, and that it leaks nothing.

The function app runs with telemetry on in a subprocess (tests/telemetry_driver.py: the real
start-up, the real Call Automation SDK against the emulator, the local Functions host) and exports
to a loopback ingestion endpoint in this process (local/ingestion.py). Two runs go side by side:
one without a redaction key (sensitive values masked) and one with one (keyed hashes). Every
assertion reads the envelopes the exporter POSTed to ``/v2.1/track``, decompressed.

Offline: the endpoint is 127.0.0.1, statsbeat, SDK stats and the control-plane settings fetch are
off, the VM metadata probe is not in the resource detectors, and offline storage is disabled.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from local.ingestion import IngestionEndpoint, decode_body, parse_envelopes
from shared import cli
from shared.adapters import settings, telemetry
from shared.adapters.telemetry import names
from shared.core import redaction
from shared.core.decision import Action, Decision
from tests.adapters.telemetry_driver import ACCOUNT, PIN
from tests.conftest import ROOT, START_SETTINGS

REDACTION_KEY = "a-test-redaction-key-0123456789"
BUNDLED_ACCOUNT = "500112233445"  # AccountNumber of the bundled billing and pd=4 calls

REQUEST = "Microsoft.ApplicationInsights.Request"
DEPENDENCY = "Microsoft.ApplicationInsights.RemoteDependency"
MESSAGE = "Microsoft.ApplicationInsights.Message"
METRIC = "Microsoft.ApplicationInsights.Metric"
EXCEPTION = "Microsoft.ApplicationInsights.Exception"

INFORMATION, WARNING, ERROR = 1, 2, 3


@dataclass
class Run:
    report: dict[str, Any]
    envelopes: list[dict[str, Any]]
    bodies: list[bytes]
    key: str | None
    requests_seen: list[tuple[str, str, int]]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.envelopes if e["name"] == name]

    def requests(self, span: str) -> list[dict[str, Any]]:
        return [e for e in self.of(REQUEST) if data(e)["name"] == span]

    def calls(self, name: str) -> dict[str, Any]:
        [sent] = [c for c in self.report["calls"] if c["name"] == name]
        return sent


def data(envelope: dict[str, Any]) -> dict[str, Any]:
    return dict(envelope["data"]["baseData"])


def props(envelope: dict[str, Any]) -> dict[str, str]:
    return dict(envelope["data"]["baseData"].get("properties") or {})


def driver_env(sink: IngestionEndpoint, key: str | None) -> dict[str, str]:
    ours = {s.name for s in settings.SETTINGS}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ours and not k.startswith(("APPLICATIONINSIGHTS_", "OTEL_", "PYTHON_APPLICATIONINSIGHTS_"))
    }
    env.update(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": sink.connection_string,
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
            "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
            "HANDOFF_CONFIG": str(ROOT / "tests" / "data" / "telemetry-routing.yaml"),
            "HANDOFF_DEADLINE_SECONDS": "2",  # the transient path gives up after ~1.2 s of retries
        }
    )
    if key:
        env["HANDOFF_REDACTION_KEY"] = key
    return env


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    """Both driver runs, concurrently, each against its own ingestion endpoint."""
    keys = {"masked": None, "hashed": REDACTION_KEY}
    sinks = {name: IngestionEndpoint(lifetime=120).start() for name in keys}
    try:
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-m", "tests.adapters.telemetry_driver"],
                cwd=ROOT,
                env=driver_env(sinks[name], key),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name, key in keys.items()
        }
        result = {}
        for name, proc in procs.items():
            try:
                out, err = proc.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            assert proc.returncode == 0, f"driver ({name}) failed:\n{err[-4000:]}"
            report = json.loads(out.strip().splitlines()[-1])
            sink = sinks[name]
            result[name] = Run(report, sink.envelopes(), sink.bodies, keys[name], list(sink.requests))
        return result
    finally:
        for sink in sinks.values():
            sink.stop()


@pytest.fixture(params=["masked", "hashed"])
def run(request: pytest.FixtureRequest, runs: dict[str, Run]) -> Run:
    return runs[request.param]


# ---- the driver did what it says ------------------------------------------------------------


def test_the_driver_ran_every_path(run: Run) -> None:
    report = run.report
    assert report["flushed"] is True
    statuses = {c["name"]: c["http_status"] for c in report["calls"]}
    assert statuses.pop("transient") == 500  # RetryableFailure: Event Grid redelivers...
    assert statuses["transient-redelivered"] == 202  # ...and the redelivery is answered
    assert set(statuses.values()) == {202}
    assert [e.split(":")[0] for e in report["host_errors"]] == ["RetryableFailure"]
    assert report["transfers"] == 3 and report["hangups"] == 1
    names = {c["name"] for c in report["calls"]}
    for path in ("decode-error-hex", "type-error-sensitive", "sentinel-billing", "transfer-fails", "stale"):
        assert path in names
    # The exporter used the ingestion API only, and every batch was accepted.
    assert set(run.requests_seen) == {("POST", "/v2.1/track", 200)}
    assert run.of(REQUEST) and run.of(DEPENDENCY) and run.of(MESSAGE) and run.of(METRIC)
    assert not run.of(EXCEPTION)


# ---- requests: one span per IncomingCall and per callback ------------------------------------


def test_one_incoming_call_span_per_delivery_with_its_routing(run: Run) -> None:
    requests = run.requests(names.SPAN_INCOMING_CALL)
    by_event: dict[str, list[dict[str, str]]] = defaultdict(list)
    for envelope in requests:
        by_event[props(envelope)["handoff.event_id"]].append(props(envelope))
    assert len(requests) == len(run.report["calls"])  # every delivery, duplicates included
    for sent in run.report["calls"]:
        expect = sent["expect"]
        outcome = expect.get("outcome", "done")
        spans = [p for p in by_event[sent["event_id"]] if p["handoff.outcome"] == outcome]
        assert spans, f"{sent['name']}: no span with outcome {outcome}: {by_event[sent['event_id']]}"
        span = spans[0]
        assert span["handoff.correlation_id"] == sent["correlation_id"]
        assert span["handoff.server_call_id"] == sent["server_call_id"]
        for key in ("queue", "action", "rule", "uui_form", "decode", "decode_error", "issues"):
            if key in expect:
                assert span[f"handoff.{key}"] == expect[key], (sent["name"], key, span)
        if sent["uui"] is not None:
            assert span["handoff.uui_length"] == str(len(sent["uui"]))
        for key in ("context_count", "warning_count", "error_count", "elapsed_ms", "ca_retries"):
            float(span[f"handoff.{key}"])  # numbers, as strings


def test_the_first_call_did_not_wait_for_the_exporter_and_is_exported_with_its_true_times(run: Run) -> None:
    first = run.report["first"]
    assert first["exporter_ready_when_answered"] is False  # answered before OpenTelemetry was set up
    [span] = [
        e
        for e in run.requests(names.SPAN_INCOMING_CALL)
        if props(e)["handoff.event_id"] == run.calls("first")["event_id"]
    ]
    started = datetime.fromisoformat(span["time"].replace("Z", "+00:00")).timestamp() * 1e9
    h, m, rest = data(span)["duration"].split(".", 1)[1].split(":")
    duration_ns = (int(h) * 3600 + int(m) * 60 + float(rest)) * 1e9
    # Its own time, not the time it was exported: inside the driver's post, and no longer than it.
    assert first["posted_ns"] - 2e6 <= started <= first["answered_ns"]
    assert 0 < duration_ns <= first["answered_ns"] - first["posted_ns"] + 2e6
    p = props(span)
    assert (p["handoff.queue"], p["handoff.rule"], p["handoff.outcome"]) == ("agents", "fallback", "done")
    [attempt] = [d for d in run.of(DEPENDENCY) if d["tags"]["ai.operation.id"] == span["tags"]["ai.operation.id"]]
    assert data(attempt)["name"] == "POST /calling/callConnections:answer" and data(attempt)["resultCode"] == "200"
    [record] = [m for m in run.of(MESSAGE) if props(m).get("handoff.event_id") == run.calls("first")["event_id"]]
    assert record["tags"]["ai.operation.id"] == span["tags"]["ai.operation.id"]  # correlated to its span
    assert ACCOUNT not in json.dumps([span, attempt, record]) and PIN not in json.dumps([span, attempt, record])


def test_incoming_call_span_success_timings_and_retries(run: Run) -> None:
    spans = {
        (props(e)["handoff.event_id"], props(e)["handoff.outcome"]): e for e in run.requests("handoff.incoming_call")
    }

    def span(name: str, outcome: str) -> dict[str, Any]:
        return spans[(run.calls(name)["event_id"], outcome)]

    transient = span("transient", "transient-failure")
    assert data(transient)["success"] is False
    assert props(transient)["handoff.retryable"] == "true"
    assert int(props(transient)["handoff.ca_retries"]) >= 2
    assert data(span("stale", "stale"))["success"] is False
    billing = span("sentinel-billing", "done")
    assert data(billing)["success"] is True
    # eventTime is "now" for every call sent: time to answer is real, and at least the request time.
    to_answer = float(props(billing)["handoff.time_to_answer_ms"])
    assert float(props(billing)["handoff.elapsed_ms"]) <= to_answer + 1 < 10_000
    assert "handoff.delivery_delay_ms" in props(billing)
    duplicate = span("duplicate-first", "duplicate")
    assert "handoff.time_to_answer_ms" not in props(duplicate)  # it never reached Call Automation
    assert data(duplicate)["success"] is True


def test_one_dependency_per_call_automation_attempt(run: Run) -> None:
    requests = {e["tags"]["ai.operation.id"]: props(e) for e in run.requests("handoff.incoming_call")}
    dependencies = run.of(DEPENDENCY)
    names = Counter(data(d)["name"] for d in dependencies)
    assert set(names) == {
        "POST /calling/callConnections:answer",
        "POST /calling/callConnections:redirect",
        "POST /calling/callConnections:reject",
        "POST /calling/callConnections/{callConnectionId}:transferToParticipant",
        "POST /calling/callConnections/{callConnectionId}:terminate",
    }
    for dependency in dependencies:
        assert data(dependency)["type"] == "HTTP"
        assert data(dependency)["target"].startswith("127.0.0.1:")
        assert "handoff.ca_operation" in props(dependency) and "handoff.ca_attempt" in props(dependency)
    transient_id = run.calls("transient")["event_id"]
    transient_op = next(
        op
        for op, p in requests.items()
        if p["handoff.event_id"] == transient_id and p["handoff.outcome"] == "transient-failure"
    )
    attempts = [d for d in dependencies if d["tags"]["ai.operation.id"] == transient_op]
    assert [data(d)["resultCode"] for d in attempts] == ["503"] * len(attempts)
    assert len(attempts) == int(requests[transient_op]["handoff.ca_retries"]) + 1
    assert sorted(props(d)["handoff.ca_attempt"] for d in attempts) == [str(i + 1) for i in range(len(attempts))]
    [span] = [e for e in run.requests("handoff.incoming_call") if e["tags"]["ai.operation.id"] == transient_op]
    assert {d["tags"]["ai.operation.parentId"] for d in attempts} == {data(span)["id"]}  # children of the call
    stale = [d for d in dependencies if data(d)["resultCode"] == "400"]
    assert len(stale) == 1 and data(stale[0])["success"] is False


def test_one_callback_span_per_callback_event(run: Run) -> None:
    callbacks = [props(e) | {"success": data(e)["success"]} for e in run.requests(names.SPAN_CALLBACK)]
    seen = Counter((c["handoff.callback_type"], c["handoff.callback_result"], c["success"]) for c in callbacks)
    assert seen == Counter(
        {
            ("CallConnected", "transfer (primary): done", True): 3,
            ("CallTransferAccepted", "done", True): 2,
            ("CallTransferFailed", "hung up (done)", False): 1,
            ("CallDisconnected", "logged", True): 1,
        }
    )
    failing = run.calls("transfer-fails")
    mine = [c for c in callbacks if c.get("handoff.correlation_id") == failing["correlation_id"]]
    assert {c["handoff.callback_type"] for c in mine} == {"CallConnected", "CallTransferFailed", "CallDisconnected"}
    failed = next(c for c in mine if c["handoff.callback_type"] == "CallTransferFailed")
    assert failed["handoff.queue"] == "billing" and failed["handoff.transfer_attempt"] == "primary"
    assert failed["handoff.result_code"] == "500/9999"
    assert failed["handoff.server_call_id"] == failing["server_call_id"]


# ---- metrics ---------------------------------------------------------------------------------


def metric_points(run: Run, name: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
    points = []
    for envelope in run.of(METRIC):
        for metric in data(envelope)["metrics"]:
            if metric["name"] == name:
                points.append((props(envelope), metric))
    return points


def total(run: Run, name: str, **dims: str) -> float:
    return sum(m["value"] for p, m in metric_points(run, name) if all(p.get(k) == v for k, v in dims.items()))


def test_metrics_and_their_dimensions(run: Run) -> None:
    calls = run.report["calls"]
    assert total(run, names.METRIC_CALLS) == len(calls)
    dims = {frozenset(p) for p, _ in metric_points(run, names.METRIC_CALLS)}
    assert dims == {frozenset({"workstream", "queue", "action", "rule", "outcome", "uui_form"})}
    assert total(run, "handoff.calls", queue="billing", action="transfer", outcome="done") == 3
    assert total(run, "handoff.calls", queue="closed", action="reject") == 1
    assert total(run, "handoff.calls", queue="agents", rule="unknown-number", workstream="none") == 2
    assert total(run, "handoff.decode_failures", kind="non_hex_characters") == 2  # bundled + sentinel
    assert total(run, "handoff.decode_failures", kind="unsupported_encoding") == 1
    assert total(run, "handoff.fallback_routes", rule="invalid-context", reason="type_mismatch") == 2
    assert total(run, "handoff.fallback_routes", rule="unknown-number") == 2
    assert total(run, "handoff.fallback_routes", rule="fallback", reason="no_rule_matched") >= 5
    assert total(run, "handoff.transient_retries", operation="answer", after="503") >= 2
    assert total(run, "handoff.stale_events", action="answer") == 1
    assert total(run, "handoff.duplicate_events", event="incoming_call", source="this-instance") == 2
    assert total(run, "handoff.callbacks", type="CallTransferFailed", result="hung up (done)") == 1
    # The signing keys could not be fetched once: counted, so an alert can watch it.
    assert run.report["keys_unavailable_status"] == 503
    assert total(run, names.METRIC_CALLBACK_REJECTIONS, reason="keys_unavailable") == 1
    # A call record the store never took: counted by queue, so an alert can watch it.
    assert run.report["store_lost"] == 1
    assert [p for p, _ in metric_points(run, names.METRIC_STORE_RECORDS_LOST)] == [{"queue": "agents"}]
    assert total(run, names.METRIC_STORE_RECORDS_LOST) == 1
    acted = sum(1 for c in calls if c["expect"].get("outcome", "done") != "duplicate")
    histogram = metric_points(run, names.METRIC_TIME_TO_ACTION)
    assert sum(m["count"] for _, m in histogram) == acted
    assert all({"action", "queue", "outcome"} == set(p) for p, _ in histogram)
    assert all(0 <= m["min"] <= m["max"] < 10_000 for _, m in histogram)


# ---- logs ------------------------------------------------------------------------------------


def test_one_log_record_per_call_with_its_correlation_and_level(run: Run) -> None:
    messages = run.of(MESSAGE)
    per_call = [m for m in messages if "handoff.outcome" in props(m)]
    levels = {"done": INFORMATION, "duplicate": WARNING, "stale": WARNING, "transient-failure": ERROR}
    requests = {
        (props(e)["handoff.event_id"], props(e)["handoff.outcome"]): e for e in run.requests("handoff.incoming_call")
    }
    for sent in run.report["calls"]:
        outcome = sent["expect"].get("outcome", "done")
        mine = [
            m
            for m in per_call
            if props(m)["handoff.event_id"] == sent["event_id"] and props(m)["handoff.outcome"] == outcome
        ]
        assert mine, sent["name"]
        record = mine[0]
        assert props(record)["handoff.correlation_id"] == sent["correlation_id"]
        # A context error or a number no workstream owns is worth an operator's look: Warning.
        noteworthy = sent["expect"].get("rule") in ("invalid-context", "unknown-number")
        level = WARNING if noteworthy and outcome == "done" else levels[outcome]
        assert data(record)["severityLevel"] == level, sent["name"]
        # The record belongs to the call's request: same operation, the span as parent.
        request = requests[(sent["event_id"], outcome)]
        assert record["tags"]["ai.operation.id"] == request["tags"]["ai.operation.id"], sent["name"]
        assert record["tags"]["ai.operation.parentId"] == data(request)["id"]
    # Records logged during a callback carry the call's correlation fields too.
    failing = run.calls("transfer-fails")
    hangup = [m for m in messages if "no fallback is left" in data(m)["message"]]
    assert len(hangup) == 1 and data(hangup[0])["severityLevel"] == ERROR
    assert props(hangup[0])["handoff.correlation_id"] == failing["correlation_id"]


def test_log_dimensions_are_flat_strings_with_sensitive_values_masked_or_hashed(run: Run) -> None:
    billing = run.calls("sentinel-billing")
    [record] = [
        m
        for m in run.of(MESSAGE)
        if props(m).get("handoff.event_id") == billing["event_id"] and "handoff.outcome" in props(m)
    ]
    p = props(record)
    assert "handoff" not in p and "handoff.context" not in p
    assert p["handoff.context.Intent"] == "billing" and p["handoff.context.Priority"] == "7"
    assert p["handoff.queue"] == "billing" and p["handoff.rule"] == "billing-priority"
    if run.key is None:
        assert p["handoff.context.AccountNumber"] == p["handoff.context.Pin"] == "***"
    else:
        assert p["handoff.context.AccountNumber"] == redaction.keyed_hash(run.key, "AccountNumber", ACCOUNT)
        assert p["handoff.context.Pin"] == redaction.keyed_hash(run.key, "Pin", PIN)
    typed = run.calls("type-error-sensitive")
    [error] = [
        m
        for m in run.of(MESSAGE)
        if props(m).get("handoff.event_id") == typed["event_id"] and "handoff.errors" in props(m)
    ]
    assert (
        "'Pin'" in props(error)["handoff.errors"]
        and "sensitive value of 6 characters" in props(error)["handoff.errors"]
    )


# ---- redaction: nothing sensitive in any byte ---------------------------------------------------


def test_no_sensitive_value_and_no_raw_uui_in_any_byte(run: Run) -> None:
    blob = b"\n".join(run.bodies).decode("utf-8")
    assert len(run.bodies) >= 3
    for value in (ACCOUNT, BUNDLED_ACCOUNT):
        for form in (value, value.encode().hex(), value.encode().hex().upper()):
            assert form not in blob, f"{form} was exported"
    # A 4-digit PIN: not as a token of its own (ids and hex strings hold digit runs by chance).
    assert not re.search(rf"(?<![0-9A-Za-z.\-]){PIN}(?![0-9A-Za-z.\-])", blob)
    assert PIN.encode().hex() + "3b" not in blob.lower()  # "4711;" inside a hex payload
    for sent in run.report["calls"]:
        if sent["uui"]:
            assert sent["uui"] not in blob, f"raw UUI of {sent['name']} was exported"
    assert REDACTION_KEY not in blob
    assert "operationContext" not in blob and "incomingCallContext" not in blob


def test_ingestion_endpoint_reads_gzip_and_plain_bodies() -> None:
    import gzip

    envelopes = [{"name": "x"}, {"name": "y"}]
    raw = json.dumps(envelopes).encode()
    assert parse_envelopes(decode_body(gzip.compress(raw), "gzip")) == envelopes
    assert parse_envelopes(decode_body(raw, None)) == envelopes
    assert parse_envelopes(b'{"name": "x"}\n{"name": "y"}\n') == envelopes


# ---- off by default, and the pieces around it ---------------------------------------------------


def test_telemetry_off_imports_no_opentelemetry_and_adds_no_policy() -> None:
    ours = {s.name for s in settings.SETTINGS}
    env = {k: v for k, v in os.environ.items() if k not in ours and not k.startswith("APPLICATIONINSIGHTS_")}
    env.update(START_SETTINGS)
    script = (
        "import sys, function_app\n"
        "from shared import app\nfrom shared.adapters import telemetry\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'azure.monitor')))\n"
        "app.current()\n"
        "print(loaded, telemetry.enabled(), telemetry.call_automation_policies())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["[]", "False", "[]"]


def test_keyed_hash_is_stable_short_and_separates_variables_and_keys() -> None:
    first = redaction.keyed_hash(REDACTION_KEY, "AccountNumber", ACCOUNT)
    assert first == redaction.keyed_hash(REDACTION_KEY, "AccountNumber", ACCOUNT)
    assert re.fullmatch(r"hmac:[0-9a-f]{12}", first)
    assert first != redaction.keyed_hash(REDACTION_KEY, "CardNumber", ACCOUNT)
    assert first != redaction.keyed_hash(REDACTION_KEY + "x", "AccountNumber", ACCOUNT)
    assert redaction.keyed_hash(REDACTION_KEY, "Pin", 4711) == redaction.keyed_hash(REDACTION_KEY, "Pin", "4711")
    decision = Decision(
        action=Action.ANSWER,
        queue="agents",
        rule="fallback",
        workstream="w",
        context_text={"AccountNumber": ACCOUNT, "Intent": "billing"},
        sensitive=frozenset({"AccountNumber"}),
    )
    assert redaction.masked_context(decision) == {"AccountNumber": "***", "Intent": "billing"}
    assert redaction.masked_context(decision, key=REDACTION_KEY) == {"AccountNumber": first, "Intent": "billing"}
    assert redaction.masked_context(decision, key=REDACTION_KEY, reveal=True)["AccountNumber"] == ACCOUNT


def test_handoff_hash_command_prints_what_telemetry_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = io.StringIO(), io.StringIO()
    env = {"HANDOFF_REDACTION_KEY": REDACTION_KEY}
    assert cli.main(["hash", "AccountNumber", ACCOUNT], out, err, env) == cli.EXIT_OK
    assert out.getvalue().strip() == redaction.keyed_hash(REDACTION_KEY, "AccountNumber", ACCOUNT)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{PIN}\n"))
    out = io.StringIO()
    assert cli.main(["hash", "Pin"], out, err, env) == cli.EXIT_OK
    assert out.getvalue().strip() == redaction.keyed_hash(REDACTION_KEY, "Pin", PIN)
    assert cli.main(["hash", "Pin", PIN], io.StringIO(), err, {}) == cli.EXIT_USAGE
    assert cli.main(["hash", "Pin", PIN], io.StringIO(), err, {"HANDOFF_REDACTION_KEY": "short"}) == cli.EXIT_INVALID


GOOD = {"ACS_ENDPOINT": "http://127.0.0.1:9", "HANDOFF_CALLBACK_URL": "https://x.example/api/callbacks"}


def test_telemetry_settings_are_checked_without_echoing_secrets() -> None:
    loaded = settings.load({**GOOD, "HANDOFF_REDACTION_KEY": REDACTION_KEY})
    assert loaded.redaction_key == REDACTION_KEY and loaded.appinsights_connection_string is None
    assert REDACTION_KEY not in repr(loaded)
    with pytest.raises(settings.SettingsError, match="HANDOFF_REDACTION_KEY must be at least 16") as info:
        settings.load({**GOOD, "HANDOFF_REDACTION_KEY": "tooshort-secret"})
    assert "tooshort-secret" not in str(info.value)
    with pytest.raises(settings.SettingsError, match="APPLICATIONINSIGHTS_CONNECTION_STRING"):
        settings.load({**GOOD, "APPLICATIONINSIGHTS_CONNECTION_STRING": "https://example.invalid"})
    auth = settings.load({**GOOD, "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=abc;Authorization=AAD"})
    assert auth.appinsights_authentication_string == "ClientId=abc;Authorization=AAD"
    assert telemetry.entra_client_id("ClientId=abc;Authorization=AAD") == "abc"
    assert telemetry.entra_client_id("Authorization=AAD") is None


def test_exporter_options_entra_identity_and_nothing_automatic() -> None:
    from azure.identity import ManagedIdentityCredential

    connection = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://x.example/"
    plain = telemetry.exporter_options(settings.load({**GOOD, "APPLICATIONINSIGHTS_CONNECTION_STRING": connection}))
    assert plain["connection_string"] == connection and "credential" not in plain
    assert plain["enable_live_metrics"] is False and plain["logger_name"] == "handoff"
    assert all(not o["enabled"] for o in plain["instrumentation_options"].values())
    assert {"azure_sdk", "requests", "urllib", "urllib3"} <= set(plain["instrumentation_options"])
    entra = telemetry.exporter_options(
        settings.load(
            {
                **GOOD,
                "APPLICATIONINSIGHTS_CONNECTION_STRING": connection,
                "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=1111;Authorization=AAD",
            }
        )
    )
    assert isinstance(entra["credential"], ManagedIdentityCredential)


def test_flatten_makes_one_string_dimension_per_field() -> None:
    fields = {
        "queue": "agents",
        "context": {"Intent": "x", "Priority": 7, "IsVip": True},
        "warnings": [],
        "errors": ["a", "b"],
        "correlation_id": None,
        "elapsed_ms": 1.5,
    }
    assert telemetry.flatten("handoff", fields) == {
        "handoff.queue": "agents",
        "handoff.context.Intent": "x",
        "handoff.context.Priority": "7",
        "handoff.context.IsVip": "true",
        "handoff.errors": "a | b",
        "handoff.elapsed_ms": "1.5",
    }


def test_host_json_and_bicep_choose_the_apps_own_configuration() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0" and host["telemetryMode"] == "OpenTelemetry"
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    levels = host["logging"]["logLevel"]
    assert levels["Function.incoming_call.User"] == levels["Function.callbacks.User"] == "None"  # no duplicates
    for path in (ROOT / "infra").rglob("*"):
        if path.is_file() and path.suffix in (".bicep", ".json", ".sh"):
            assert "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY" not in path.read_text(), path
    app = (ROOT / "infra" / "bicep" / "modules" / "function-app.bicep").read_text()
    assert "HANDOFF_REDACTION_KEY: redactionKey" in app
    assert re.search(r"@secure\(\)\s*\n@description\([^\n]*\)\s*\nparam redactionKey string\n", app)


def test_workbook_charts_query_emitted_names_and_are_documented() -> None:
    workbook = json.loads((ROOT / "infra" / "bicep" / "workbook.json").read_text())
    charts = {i["name"]: i["content"] for i in workbook["items"] if i["type"] == 3}
    assert {"calls-per-queue", "decode-failures", "time-to-action", "fallback-rate"} <= set(charts)
    # Every span, metric, attribute and dimension name the telemetry module defines.
    emitted = {v for k, v in vars(names).items() if k.isupper() and isinstance(v, str) and v.startswith("handoff.")}
    docs = (ROOT / "docs" / "operate.md").read_text()
    for name, chart in charts.items():
        query = chart["query"]
        assert query in docs, f"docs/operate.md does not show the query of chart {name}"
        quoted = set(re.findall(r'"(handoff\.[a-z_.]+)"', query))
        assert quoted and quoted <= emitted, f"{name} queries names nobody emits: {quoted - emitted}"
        assert chart["timeContextFromParameter"] == "TimeRange"
    metrics = {v for k, v in vars(names).items() if k.startswith("METRIC_")}
    for metric in metrics:
        assert metric in docs
    alerts = (
        "Decode failure rate",
        "Fallback rate",
        "p99 time to action",
        "Permanent failures",
        "Stale events",
        "Callback signing keys unavailable",
    )
    for alert in alerts:
        assert alert in docs
