"""test.http: each local request, sent to the running stack, gets the status and routing its title promises."""

from __future__ import annotations

import json
import logging
import re
import secrets
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from local.stack import post_json
from tests.conftest import ROOT

TEST_HTTP = ROOT / "test.http"


@dataclass
class Request:
    title: str
    expect: int
    method: str
    url: str
    headers: dict[str, str]
    body: str


def parse(text: str) -> tuple[dict[str, str], list[Request]]:
    """REST Client's format: ``@name = value`` variables, then requests separated by ``###`` lines."""
    variables = dict(re.findall(r"^@(\w+) = (.+)$", text, flags=re.M))
    requests = []
    for block in text.split("\n###")[1:]:
        lines = block.split("\n")
        title = lines[0].strip()
        expect = [int(m.group(1)) for line in lines if (m := re.fullmatch(r"# expect: (\d{3})", line.strip()))]
        [start] = [i for i, line in enumerate(lines) if re.match(r"(GET|POST) ", line)]
        method, url = lines[start].split(" ", 1)
        end = lines.index("", start)
        headers = dict(line.split(": ", 1) for line in lines[start + 1 : end])
        body = "\n".join(lines[end + 1 :]).strip()
        requests.append(Request(title, expect[0] if expect else 0, method, url, headers, body))
    return variables, requests


def substitute(text: str, variables: dict[str, str]) -> str:
    """REST Client's variables: file ones, and the system ones this file uses (a new GUID each time)."""
    text = re.sub(r"\{\{\$guid\}\}", lambda _m: str(uuid.uuid4()), text)
    text = text.replace("{{$datetime iso8601}}", datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    return re.sub(r"\{\{(\w+)\}\}", lambda m: variables[m.group(1)], text)


@pytest.fixture
def decisions() -> Iterator[list[dict[str, Any]]]:
    """The app's per-call log fields, as logged."""
    found: list[dict[str, Any]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            fields = getattr(record, "handoff", None)
            if isinstance(fields, dict) and "queue" in fields:
                found.append(fields)

    handler = Keep()
    logger = logging.getLogger("handoff")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield found
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_every_request_says_what_it_expects_and_its_body_is_json() -> None:
    variables, requests = parse(TEST_HTTP.read_text(encoding="utf-8"))
    assert {"local", "app", "eventGridKey"} <= set(variables)
    assert len(requests) >= 7
    for request in requests:
        assert request.expect in (200, 202, 401, 404), request.title
        if request.method == "POST":
            json.loads(substitute(request.body, variables))
        else:
            assert (request.method, request.body) == ("GET", ""), request.title
        assert request.url.startswith(("{{local}}/", "https://{{app}}/")), request.title
        if "/api/calls/" in request.url:  # a lookup always carries the function key, one way or the other
            given = request.headers.get("x-functions-key") == "{{functionKey}}"
            assert given or request.url.endswith("?code={{functionKey}}"), request.title
        if "/runtime/webhooks/eventgrid" in request.url:
            assert request.headers["aeg-event-type"] in ("Notification", "SubscriptionValidation")
            assert request.url.startswith("{{local}}") or "code={{eventGridKey}}" in request.url


def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def test_the_local_requests_get_what_their_titles_promise_from_the_running_stack(
    stack: Any, azurite: Any, decisions: list[dict[str, Any]]
) -> None:
    # As `make run` serves it: the call records on, in Azurite (a table of this test's own).
    app = stack.restart(HANDOFF_STORE=azurite.connection_string, HANDOFF_STORE_TABLE="t" + secrets.token_hex(6))
    variables, requests = parse(TEST_HTTP.read_text(encoding="utf-8"))
    variables["local"] = stack.host.url
    variables["functionKey"] = stack.host.function_key
    local = [r for r in requests if r.url.startswith("{{local}}")]
    assert len(local) == 5
    for request in local:
        before = len(decisions)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-type"}
        headers = {k: substitute(v, variables) for k, v in headers.items()}
        if request.method == "GET":
            assert app.records is not None and app.records.flush(10)  # written in the background, in ms
            status, answer = _get(substitute(request.url, variables), headers)
            assert status == request.expect, request.title
            record = json.loads(answer)
            # The first call's record: its queue, and its sensitive account number masked by default.
            assert (record["correlation_id"], record["queue"]) == (variables["correlationId"], "billing")
            assert record["context"]["AccountNumber"] == "***"
            assert record["context"]["Intent"] == "billing"
            continue
        body = json.loads(substitute(request.body, variables))
        status, _ = post_json(substitute(request.url, variables), body, headers)
        assert status == request.expect, request.title
        if promised := re.search(r"rule ([\w-]+), queue ([\w-]+)", request.title):
            [fields] = decisions[before:]
            assert (fields["rule"], fields["queue"], fields["outcome"]) == (*promised.groups(), "done"), request.title
