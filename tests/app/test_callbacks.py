"""Callbacks: only calls this app set up are steered, an answered call is never left with nobody on
it, and malformed input is refused with a JSON error, never a 500."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from local.stack import Stack
from tests.conftest import ROUTING_WITH_TRANSFER_FALLBACK


def with_transfer_fallback(stack: Stack, tmp_path: Path, **settings: str) -> None:
    """Restart the app on the example routing whose workstream falls back to a transfer queue."""
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING_WITH_TRANSFER_FALLBACK)
    stack.restart(HANDOFF_CONFIG=str(path), **settings)


def operations(stack: Stack, event: dict) -> list[str]:
    return [a.operation for a in stack.actions_for(event)]


# ---- callbacks: JWT ----------------------------------------------------------------------------


def connected_event(stack: Stack, event: dict) -> list[dict]:
    """The CallConnected the emulator sent for this call."""
    answer = next(a for a in stack.actions_for(event) if a.operation == "answer")
    found: list[dict] = []

    def look() -> bool:
        for delivery in stack.emu.callbacks_sent + stack.emu.callbacks_recorded:
            for ev in delivery.events:
                if ev["data"].get("callConnectionId") == answer.call_connection_id and ev["type"].endswith(
                    "CallConnected"
                ):
                    found.append(ev)
                    return True
        return False

    assert stack.wait(look), "no CallConnected for this call"
    return found[:1]


def forged_token(audience: str, *, issuer: str = "https://acscallautomation.communication.azure.com") -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    return jwt.encode({"iss": issuer, "aud": audience, "iat": now, "exp": now + 300}, key, algorithm="RS256")


@pytest.mark.parametrize("token", ["missing", "expired", "forged", "wrong-audience", "wrong-issuer", "garbage"])
def test_a_callback_without_a_valid_jwt_is_401_and_nothing_is_acted_on(stack: Stack, token: str) -> None:
    event = stack.call(sip={"User-To-User": "Intent=billing;Priority=9"})
    stack.emu.fail_transfer_to("+14255550123")  # make the real flow stop before any second transfer
    assert stack.post([event])[0] == 202
    assert stack.wait(lambda: operations(stack, event) == ["answer", "transfer", "hangup"])
    before = len(stack.emu.actions)
    authorization = {
        "missing": None,
        "expired": "Bearer " + stack.emu.callback_token(now=time.time() - 3600),
        "forged": "Bearer " + forged_token(stack.emu.resource_id),
        "wrong-audience": "Bearer "
        + jwt.encode(
            {
                "iss": "https://acscallautomation.communication.azure.com",
                "aud": "someone-else",
                "exp": time.time() + 60,
            },
            stack.emu._signing_key,  # the emulator's real key, addressed to another resource
            algorithm="RS256",
            headers={"kid": stack.emu.key_id},
        ),
        "wrong-issuer": "Bearer "
        + jwt.encode(
            {"iss": "https://evil.example", "aud": stack.emu.resource_id, "exp": time.time() + 60},
            stack.emu._signing_key,
            algorithm="RS256",
            headers={"kid": stack.emu.key_id},
        ),
        "garbage": "Bearer not.a.jwt",
    }[token]
    status, _ = stack.post_callback(connected_event(stack, event), authorization)
    assert status == 401
    time.sleep(0.2)
    assert len(stack.emu.actions) == before


def test_a_valid_callback_is_accepted(stack: Stack) -> None:
    event = stack.call(sip={"User-To-User": "Intent=support"})
    assert stack.post([event])[0] == 202
    status, body = stack.post_callback(connected_event(stack, event), "Bearer " + stack.emu.callback_token())
    assert status == 200 and json.loads(body)["handled"] == ["CallConnected: nothing to do"]


# ---- transfers that fail -----------------------------------------------------------------------


def test_a_failed_transfer_tries_the_fallback_queue_once_with_the_context(stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with_transfer_fallback(stack, tmp_path)
    stack.emu.fail_transfer_to("+14255550123")
    event = stack.call(sip={"User-To-User": "Intent=billing;Priority=9"})
    assert stack.post([event])[0] == 202
    assert stack.wait(lambda: operations(stack, event) == ["answer", "transfer", "transfer"])
    first, second = [a for a in stack.actions_for(event) if a.operation == "transfer"]
    assert first.body["targetParticipant"]["rawId"] == "4:+14255550123"
    assert second.body["targetParticipant"]["rawId"] == "4:+14255550188"
    from shared.core import uui

    headers = second.body["customCallingContext"]["sipHeaders"]
    assert uui.decode(headers["User-To-User"]).pairs == {"Intent": "billing", "Priority": "9"}


def test_when_the_fallback_transfer_fails_too_the_call_is_hung_up_with_the_reason_logged(
    stack: Stack,
    tmp_path,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    with_transfer_fallback(stack, tmp_path)
    stack.emu.fail_transfer_to("+14255550123")
    stack.emu.fail_transfer_to("+14255550188", message="Target busy. (emulated)")
    event = stack.call(sip={"User-To-User": "Intent=billing;Priority=9"})
    with caplog.at_level("WARNING", logger="handoff"):
        assert stack.post([event])[0] == 202
        assert stack.wait(lambda: operations(stack, event) == ["answer", "transfer", "transfer", "hangup"])
    assert any(
        "no fallback is left; hanging up" in r.getMessage() and "Target busy" in r.getMessage() for r in caplog.records
    )


def test_with_an_answer_fallback_queue_a_failed_transfer_hangs_up(stack: Stack) -> None:
    stack.emu.fail_transfer_to("+14255550123")
    event = stack.call(sip={"User-To-User": "Intent=billing;Priority=9"})
    assert stack.post([event])[0] == 202
    assert stack.wait(lambda: operations(stack, event) == ["answer", "transfer", "hangup"])


def test_a_caller_hanging_up_before_the_transfer_is_logged(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    # CallConnected goes to a host the emulator only records, so no transfer starts; then the
    # caller hangs up and CallDisconnected reaches the app.
    stack.restart(HANDOFF_CALLBACK_URL="https://handoff.example.com/api/callbacks")
    event = stack.call(sip={"User-To-User": "Intent=billing;Priority=9"})
    assert stack.post([event])[0] == 202
    [connected] = connected_event(stack, event)
    disconnected = json.loads(json.dumps(connected))
    disconnected["type"] = "Microsoft.Communication.CallDisconnected"
    with caplog.at_level("WARNING", logger="handoff"):
        status, _ = stack.post_callback([disconnected], "Bearer " + stack.emu.callback_token())
    assert status == 200
    assert any("caller hung up before the transfer to queue billing" in r.getMessage() for r in caplog.records)
    assert operations(stack, event) == ["answer"]


def test_a_transfer_request_refused_outright_still_ends_in_a_defined_outcome(stack: Stack) -> None:
    # No CallTransferFailed follows a refused request: the app must act on the refusal itself.
    stack.emu.inject("transfer", status=400, body={"error": {"code": "BadRequest", "message": "emulated"}})
    event = stack.call(sip={"User-To-User": "Intent=billing;Priority=9"})
    assert stack.post([event])[0] == 202
    assert stack.wait(lambda: operations(stack, event) == ["answer", "hangup"])
    assert [a.status for a in stack.emu.actions if a.operation == "transfer"] == [400]


def test_a_refused_transfer_tries_the_fallback_queue(stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with_transfer_fallback(stack, tmp_path)
    stack.emu.inject("transfer", status=403)
    event = stack.call(sip={"User-To-User": "Intent=billing;Priority=9"})
    assert stack.post([event])[0] == 202
    assert stack.wait(lambda: operations(stack, event) == ["answer", "transfer"])
    [fallback] = [a for a in stack.actions_for(event) if a.operation == "transfer"]
    assert fallback.body["targetParticipant"]["rawId"] == "4:+14255550188"


# ---- only our own calls ------------------------------------------------------------------------


def signed_callback(stack: Stack, kind: str, connection: str, operation_context: str) -> list[dict]:
    """A callback exactly as ACS signs it for any app of the resource: a valid token is no proof of the call."""
    return [
        {
            "id": f"{kind}-forged",
            "source": f"calling/callConnections/{connection}",
            "type": f"Microsoft.Communication.{kind}",
            "data": {"callConnectionId": connection, "operationContext": operation_context},
        }
    ]


@pytest.mark.parametrize(
    "operation_context",
    [
        '{"queue":"billing","workstream":"retail-ivr","correlationId":"x","context":{"Intent":"billing"}}',
        '{"queue":"billing","workstream":"retail-ivr","correlationId":"x","context":{},"mac":"AAAA"}',
        "",
    ],
    ids=["unsigned", "wrong-mac", "none"],
)
def test_a_validly_signed_callback_for_a_call_this_app_did_not_set_up_is_ignored(
    stack: Stack, operation_context: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A call answered for another app (the agents' answer queue): its connection exists at ACS.
    event = stack.call(sip={"User-To-User": "Intent=support"})
    assert stack.post([event])[0] == 202
    [answer] = stack.actions_for(event)
    forged = signed_callback(stack, "CallConnected", str(answer.call_connection_id), operation_context)
    with caplog.at_level("WARNING", logger="handoff"):
        status, body = stack.post_callback(forged, "Bearer " + stack.emu.callback_token())
    assert (status, json.loads(body)) == (200, {"handled": ["CallConnected: ignored"]})
    time.sleep(0.2)
    assert operations(stack, event) == ["answer"]  # the forged "queue billing" was not transferred
    assert any("does not verify" in r.getMessage() for r in caplog.records)


def test_sensitive_values_travel_sealed_to_acs_and_back_and_in_clear_only_to_the_transfer_target(stack: Stack) -> None:
    event = stack.call(sip={"User-To-User": "Intent=billing;Priority=9;AccountNumber=500112233445;Pin=4711"})
    assert stack.post([event])[0] == 202
    assert stack.wait(lambda: operations(stack, event) == ["answer", "transfer"])
    answer, transfer = stack.actions_for(event)
    for body in (answer.body["operationContext"], transfer.body["operationContext"]):
        assert "500112233445" not in body and "4711" not in body
        assert "sealed" in json.loads(body)

    def callbacks() -> list[str]:
        return [
            json.dumps(d.events)
            for d in stack.emu.callbacks_sent
            if transfer.call_connection_id in json.dumps(d.events)
        ]

    assert stack.wait(lambda: len(callbacks()) >= 2)  # CallConnected and CallTransferAccepted, echoed back
    assert all("500112233445" not in events for events in callbacks())
    # The agent at the transfer target gets the whole context, as the IVR sent it.
    from shared.core import uui

    pairs = uui.decode(transfer.body["customCallingContext"]["sipHeaders"]["User-To-User"]).pairs
    assert pairs == {"Intent": "billing", "Priority": "9", "AccountNumber": "500112233445", "Pin": "4711"}


# ---- malformed input: 400 with a JSON error, never 500 ---------------------------------------------


def post_raw(stack: Stack, body: bytes, authorization: str | None) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(f"{stack.host.url}/api/callbacks", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{nope", 400, "the body is not JSON"),
        (b"\xff\xfe", 400, "the body is not JSON"),
        (b"[1, 2]", 400, "every callback event must be a JSON object"),
        (b'"text"', 400, "every callback event must be a JSON object"),
        (json.dumps([{"type": "x"}] * 51).encode(), 400, "51 events in one callback; at most 50 are accepted"),
        (b"[" + b" " * (256 * 1024) + b"]", 413, "the body is over 262144 bytes"),
    ],
    ids=["not-json", "not-utf8", "not-objects", "a-string", "51-events", "too-large"],
)
def test_a_malformed_callback_gets_a_json_error_not_a_500(stack: Stack, body: bytes, status: int, error: str) -> None:
    answered, reply = post_raw(stack, body, "Bearer " + stack.emu.callback_token())
    assert (answered, json.loads(reply)) == (status, {"error": error})
    assert stack.host.errors == [] and stack.emu.actions == []


def test_fifty_events_in_one_callback_are_all_read(stack: Stack) -> None:
    events = [{"type": "Microsoft.Communication.ParticipantsUpdated", "data": {}}] * 50
    status, body = stack.post_callback(events, "Bearer " + stack.emu.callback_token())
    assert status == 200 and json.loads(body)["handled"] == ["ParticipantsUpdated: ignored"] * 50


# ---- the signing keys cannot be fetched ----------------------------------------------------------


def test_when_the_signing_keys_cannot_be_fetched_the_callback_gets_503_and_the_error_is_logged_as_such(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    from local.stack import free_port

    stack.restart(HANDOFF_OPENID_CONFIG_URL=f"http://127.0.0.1:{free_port()}/calling/keys")  # nobody listens
    event = stack.call(sip={"User-To-User": "Intent=support"})
    assert stack.post([event])[0] == 202
    with caplog.at_level("ERROR", logger="handoff"):
        status, body = stack.post_callback(
            signed_callback(stack, "CallConnected", "c", ""), "Bearer " + stack.emu.callback_token()
        )
    assert (status, json.loads(body)) == (503, {"error": "the callback signing keys cannot be fetched"})
    assert any("the signing keys cannot be fetched" in r.getMessage() for r in caplog.records)


# ---- an answered call is never left with nobody on it -----------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after"), [(503, None), (500, None), (429, 0.05), (409, None)], ids=["503", "500", "429", "409"]
)
def test_a_transfer_refused_for_a_while_is_retried_before_any_fallback(
    stack: Stack, status: int, retry_after: float | None
) -> None:
    stack.emu.inject("transfer", status=status, retry_after=retry_after, times=2)
    event = stack.call(sip={"User-To-User": "Intent=billing;Priority=9"})
    assert stack.post([event])[0] == 202
    assert stack.wait(lambda: operations(stack, event) == ["answer", "transfer"])
    attempts = [a for a in stack.emu.actions if a.operation == "transfer"]
    assert [a.status for a in attempts] == [status, status, 202]
    assert len({a.request_id for a in attempts}) == 1  # one repeatable request, re-sent
    assert stack.emu.actions[-1].body["targetParticipant"]["rawId"] == "4:+14255550123"  # not the fallback


def test_a_transfer_refused_until_the_deadline_then_goes_to_the_fallback_queue(stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with_transfer_fallback(stack, tmp_path, HANDOFF_DEADLINE_SECONDS="1.5")
    stack.emu.inject("transfer", status=503, times=100, target="+14255550123")
    event = stack.call(sip={"User-To-User": "Intent=billing;Priority=9"})
    assert stack.post([event])[0] == 202
    assert stack.wait(lambda: operations(stack, event) == ["answer", "transfer"], timeout=10)
    [fallback] = [a for a in stack.actions_for(event) if a.operation == "transfer"]
    assert fallback.body["targetParticipant"]["rawId"] == "4:+14255550188"
    primary = [a for a in stack.emu.actions if a.operation == "transfer" and a.status == 503]
    assert len(primary) >= 2  # retried inside the deadline before giving up on the primary


def test_a_hang_up_refused_for_a_while_is_retried(stack: Stack) -> None:
    stack.emu.fail_transfer_to("+14255550123")  # answer queue as fallback: the call is hung up
    stack.emu.inject("hangup", status=503, times=2)
    event = stack.call(sip={"User-To-User": "Intent=billing;Priority=9"})
    assert stack.post([event])[0] == 202
    assert stack.wait(lambda: operations(stack, event) == ["answer", "transfer", "hangup"])
    assert [a.status for a in stack.emu.actions if a.operation == "hangup"] == [503, 503, 204]


def test_a_call_transferred_ends_with_the_transfer_logged(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    event = stack.call(sip={"User-To-User": "Intent=billing;Priority=9"})
    with caplog.at_level("INFO", logger="handoff"):
        assert stack.post([event])[0] == 202
        assert stack.wait(
            lambda: any("transferred to queue billing (+14255550123)" in r.getMessage() for r in caplog.records)
        )
    assert operations(stack, event) == ["answer", "transfer"]


def test_a_call_that_falls_back_ends_with_the_reason_and_the_fallback_logged(
    stack: Stack,
    tmp_path,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    with_transfer_fallback(stack, tmp_path)
    stack.emu.fail_transfer_to("+14255550123", message="No agent answered. (emulated)")
    event = stack.call(sip={"User-To-User": "Intent=billing;Priority=9"})
    with caplog.at_level("INFO", logger="handoff"):
        assert stack.post([event])[0] == 202
        assert stack.wait(lambda: any("transferred to queue overflow" in r.getMessage() for r in caplog.records))
    messages = [r.getMessage() for r in caplog.records]
    assert any("No agent answered" in m and "trying fallback queue overflow" in m for m in messages)


def test_when_even_the_hang_up_fails_the_reason_is_logged(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    stack.restart(HANDOFF_DEADLINE_SECONDS="1")
    stack.emu.fail_transfer_to("+14255550123")
    stack.emu.inject("hangup", status=500, times=100)
    event = stack.call(sip={"User-To-User": "Intent=billing;Priority=9"})
    with caplog.at_level("ERROR", logger="handoff"):
        assert stack.post([event])[0] == 202
        assert stack.wait(lambda: any("hanging up failed too" in r.getMessage() for r in caplog.records), timeout=10)
    assert stack.host.errors == []
