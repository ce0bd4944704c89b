"""The function app as the Functions worker sees it: real trigger objects, real start-up."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import subprocess

import azure.functions as func
import pytest

from local.stack import Stack
from shared import app
from tests.conftest import START_SETTINGS, run_python


def test_the_app_registers_incoming_call_as_event_grid_and_callbacks_as_anonymous_http(stack: Stack) -> None:
    triggers = {f.get_function_name(): f.get_trigger() for f in stack.host.functions}
    assert triggers["incoming_call"].get_binding_name() == "eventGridTrigger"
    assert triggers["callbacks"].get_binding_name() == "httpTrigger"
    assert triggers["callbacks"].route == "callbacks"
    assert str(triggers["callbacks"].auth_level).lower().endswith("anonymous")


def test_incoming_call_takes_a_real_event_grid_event(stack: Stack) -> None:
    event = stack.call(sip={"User-To-User": "IsVip=yes"})
    grid_event = func.EventGridEvent(
        id=event["id"],
        data=event["data"],
        topic=event["topic"],
        subject=event["subject"],
        event_type=event["eventType"],
        event_time=dt.datetime.now(dt.UTC),
        data_version="1.0",
    )
    assert stack.function("incoming_call")(grid_event) is None
    assert [a.operation for a in stack.actions_for(event)] == ["redirect"]


def test_incoming_call_takes_a_real_cloud_event(stack: Stack) -> None:
    event = stack.call(sip={"User-To-User": "Intent=support"})
    cloud_event = func.CloudEvent(
        id=event["id"],
        source=event["topic"],
        type=event["eventType"],
        specversion="1.0",
        data=event["data"],
        time=dt.datetime.now(dt.UTC),
        subject=event["subject"],
    )
    stack.function("incoming_call")(cloud_event)
    [answer] = stack.actions_for(event)
    assert json.loads(answer.body["operationContext"])["context"] == {"Intent": "support"}


def test_incoming_call_raises_only_when_a_redelivery_can_still_help(stack: Stack) -> None:
    event = stack.call(sip={"User-To-User": "Intent=support"})
    stack.emu.inject("answer", status=503, retry_after=60)
    grid_event = func.EventGridEvent(
        id=event["id"],
        data=event["data"],
        topic="t",
        subject="s",
        event_type=event["eventType"],
        event_time=dt.datetime.now(dt.UTC),
        data_version="1.0",
    )
    with pytest.raises(app.RetryableFailure, match="past the 10s deadline"):
        stack.function("incoming_call")(grid_event)


def test_the_callbacks_function_takes_a_real_http_request(stack: Stack) -> None:
    request = func.HttpRequest(method="POST", url="/api/callbacks", headers={}, params={}, route_params={}, body=b"[]")
    response = stack.function("callbacks")(request)
    assert response.status_code == 401  # no JWT, nothing acted on


def import_function_app(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_python(["-c", "import function_app"], env)


def without(env: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != name}


GOOD = START_SETTINGS


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({k: v for k, v in GOOD.items() if k != "ACS_ENDPOINT"}, "setting ACS_ENDPOINT is required"),
        ({**GOOD, "HANDOFF_CALLBACK_URL": "callbacks"}, "setting HANDOFF_CALLBACK_URL must be an absolute"),
        ({**GOOD, "HANDOFF_DEADLINE_SECONDS": "soon"}, "setting HANDOFF_DEADLINE_SECONDS must be a number"),
        ({**GOOD, "HANDOFF_DEADLINE_SECONDS": "40"}, "must be in (0, 25]"),
        ({**GOOD, "HANDOFF_CONFIG": "missing.yaml"}, "missing.yaml: cannot read the routing configuration"),
        ({**GOOD, "HANDOFF_CONFIG": "examples/calls/manifest.json"}, "expected a mapping with queues and workstreams"),
        # A transfer queue's call is answered, then transferred on a callback that must verify.
        (without(GOOD, "ACS_RESOURCE_ID"), "setting ACS_RESOURCE_ID is required: queue billing transfers calls"),
        (without(GOOD, "HANDOFF_CONTEXT_KEY"), "setting HANDOFF_CONTEXT_KEY is required: queue billing transfers"),
        ({**GOOD, "HANDOFF_CONTEXT_KEY": "short-key"}, "every key must be at least 32 characters long"),
    ],
)
def test_a_bad_setting_or_configuration_fails_start_up_naming_it(env: dict[str, str], message: str) -> None:
    result = import_function_app(env)
    assert result.returncode != 0
    assert message in result.stderr


def test_good_settings_start_the_app() -> None:
    result = import_function_app(GOOD)
    assert result.returncode == 0, result.stderr


def test_a_process_that_starts_the_app_and_ends_at_once_exits_cleanly() -> None:
    """The AES-GCM prewarm thread was a daemon: a process ending while it was inside cryptography's
    Rust module init aborted (SIGABRT, "FATAL: exception not rethrown"), 3-8 times in 40 here.
    The race depends on timing, so the start-up is tried 24 times, four at a time."""
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: import_function_app(GOOD), range(24)))
    failed = [(r.returncode, r.stderr.strip()[-200:]) for r in results if r.returncode != 0]
    assert failed == []
