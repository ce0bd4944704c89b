"""The local Call Automation emulator, driven by the real SDK (azure-communication-callautomation 1.6.0).

Request shapes are compared with ``tests/data/callautomation-sdk-1.6.0-wire-capture.json`` (what SDK 1.6.0
sent to a loopback server) and callbacks with ``tests/data/callbacks.recorded.json`` (live ACS callbacks).
Everything listens on 127.0.0.1 only and every wait is bounded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import queue
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from azure.communication.callautomation import (
    CallAutomationClient,
    CommunicationIdentifier,
    CommunicationUserIdentifier,
    PhoneNumberIdentifier,
)
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from local.emulator import (
    ALREADY_HANDLED_MARKER,
    ALREADY_HANDLED_STATUS,
    CALLBACK_ISSUER,
    CallAutomationEmulator,
    CallbackDelivery,
)
from tests.conftest import DATA, ROOT, load_json

CAPTURE = load_json(DATA / "callautomation-sdk-1.6.0-wire-capture.json")
RECORDED_CALLBACKS = load_json(DATA / "callbacks.recorded.json")

#: Headers whose values SDK 1.6.0 sends verbatim on every Call Automation request.
STABLE_HEADERS = ("Accept", "x-ms-return-client-request-id")
HMAC_PREFIX = "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature="


# ------------------------------------------------------------------------------------------------
# helpers


def capture_case(name: str) -> dict[str, Any]:
    for case in CAPTURE["cases"]:
        if case["case"] == name:
            return case
    raise KeyError(name)


def captured_request(name: str) -> dict[str, Any]:
    return capture_case(name)["requests"][0]


def sdk_client(emu: CallAutomationEmulator, key: str | None = None) -> CallAutomationClient:
    return CallAutomationClient(
        emu.endpoint,
        AzureKeyCredential(key or emu.access_key),
        retry_total=3,
        retry_backoff_factor=0.01,
        retry_backoff_max=0.05,
        connection_timeout=2,
        read_timeout=5,
    )


def sdk_identifier(model: dict[str, Any]) -> CommunicationIdentifier:
    if "phoneNumber" in model:
        return PhoneNumberIdentifier(model["phoneNumber"]["value"])
    if "communicationUser" in model:
        return CommunicationUserIdentifier(model["communicationUser"]["id"])
    raise AssertionError(f"unexpected identifier model {model}")


def assert_same_request(recorded: Any, captured: dict[str, Any], *, path: str | None = None) -> None:
    """The emulator saw what SDK 1.6.0 sent in the wire capture."""
    assert recorded.method == captured["method"]
    assert recorded.path == (path or captured["path"])
    assert recorded.query == captured["query"]
    assert recorded.body == captured["body"]
    sent = {k.lower(): v for k, v in recorded.headers.items()}
    expected = {k.lower(): v for k, v in captured["headers"].items()}
    assert set(expected) - {"connection"} <= set(sent)
    for name in STABLE_HEADERS:
        assert sent[name.lower()] == expected[name.lower()]
    if "content-type" in expected:
        assert sent["content-type"] == expected["content-type"]
    assert sent["authorization"].startswith(HMAC_PREFIX)
    assert expected["authorization"].startswith(HMAC_PREFIX)
    assert recorded.request_id == sent.get("repeatability-request-id")


def signed_headers(
    emu: CallAutomationEmulator,
    method: str,
    path_and_query: str,
    body: bytes,
    *,
    key: str | None = None,
    signed_body: bytes | None = None,
    content_hash: str | None = None,
) -> dict[str, str]:
    """HMAC headers computed the way ACS documents it (handbook acs.md). ``signed_body`` and
    ``content_hash`` let a test sign one thing and send another."""
    host = f"127.0.0.1:{emu.port}"
    date = formatdate(usegmt=True)
    signed = body if signed_body is None else signed_body
    signed_hash = base64.b64encode(hashlib.sha256(signed).digest()).decode()
    string_to_sign = f"{method}\n{path_and_query}\n{date};{host};{signed_hash}"
    secret = base64.b64decode(key or emu.access_key)
    signature = base64.b64encode(hmac.new(secret, string_to_sign.encode(), hashlib.sha256).digest()).decode()
    return {
        "Host": host,
        "Content-Type": "application/json",
        "x-ms-date": date,
        "x-ms-content-sha256": content_hash or signed_hash,
        "Authorization": HMAC_PREFIX + signature,
    }


def raw_request(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], Any]:
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    return response.status, dict(response.getheaders()), json.loads(payload) if payload else None


class _LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no getfqdn() reverse lookup
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


class CallbackReceiver:
    """A tiny loopback HTTP receiver that records POSTs; stops itself on exit."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            timeout = 5

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 1 << 20))
                with receiver._cond:
                    receiver.requests.append((self.path, dict(self.headers), body))
                    receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _LoopbackServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True

    def url(self, path: str = "/api/callbacks", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def wait(self, count: int = 1, timeout: float = 5.0) -> list[tuple[str, dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < count:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"expected {count} callback(s), got {len(self.requests)}"
                self._cond.wait(remaining)
            return list(self.requests)

    def __enter__(self) -> CallbackReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(2)


@pytest.fixture
def emu() -> Iterator[CallAutomationEmulator]:
    with CallAutomationEmulator() as emulator:
        yield emulator


@pytest.fixture
def no_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fails nothing, records every getaddrinfo host that is not a literal loopback address."""
    seen: list[str] = []
    real = socket.getaddrinfo

    def spy(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "::1"):
            seen.append(str(host))
            raise OSError(f"test forbids resolving {host!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    return seen


def answered_call(emu: CallAutomationEmulator, callback_url: str = "https://example.invalid/cb") -> str:
    context = emu.incoming_call()["data"]["incomingCallContext"]
    return sdk_client(emu).answer_call(context, callback_url).call_connection_id


# ------------------------------------------------------------------------------------------------
# request shapes against the wire capture


def test_answer_matches_capture_and_returns_properties(emu: CallAutomationEmulator) -> None:
    captured = captured_request("answer_call(callback_url, operation_context)")
    body = captured["body"]
    props = sdk_client(emu).answer_call(
        body["incomingCallContext"], body["callbackUri"], operation_context=body["operationContext"]
    )
    [action] = emu.actions
    assert_same_request(action, captured)
    assert action.status == 200
    assert action.operation == "answer"
    assert action.call_connection_id == props.call_connection_id
    assert uuid.UUID(props.call_connection_id)
    assert props.call_connection_state == "connecting"
    assert props.callback_url == body["callbackUri"]
    assert props.server_call_id and props.correlation_id
    assert isinstance(props.source, PhoneNumberIdentifier)
    assert [type(t) for t in props.targets] == [PhoneNumberIdentifier]
    assert isinstance(props.answered_by, CommunicationUserIdentifier)
    # The response has the members of the REST example (plus correlationId/answeredBy).
    example = json.loads((DATA / "rest-answer-call.example.json").read_text(encoding="utf-8"))
    assert set(example["responses"]["200"]["body"]) <= set(action.response)


def test_answer_of_a_known_incoming_call_returns_its_parties(emu: CallAutomationEmulator) -> None:
    event = emu.incoming_call(caller="+14255550123", callee="8:acs:" + emu.resource_id + "_bot")
    props = sdk_client(emu).answer_call(event["data"]["incomingCallContext"], "https://example.invalid/cb")
    assert props.server_call_id == event["data"]["serverCallId"]
    assert props.correlation_id == event["data"]["correlationId"]
    assert props.source.raw_id == "4:+14255550123"
    assert [t.raw_id for t in props.targets] == [event["data"]["to"]["rawId"]]
    assert event["eventType"] == "Microsoft.Communication.IncomingCall"
    connection = sdk_client(emu).get_call_connection(props.call_connection_id)
    assert connection.get_call_properties().call_connection_id == props.call_connection_id


@pytest.mark.parametrize("case", ["redirect_call(PhoneNumberIdentifier)", "redirect_call(CommunicationUserIdentifier)"])
def test_redirect_matches_capture(emu: CallAutomationEmulator, case: str) -> None:
    captured = captured_request(case)
    body = captured["body"]
    assert sdk_client(emu).redirect_call(body["incomingCallContext"], sdk_identifier(body["target"])) is None
    [action] = emu.executed("redirect")
    assert_same_request(action, captured)
    assert action.status == 204
    time.sleep(0.05)
    assert emu.callbacks_recorded == [] and emu.callbacks_sent == []  # redirect publishes no callbacks


@pytest.mark.parametrize("case", ["reject_call()", "reject_call(call_reject_reason='busy')"])
def test_reject_matches_capture(emu: CallAutomationEmulator, case: str) -> None:
    captured = captured_request(case)
    body = captured["body"]
    kwargs = {"call_reject_reason": body["callRejectReason"]} if "callRejectReason" in body else {}
    assert sdk_client(emu).reject_call(body["incomingCallContext"], **kwargs) is None
    [action] = emu.executed("reject")
    assert_same_request(action, captured)
    assert action.status == 204


@pytest.mark.parametrize(
    "case",
    [
        "transfer_call_to_participant(PSTN, sip_headers, operation_context)",
        "transfer_call_to_participant(ACS user, voip_headers)",
    ],
)
def test_transfer_matches_capture_and_calls_back(emu: CallAutomationEmulator, case: str) -> None:
    captured = captured_request(case)
    body = captured["body"]
    call_id = answered_call(emu)
    captured_id = re.fullmatch(r"/calling/callConnections/([^:]+):transferToParticipant", captured["path"])
    assert captured_id is not None
    custom = body.get("customCallingContext", {})
    kwargs: dict[str, Any] = {
        "operation_context": body.get("operationContext"),
        "operation_callback_url": body.get("operationCallbackUri"),
        "sip_headers": custom.get("sipHeaders"),
        "voip_headers": custom.get("voipHeaders"),
    }
    if "sourceCallerIdNumber" in body:
        kwargs["source_caller_id_number"] = PhoneNumberIdentifier(body["sourceCallerIdNumber"]["value"])
    connection = sdk_client(emu).get_call_connection(call_id)
    result = connection.transfer_call_to_participant(sdk_identifier(body["targetParticipant"]), **kwargs)
    assert result.operation_context == body.get("operationContext")

    [action] = emu.executed("transfer")
    assert_same_request(action, captured, path=captured["path"].replace(captured_id.group(1), call_id))
    assert action.status == 202
    assert action.call_connection_id == call_id

    accepted = emu.wait_for_callback(lambda c: "Microsoft.Communication.CallTransferAccepted" in c.types)
    # Sent to the operation callback when given, else to the answer's callback; both are not loopback.
    assert accepted.url == (body.get("operationCallbackUri") or "https://example.invalid/cb")
    assert not accepted.sent
    data = accepted.events[0]["data"]
    assert data["callConnectionId"] == call_id
    assert data["transferTarget"]["rawId"] == body["targetParticipant"]["rawId"]
    assert data.get("operationContext") == body.get("operationContext")
    assert data["resultInformation"]["code"] == 202


def test_failing_transfer_target_gets_call_transfer_failed(emu: CallAutomationEmulator) -> None:
    emu.fail_transfer_to("+18005550199")
    with CallbackReceiver() as receiver:
        call_id = answered_call(emu, receiver.url())
        connection = sdk_client(emu).get_call_connection(call_id)
        result = connection.transfer_call_to_participant(
            PhoneNumberIdentifier("+18005550199"), operation_context="xfer-fail"
        )
        assert result.operation_context == "xfer-fail"
        requests = receiver.wait(2)
    events = [json.loads(body)[0] for _path, _headers, body in requests]
    assert [e["type"] for e in events] == [
        "Microsoft.Communication.CallConnected",
        "Microsoft.Communication.CallTransferFailed",
    ]
    failed = events[1]["data"]
    assert failed["operationContext"] == "xfer-fail"
    assert failed["resultInformation"]["code"] >= 400
    assert failed["transferTarget"]["rawId"] == "4:+18005550199"


@pytest.mark.parametrize(("for_everyone", "method", "suffix"), [(False, "DELETE", ""), (True, "POST", ":terminate")])
def test_hang_up_wire_format_and_call_disconnected(
    emu: CallAutomationEmulator, for_everyone: bool, method: str, suffix: str
) -> None:
    call_id = answered_call(emu)
    connection = sdk_client(emu).get_call_connection(call_id)
    assert connection.hang_up(is_for_everyone=for_everyone) is None
    [action] = emu.executed("hangup")
    assert action.method == method
    assert action.path == f"/calling/callConnections/{call_id}{suffix}"
    assert action.body is None
    assert action.status == 204
    # Only terminate carries repeatability headers (SDK 1.6.0 source and observed on the wire).
    assert (action.request_id is not None) is for_everyone
    disconnected = emu.wait_for_callback(lambda c: "Microsoft.Communication.CallDisconnected" in c.types)
    expected = RECORDED_CALLBACKS["CallDisconnected"]["data"]["resultInformation"]
    assert disconnected.events[0]["data"]["resultInformation"] == expected
    with pytest.raises(ResourceNotFoundError):
        connection.hang_up(is_for_everyone=for_everyone)


def test_unknown_call_connection_is_404(emu: CallAutomationEmulator) -> None:
    connection = sdk_client(emu).get_call_connection("11111111-2222-3333-4444-555555555555")
    with pytest.raises(ResourceNotFoundError, match="NotFound"):
        connection.transfer_call_to_participant(PhoneNumberIdentifier("+18005550199"))
    with pytest.raises(ResourceNotFoundError):
        connection.hang_up(is_for_everyone=False)
    assert [a.status for a in emu.actions] == [404, 404]
    assert emu.executed() == []


# ------------------------------------------------------------------------------------------------
# authentication


def test_wrong_key_is_client_authentication_error_and_no_action(emu: CallAutomationEmulator) -> None:
    other_key = base64.b64encode(b"k" * 32).decode()
    with pytest.raises(ClientAuthenticationError, match="Denied"):
        sdk_client(emu, key=other_key).reject_call("ctx")
    assert emu.actions == []
    [denied] = emu.denied
    assert "signature" in denied.reason


def test_tampered_body_or_hash_is_401(emu: CallAutomationEmulator) -> None:
    path = "/calling/callConnections:reject?api-version=2026-03-12"
    good = json.dumps({"incomingCallContext": "ctx-a"}).encode()
    bad = json.dumps({"incomingCallContext": "ctx-b"}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        # Body changed after signing; the hash header still describes the original body.
        status, _, payload = raw_request(conn, "POST", path, bad, signed_headers(emu, "POST", path, good))
        assert status == 401
        assert payload["error"]["code"] == "Denied"
        assert "content hash" in payload["error"]["message"]
        # Body and hash changed together; the signature still covers the original hash.
        bad_hash = base64.b64encode(hashlib.sha256(bad).digest()).decode()
        headers = signed_headers(emu, "POST", path, bad, signed_body=good, content_hash=bad_hash)
        status, _, payload = raw_request(conn, "POST", path, bad, headers)
        assert status == 401
        assert "signature" in payload["error"]["message"]
        # The same helper, untampered, is accepted.
        status, _, _ = raw_request(conn, "POST", path, good, signed_headers(emu, "POST", path, good))
        assert status == 204
    finally:
        conn.close()
    assert [a.body for a in emu.actions] == [{"incomingCallContext": "ctx-a"}]
    assert len(emu.denied) == 2


def test_bearer_token_when_configured() -> None:
    with CallAutomationEmulator(bearer_token="entra-token") as emulator:
        path = "/calling/callConnections:reject?api-version=2026-03-12"
        body = json.dumps({"incomingCallContext": "ctx"}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
        try:
            for token, expected in (("wrong", 401), ("entra-token", 204)):
                headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
                assert raw_request(conn, "POST", path, body, headers)[0] == expected
        finally:
            conn.close()


# ------------------------------------------------------------------------------------------------
# repeatability, already handled, expired contexts


def test_repeated_request_id_executes_once_then_already_handled(emu: CallAutomationEmulator) -> None:
    event = emu.incoming_call()
    context = event["data"]["incomingCallContext"]
    path = "/calling/callConnections:answer?api-version=2026-03-12"
    body = json.dumps({"incomingCallContext": context, "callbackUri": "https://example.invalid/cb"}).encode()
    headers = signed_headers(emu, "POST", path, body)
    headers["Repeatability-Request-ID"] = str(uuid.uuid4())
    headers["Repeatability-First-Sent"] = headers["x-ms-date"]
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        first = raw_request(conn, "POST", path, body, headers)
        second = raw_request(conn, "POST", path, body, headers)  # same connection, same headers
        assert first[0] == second[0] == 200
        assert first[2] == second[2]
        # Same id, different request: refused, never executed.
        other = json.dumps({"incomingCallContext": "x", "callbackUri": "https://example.invalid/cb"}).encode()
        reused = signed_headers(emu, "POST", path, other)
        reused["Repeatability-Request-ID"] = headers["Repeatability-Request-ID"]
        assert raw_request(conn, "POST", path, other, reused)[0] == 409
        # A new request id acting on the same, answered incoming call.
        again = signed_headers(emu, "POST", path, body)
        again["Repeatability-Request-ID"] = str(uuid.uuid4())
        status, _, payload = raw_request(conn, "POST", path, body, again)
        assert status == ALREADY_HANDLED_STATUS
        assert ALREADY_HANDLED_MARKER in payload["error"]["message"]
        assert "answered" in payload["error"]["message"]
    finally:
        conn.close()
    assert [a.status for a in emu.actions] == [200, ALREADY_HANDLED_STATUS]
    assert len(emu.executed("answer")) == 1
    assert len(emu.replayed) == 2
    emu.wait_for_callback()
    time.sleep(0.1)
    assert len(emu.callbacks_recorded) == 1

    with pytest.raises(HttpResponseError) as caught:
        sdk_client(emu).redirect_call(context, PhoneNumberIdentifier("+18005550199"))
    assert caught.value.status_code == ALREADY_HANDLED_STATUS
    assert ALREADY_HANDLED_MARKER in str(caught.value)


def test_sdk_retry_after_503_keeps_request_id_and_executes_once(emu: CallAutomationEmulator) -> None:
    captured = capture_case("answer_call with default RetryPolicy: emulator replies 503 once, then 200")
    ids = {r["headers"]["Repeatability-Request-ID"] for r in captured["requests"]}
    assert len(captured["requests"]) == 2 and len(ids) == 1  # the premise, as captured

    emu.inject("answer", status=503)
    context = emu.incoming_call()["data"]["incomingCallContext"]
    props = sdk_client(emu).answer_call(context, "https://example.invalid/cb")
    first, second = emu.actions
    assert (first.status, first.fault, second.status, second.fault) == (503, True, 200, False)
    assert first.request_id == second.request_id is not None
    assert [a.call_connection_id for a in emu.executed("answer")] == [props.call_connection_id]


def test_429_with_retry_after_then_success(emu: CallAutomationEmulator) -> None:
    emu.inject("redirect", status=429, retry_after=0.3)
    context = emu.incoming_call()["data"]["incomingCallContext"]
    sdk_client(emu).redirect_call(context, PhoneNumberIdentifier("+18005550199"))
    first, second = emu.actions
    assert (first.status, second.status) == (429, 204)
    assert second.at - first.at >= 0.25  # the SDK waited for Retry-After
    assert first.request_id == second.request_id


def test_faults_times_wildcard_delay_and_unretried_status(emu: CallAutomationEmulator) -> None:
    client = sdk_client(emu)
    emu.inject("*", status=500, times=2)
    context = emu.incoming_call()["data"]["incomingCallContext"]
    client.answer_call(context, "https://example.invalid/cb")
    assert [a.status for a in emu.actions] == [500, 500, 200]

    emu.clear()
    emu.inject("reject", delay=0.3)
    started = time.monotonic()
    client.reject_call(emu.incoming_call()["data"]["incomingCallContext"])
    assert time.monotonic() - started >= 0.3
    assert [a.status for a in emu.actions] == [204]

    emu.clear()
    call_id = answered_call(emu)
    emu.inject("transfer", status=502, body={"error": {"code": "BadGateway", "message": "gateway"}})
    with pytest.raises(HttpResponseError) as caught:  # azure-core does not retry a POST on 502
        client.get_call_connection(call_id).transfer_call_to_participant(PhoneNumberIdentifier("+18005550199"))
    assert caught.value.status_code == 502
    assert [a.status for a in emu.actions if a.operation == "transfer"] == [502]
    time.sleep(0.1)
    assert not any("Transfer" in t for c in emu.callbacks_recorded for t in c.types)


@pytest.mark.parametrize("operation", ["answer", "redirect"])
def test_expired_context_renders_exactly_as_captured(emu: CallAutomationEmulator, operation: str) -> None:
    [captured] = [c for c in CAPTURE["cases"] if c["case"].startswith(f"{operation} -> ") and "IDX23010" in c["case"]]
    body = captured["requests"][0]["body"]
    emu.expire_context(body["incomingCallContext"])
    client = sdk_client(emu)
    with pytest.raises(HttpResponseError) as caught:
        if operation == "answer":
            client.answer_call(body["incomingCallContext"], body["callbackUri"])
        else:
            client.redirect_call(body["incomingCallContext"], sdk_identifier(body["target"]))
    assert caught.value.status_code == int(captured["exception_status_code"])
    assert "IDX23010" in str(caught.value)
    assert str(caught.value) == captured["exception"].split(": ", 1)[1]
    assert emu.executed() == []


def test_context_lifetime_expires_incoming_calls() -> None:
    with CallAutomationEmulator(context_lifetime=0.05) as emulator:
        context = emulator.incoming_call()["data"]["incomingCallContext"]
        time.sleep(0.1)
        with pytest.raises(HttpResponseError, match="IDX23010"):
            sdk_client(emulator).answer_call(context, "https://example.invalid/cb")


# ------------------------------------------------------------------------------------------------
# callbacks


def test_call_connected_callback_with_verifiable_jwt(emu: CallAutomationEmulator, no_lookups: list[str]) -> None:
    event = emu.incoming_call()
    with CallbackReceiver() as receiver:
        callback_url = receiver.url("/api/callbacks?callerId=%2B14255550123")
        props = sdk_client(emu).answer_call(
            event["data"]["incomingCallContext"], callback_url, operation_context="ivr-transfer-42"
        )
        [(path, headers, raw)] = receiver.wait(1)
    assert path == "/api/callbacks?callerId=%2B14255550123"
    assert headers["Content-Type"].startswith("application/json")
    events = json.loads(raw)
    assert isinstance(events, list) and len(events) == 1
    [connected] = events
    recorded = RECORDED_CALLBACKS["CallConnected"]
    assert list(connected) == list(recorded)
    assert set(connected["data"]) == set(recorded["data"]) | {"operationContext"}
    assert connected["type"] == recorded["type"] == "Microsoft.Communication.CallConnected"
    assert connected["source"] == f"calling/callConnections/{props.call_connection_id}"
    assert connected["subject"] == connected["source"]
    assert connected["specversion"] == "1.0" and connected["datacontenttype"] == "application/json"
    data = connected["data"]
    assert data["callConnectionId"] == props.call_connection_id
    assert data["serverCallId"] == event["data"]["serverCallId"]
    assert data["correlationId"] == event["data"]["correlationId"]
    assert data["operationContext"] == "ivr-transfer-42"
    assert data["resultInformation"] == recorded["data"]["resultInformation"]
    assert data["publicEventType"] == connected["type"]

    scheme, _, token = headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    with urllib.request.urlopen(emu.openid_config_url, timeout=5) as response:
        config = json.load(response)
    assert config["issuer"] == CALLBACK_ISSUER
    assert config["jwks_uri"] == emu.jwks_url
    signing_key = jwt.PyJWKClient(config["jwks_uri"], timeout=5).get_signing_key_from_jwt(token)
    claims = jwt.decode(token, signing_key.key, algorithms=["RS256"], audience=emu.resource_id, issuer=CALLBACK_ISSUER)
    assert claims["exp"] - claims["iat"] == 300
    assert claims["nbf"] == claims["iat"]
    assert jwt.get_unverified_header(token)["kid"] == signing_key.key_id
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, signing_key.key, algorithms=["RS256"], audience=str(uuid.uuid4()))

    [sent] = emu.callbacks_sent
    assert (sent.sent, sent.status, sent.error, sent.url) == (True, 200, None, callback_url)
    assert no_lookups == []


def test_non_loopback_callback_is_recorded_never_sent(emu: CallAutomationEmulator, no_lookups: list[str]) -> None:
    url = "https://agents.example.com/api/callbacks"
    props = sdk_client(emu).answer_call(emu.incoming_call()["data"]["incomingCallContext"], url)
    recorded = emu.wait_for_callback(lambda c: c.url == url)
    assert isinstance(recorded, CallbackDelivery)
    assert (recorded.sent, recorded.status) == (False, None)
    assert recorded.types == ["Microsoft.Communication.CallConnected"]
    assert recorded.events[0]["data"]["callConnectionId"] == props.call_connection_id
    assert jwt.decode(recorded.token, options={"verify_signature": False})["aud"] == emu.resource_id
    assert emu.callbacks_sent == []
    assert no_lookups == []
    # http to a non-loopback host is refused as in Azure ("Call Automation doesn't support HTTP").
    with pytest.raises(HttpResponseError, match="CallbackUri is invalid"):
        sdk_client(emu).answer_call(emu.incoming_call()["data"]["incomingCallContext"], "http://agents.example.com/")


def test_localhost_callback_is_delivered_without_resolving(emu: CallAutomationEmulator, no_lookups: list[str]) -> None:
    with CallbackReceiver(status=204) as receiver:
        answered_call(emu, receiver.url("/cb", host="localhost"))
        [(_path, headers, _body)] = receiver.wait(1)
    assert headers["Host"] == f"localhost:{receiver.port}"
    assert emu.wait_for_callback().status == 204
    assert no_lookups == []


def test_unreachable_receiver_is_recorded_with_error(emu: CallAutomationEmulator) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    answered_call(emu, f"http://127.0.0.1:{port}/cb")
    delivery = emu.wait_for_callback(timeout=5)
    assert delivery.sent and delivery.status is None and delivery.error


# ------------------------------------------------------------------------------------------------
# server behaviour


def test_discovery_endpoints_need_no_auth_and_unknown_routes_are_404(emu: CallAutomationEmulator) -> None:
    with urllib.request.urlopen(emu.jwks_url, timeout=5) as response:
        keys = json.load(response)["keys"]
    assert [(k["kty"], k["alg"], k["use"], k["kid"]) for k in keys] == [("RSA", "RS256", "sig", emu.key_id)]
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        status, _, payload = raw_request(conn, "GET", "/calling/nothing", b"", {})
        assert status == 404 and payload["error"]["code"] == "NotFound"
    finally:
        conn.close()


def test_keep_alive_requests_do_not_stall_on_delayed_acks(emu: CallAutomationEmulator) -> None:
    # Without TCP_NODELAY each keep-alive response stalls ~40 ms (handbook acs.md); measured here:
    # 20 requests take ~0.01 s with it and ~0.85 s without.
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
    try:
        started = time.monotonic()
        for _ in range(20):
            conn.request("GET", "/calling/keys")
            assert conn.getresponse().read()
        assert time.monotonic() - started < 0.4
    finally:
        conn.close()


def test_oversized_body_is_413_without_reading_it(emu: CallAutomationEmulator) -> None:
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as sock:
        sock.sendall(b"POST /calling/callConnections:answer HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")
    assert emu.actions == [] and emu.denied == []


def test_wait_for_is_bounded(emu: CallAutomationEmulator) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        emu.wait_for(lambda a: a.operation == "answer", timeout=0.1)
    assert time.monotonic() - started < 1
    with pytest.raises(ValueError):
        emu.inject("dance", status=500)


def test_stop_is_bounded_with_open_keep_alive_connection() -> None:
    emulator = CallAutomationEmulator().start()
    port = emulator.port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/calling/keys")
    conn.getresponse().read()  # the connection stays open (HTTP/1.1 keep-alive)
    started = time.monotonic()
    emulator.stop()
    assert time.monotonic() - started < 2
    conn.close()
    assert not emulator.running
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    emulator.stop()  # idempotent


def test_module_runs_standalone() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.emulator"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        # readline() in a thread: select() on a buffered text pipe misses lines already buffered.
        output: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [output.put(line) for line in proc.stdout], daemon=True).start()
        lines: list[str] = []
        deadline = time.monotonic() + 10
        while not lines or lines[-1] != "Ctrl-C to stop.\n":
            try:
                lines.append(output.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"the emulator did not get ready: {lines}") from None
        assert re.fullmatch(r"ACS_ENDPOINT=http://127\.0\.0\.1:\d+\n", lines[0])
        assert any(line.startswith("HANDOFF_OPENID_CONFIG_URL=http://127.0.0.1:") for line in lines)
        # SIGTERM is handled like Ctrl-C; SIGINT itself may be ignored when tests run in the background.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
