"""local/fault_proxy.py against a real Azurite, seen from the real azure-data-tables client.

Each mode is observed the way the app will observe it: ``pass`` relays everything the client
relies on (keep-alive, ETag and If-Match, 201/204/409/412), ``stopped`` refuses connections and
comes back on the same port, ``slow`` holds each request, ``forbidden`` answers Azure's 403.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.data.tables import TableClient, UpdateMode

from local.azurite import Azurite, free_port
from local.fault_proxy import FaultProxy, forbidden_body


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as store:
        yield store


@pytest.fixture
def proxy(azurite: Azurite) -> Iterator[FaultProxy]:
    with FaultProxy(azurite.port) as proxy:
        yield proxy


def _table(proxy: FaultProxy, **kwargs: Any) -> TableClient:
    """A new table behind the proxy, and a client of it (``retry_total=0``: one attempt per call)."""
    name = f"calls{uuid.uuid4().hex[:12]}"
    TableClient.from_connection_string(proxy.connection_string(), table_name=name).create_table()
    return TableClient.from_connection_string(proxy.connection_string(), table_name=name, **kwargs)


_NOW = datetime(2026, 11, 30, 7, 5, 27, 127990, tzinfo=UTC)

RECORD = {"PartitionKey": "call", "RowKey": "c0ffee", "Queue": "billing", "Intent": "billing"}


def test_pass_relays_what_the_client_relies_on(proxy: FaultProxy) -> None:
    table = _table(proxy)
    created = table.create_entity(RECORD)
    assert created["etag"].startswith('W/"datetime'), created  # the ETag header came through
    with pytest.raises(ResourceExistsError) as conflict:  # 409: a second record for one call
        table.create_entity(RECORD)
    assert conflict.value.status_code == 409 and "EntityAlreadyExists" in str(conflict.value)

    record = table.get_entity("call", "c0ffee")
    etag = record.metadata["etag"]
    record["Queue"] = "agents"
    table.update_entity(record, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified)
    with pytest.raises(ResourceModifiedError) as stale:  # 412: If-Match with the old ETag
        table.update_entity(record, mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified)
    assert stale.value.status_code == 412

    assert [e["Queue"] for e in table.query_entities("Intent eq 'billing'")] == ["agents"]
    table.delete_entity("call", "c0ffee")  # 204, no body
    with pytest.raises(ResourceNotFoundError):
        table.get_entity("call", "c0ffee")

    # Every call went through the proxy (create_table and the eight above), on kept-alive connections.
    assert proxy.forwarded == proxy.requests == 9, (proxy.forwarded, proxy.requests)
    assert proxy.connections <= 2, f"keep-alive: {proxy.connections} connections for 9 requests"
    assert (proxy.delayed, proxy.forbidden, proxy.dropped) == (0, 0, 0)


def test_pass_adds_no_delayed_ack_stall(azurite: Azurite, proxy: FaultProxy) -> None:
    """A read through the proxy costs about what it costs straight to Azurite: not the ~40 ms a
    response sent as two small packets waits for the client's delayed ACK (Nagle on the proxy)."""
    table = _table(proxy)
    table.create_entity(RECORD)
    times = []
    for _ in range(15):
        started = time.perf_counter()
        table.get_entity("call", "c0ffee")
        times.append(time.perf_counter() - started)
    assert sorted(times)[len(times) // 2] < 0.02, f"median read through the proxy: {sorted(times)}"


def test_stopped_refuses_connections_and_comes_back_on_the_same_port(proxy: FaultProxy) -> None:
    table = _table(proxy, retry_total=0)
    table.create_entity(RECORD)  # the client now holds a kept-alive connection to the proxy
    port = proxy.port

    proxy.mode = "stopped"
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    started = time.monotonic()
    with pytest.raises(ServiceRequestError):
        table.get_entity("call", "c0ffee")
    assert time.monotonic() - started < 1.0, "a refused connection fails at once (no retries configured)"
    assert proxy.dropped >= 1, "the kept-alive connection was closed too"

    proxy.mode = "pass"
    assert proxy.port == port
    assert table.get_entity("call", "c0ffee")["Queue"] == "billing"


def test_stopped_drops_a_request_held_by_slow(proxy: FaultProxy) -> None:
    table = _table(proxy, retry_total=0)
    proxy.slow_seconds = 30.0
    proxy.mode = "slow"
    failure: list[BaseException] = []

    def read() -> None:
        try:
            table.get_entity("call", "c0ffee")
        except BaseException as exc:
            failure.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    started = time.monotonic()
    reader.start()
    for _ in range(200):  # until the request is held
        if proxy.delayed:
            break
        time.sleep(0.01)
    proxy.mode = "stopped"
    reader.join(timeout=10)
    assert not reader.is_alive() and time.monotonic() - started < 5.0, "the held request must end when the store stops"
    assert failure and not isinstance(failure[0], HttpResponseError), failure  # no answer, a broken connection


def test_slow_holds_each_request(proxy: FaultProxy) -> None:
    table = _table(proxy)
    table.create_entity(RECORD)
    proxy.slow_seconds = 0.3
    proxy.mode = "slow"
    started = time.monotonic()
    assert table.get_entity("call", "c0ffee")["Queue"] == "billing"  # late, but answered
    assert time.monotonic() - started >= 0.3
    assert proxy.delayed == 1

    proxy.mode = "pass"
    started = time.monotonic()
    table.get_entity("call", "c0ffee")
    assert time.monotonic() - started < 0.3


def test_forbidden_answers_azures_403_and_reaches_nothing(proxy: FaultProxy) -> None:
    table = _table(proxy, retry_total=0)
    proxy.mode = "forbidden"
    with pytest.raises(HttpResponseError) as refused:
        table.get_entity("call", "c0ffee")
    assert refused.value.status_code == 403
    assert refused.value.error_code == "AuthorizationPermissionMismatch"  # type: ignore[attr-defined]
    assert "not authorized to perform this operation using this permission" in str(refused.value)

    # create_entity re-raises azure-core's error undecoded: the code is in the header and the body.
    with pytest.raises(HttpResponseError) as insert:
        table.create_entity(RECORD)
    response = insert.value.response
    assert response is not None and response.status_code == 403
    assert response.headers["x-ms-error-code"] == "AuthorizationPermissionMismatch"  # type: ignore[attr-defined]
    assert json.loads(response.text())["odata.error"]["code"] == "AuthorizationPermissionMismatch"
    assert proxy.forbidden == 2

    proxy.forbidden_code = "AuthorizationFailure"
    with pytest.raises(HttpResponseError) as firewall:
        table.get_entity("call", "c0ffee")
    assert (firewall.value.status_code, firewall.value.error_code) == (403, "AuthorizationFailure")  # type: ignore[attr-defined]

    proxy.mode = "pass"
    with pytest.raises(ResourceNotFoundError):  # the refused insert never reached Azurite
        table.get_entity("call", "c0ffee")


def test_forbidden_body_is_the_table_services_odata_error() -> None:
    body = json.loads(forbidden_body("AuthorizationPermissionMismatch", "r-1", _NOW))
    error = body["odata.error"]
    assert error["code"] == "AuthorizationPermissionMismatch"
    assert error["message"]["lang"] == "en-US"
    assert error["message"]["value"] == (
        "This request is not authorized to perform this operation using this permission.\n"
        "RequestId:r-1\nTime:2026-11-30T07:05:27.1279900Z"
    )


def test_mode_must_be_known(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        proxy.mode = "down"  # type: ignore[assignment]
    assert proxy.mode == "pass"


def test_an_unreachable_store_is_a_502() -> None:
    with FaultProxy(free_port()) as proxy:  # nothing listens upstream
        table = TableClient.from_connection_string(proxy.connection_string(), table_name="calls", retry_total=0)
        with pytest.raises(HttpResponseError) as failed:
            table.get_entity("call", "c0ffee")
    assert failed.value.status_code == 502


def test_chunked_bodies_and_headers_are_relayed_intact() -> None:
    """Framing the client or the store may use but Azurite and azure-data-tables do not here."""
    with _EchoStore() as store, FaultProxy(store.port) as proxy:
        connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
        chunks = [b'{"PartitionKey":', b'"call",', b'"RowKey":"c0ffee"}']
        connection.request(
            "POST", "/devstoreaccount1/calls?timeout=5", body=iter(chunks), encode_chunked=True,
            headers={"If-Match": 'W/"1"', "Content-Type": "application/json"},
        )  # fmt: skip
        response = connection.getresponse()
        echoed = json.loads(response.read())
        assert response.status == 201
        assert response.getheader("ETag") == 'W/"2"'
        assert echoed["body"] == b"".join(chunks).decode()
        assert echoed["path"] == "/devstoreaccount1/calls?timeout=5"
        assert echoed["if_match"] == 'W/"1"'
        assert echoed["host"] == f"127.0.0.1:{proxy.port}"
        assert echoed["transfer_encoding"] is None  # re-framed with a Content-Length
        connection.close()


class _EchoStore:
    """A loopback stand-in for the store that answers chunked, echoing what it received."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])

    def __enter__(self) -> _EchoStore:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        data = json.dumps(
            {
                "body": body.decode(),
                "path": self.path,
                "if_match": self.headers.get("If-Match"),
                "host": self.headers.get("Host"),
                "transfer_encoding": self.headers.get("Transfer-Encoding"),
            }
        ).encode()
        self.send_response(201)
        self.send_header("ETag", 'W/"2"')
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for part in (data[:10], data[10:]):
            self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")
