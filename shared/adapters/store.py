"""The call records in Azure Table Storage (``azure-data-tables``), Azurite locally: the only module
that talks to the store.

- **Where**: ``HANDOFF_STORE``: in Azure the table endpoint, with the app's managed identity (its
  role, *Storage Table Data Contributor*, is scoped to the table: infra/bicep), so the table is
  created by the Bicep, never here; locally a connection string (Azurite), and the table is
  created on first use.
- **Off the answer's path**: ``azure.data.tables`` (~18 ms of imports, handbook azure.md) is
  imported on first use, which the :class:`RecordWriter` makes after the first Call Automation
  request; the IncomingCall handler only queues the record.
- **Two clients**: the callback flow's reads and conditional writes, and lookups, give up after
  :data:`FAST_TIMEOUT_S` (a transfer must not wait on a slow store: the flow then falls back to
  this process's own state, shared/adapters/dedupe.py; a lookup answers 503); record writes and
  the sweep allow :data:`BULK_TIMEOUT_S`.
- **Concurrency**: the transfer flow's state moves with optimistic concurrency: a write carries
  the ETag it read (``If-Match``) and fails with 412 when another instance wrote first; the
  record's own write never touches the flow's properties (call_record.FLOW_PROPERTIES).

Every failure of the store becomes :class:`StoreError`, whose message names the cause (never a
connection string or a value).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.adapters.dedupe import CallStates
from shared.adapters.settings import Settings
from shared.core.call_record import FLOW_PROPERTIES, CallRecord, from_entity, to_entity
from shared.core.callback_flow import CallbackEvent, CallState
from shared.core.sealing import Sealer

log = logging.getLogger("handoff.store")

#: The callback flow's store requests and lookups: a slower store is treated as unavailable (the
#: flow falls back to this process's state, a lookup answers 503) rather than keeping a caller or an
#: agent waiting.
FAST_TIMEOUT_S = 1.0
#: Record writes, lookups and the sweep: off any call's path.
BULK_TIMEOUT_S = 10.0
#: Conditional updates lost to another writer are read and tried again this many times.
_CAS_ROUNDS = 8


class StoreError(Exception):
    """The store could not be reached, timed out or refused the request."""


class CallStore:
    """The records of one table. Thread-safe; the clients are created on first use.

    ``store`` is HANDOFF_STORE (a table endpoint, or a connection string), ``table`` HANDOFF_STORE_TABLE;
    ``sealer`` (HANDOFF_CONTEXT_KEY) seals sensitive values on write and opens them on a revealing read.
    """

    @classmethod
    def from_settings(cls, settings: Settings, sealer: Sealer | None) -> CallStore:
        assert settings.store, "CallStore needs HANDOFF_STORE"
        return cls(settings.store, settings.store_table, sealer, settings.azure_client_id)

    def __init__(self, store: str, table: str, sealer: Sealer | None, azure_client_id: str | None = None) -> None:
        self.store = store
        self.table = table
        self.azure_client_id = azure_client_id
        self.sealer = sealer
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._table_ready = False

    # ---- clients --------------------------------------------------------------------------

    def _client(self, purpose: str) -> Any:
        with self._lock:
            client = self._clients.get(purpose)
            if client is None:
                client = self._clients[purpose] = self._new_client(
                    FAST_TIMEOUT_S if purpose == "fast" else BULK_TIMEOUT_S
                )
            if not self._table_ready and not _is_endpoint(self.store):
                # Locally (a connection string) the table may not exist yet; in Azure the Bicep
                # creates it, and the app's role on the table alone could not create it anyway.
                from azure.core.exceptions import ResourceExistsError

                try:
                    client.create_table()
                except ResourceExistsError:
                    pass
                except Exception as exc:
                    raise StoreError(_reason(exc)) from None
                self._table_ready = True
            return client

    def _new_client(self, timeout: float) -> Any:
        from azure.data.tables import TableClient  # here: never on a cold start's path to the first answer

        from shared.adapters import transport

        store, table = self.store, self.table
        # retry_total=0: the flow falls back at once, and the record writer retries on its own terms.
        options: dict[str, Any] = {"retry_total": 0}
        if _is_endpoint(store):
            from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

            client_id = self.azure_client_id
            credential: Any = ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()
            options |= transport.client_options(store, connection_timeout=timeout, read_timeout=timeout)
            return TableClient(endpoint=store, table_name=table, credential=credential, **options)
        # The table endpoint a connection string names (TableEndpoint, or the account's), for its proxies.
        endpoint = TableClient.from_connection_string(store, table_name=table).url
        options |= transport.client_options(endpoint, connection_timeout=timeout, read_timeout=timeout)
        return TableClient.from_connection_string(store, table_name=table, **options)

    @contextmanager
    def _calls(self) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(_reason(exc)) from None

    # ---- the record ------------------------------------------------------------------------

    def write(self, record: CallRecord) -> None:
        """Store the record of a call leg. A second write of the same leg (another delivery of the
        call) merges its properties, leaves the transfer flow's alone (a callback may already have
        moved it on), and never turns a leg that got its action into a failure: a duplicate refused
        on another instance must not hide the call's real record."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        entity = to_entity(record, self.sealer)
        kept = {k: v for k, v in entity.items() if k not in FLOW_PROPERTIES and k != "AwaitingTransfer"}
        with self._calls():
            client = self._client("bulk")
            for _ in range(_CAS_ROUNDS):
                try:
                    client.create_entity(entity)
                    return
                except ResourceExistsError:
                    pass
                try:
                    stored = client.get_entity(record.correlation_id, record.leg, select=["Outcome"])
                except ResourceNotFoundError:
                    continue  # deleted meanwhile (its time to live): create it again
                if stored.get("Outcome") == "done" and record.outcome != "done":
                    return
                try:
                    client.update_entity(
                        kept,
                        mode=UpdateMode.MERGE,
                        etag=stored.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                    return
                except (ResourceModifiedError, ResourceNotFoundError):
                    continue
        raise StoreError(f"the record kept changing under {_CAS_ROUNDS} conditional writes")

    def sync_flow(self, correlation_id: str, leg: str, state: str, now: datetime) -> None:
        """Write a transfer-flow step an instance decided on its own state while the store failed, so
        the sweep does not take the call for stranded: only over a flow no instance has moved yet."""
        for _ in range(_CAS_ROUNDS):
            current, version = self.flow(correlation_id, leg)
            if current not in (None, "answered"):
                return
            if self.set_flow_if(correlation_id, leg, version, state, now):
                return
        raise StoreError(f"the flow state kept changing under {_CAS_ROUNDS} conditional writes")

    def legs(self, correlation_id: str, reveal: bool = False) -> list[CallRecord]:
        """Every leg recorded under the correlation id, oldest first."""
        with self._calls():
            entities = self._client("fast").query_entities("PartitionKey eq @pk", parameters={"pk": correlation_id})
            records = [self._record(e, reveal) for e in entities]
        return sorted(records, key=lambda r: r.acted_at)

    def recent(self, since: datetime, queue: str | None = None, limit: int = 1000) -> list[CallRecord]:
        """Legs acted on since ``since`` (optionally of one queue), newest first, at most ``limit``."""
        query, parameters = "ActedAt ge @since", dict[str, Any]({"since": since})
        if queue is not None:
            query, parameters = query + " and Queue eq @queue", {**parameters, "queue": queue}
        with self._calls():
            entities = self._client("bulk").query_entities(query, parameters=parameters)
            records = [self._record(e, False) for e in entities]
        return sorted(records, key=lambda r: r.acted_at, reverse=True)[:limit]

    def _record(self, entity: Any, reveal: bool) -> CallRecord:
        etag = entity.metadata.get("etag") if hasattr(entity, "metadata") else None
        return from_entity(entity, self.sealer if reveal else None, etag)

    # ---- the transfer flow's state, shared by every instance -------------------------------

    def flow(self, correlation_id: str, leg: str) -> tuple[str | None, int]:
        """(state, version) of the leg's transfer flow: (None, 0) before any callback moved it."""
        from azure.core.exceptions import ResourceNotFoundError

        with self._calls():
            try:
                entity = self._client("fast").get_entity(correlation_id, leg, select=["FlowState", "FlowVersion"])
            except ResourceNotFoundError:
                return None, 0
        record = from_entity({"PartitionKey": correlation_id, "RowKey": leg, **entity})
        return record.flow_state, record.flow_version

    def set_flow_if(self, correlation_id: str, leg: str, version: int, state: str, now: datetime) -> bool:
        """Move the flow to ``state`` if it is still at ``version``; False when another writer got
        there first. An update that loses only to a write of the record itself (same version) is
        read again and retried: that write changed the ETag, not the flow."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        change = {
            "PartitionKey": correlation_id,
            "RowKey": leg,
            "FlowState": state,
            "FlowVersion": version + 1,
            "UpdatedAt": now,
            "AwaitingTransfer": False,
        }
        with self._calls():
            client = self._client("fast")
            for _ in range(_CAS_ROUNDS):
                try:
                    entity = client.get_entity(correlation_id, leg, select=["FlowVersion"])
                except ResourceNotFoundError:
                    if version != 0:
                        return False
                    try:  # the callback came before the record's write: the flow's row starts here
                        client.create_entity(change)
                        return True
                    except ResourceExistsError:
                        continue
                current = entity.get("FlowVersion")
                if (current if isinstance(current, int) else 0) != version:
                    return False
                try:
                    client.update_entity(
                        change,
                        mode=UpdateMode.MERGE,
                        etag=entity.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                    return True
                except (ResourceModifiedError, ResourceNotFoundError):
                    continue
        raise StoreError(f"the flow state kept changing under {_CAS_ROUNDS} conditional updates")

    # ---- the sweep ---------------------------------------------------------------------------

    def stranded(self, answered_before: datetime) -> list[CallRecord]:
        """Legs answered for a transfer before ``answered_before`` whose flow has not moved on."""
        with self._calls():
            entities = self._client("bulk").query_entities(
                "AwaitingTransfer eq true and ActedAt lt @before", parameters={"before": answered_before}
            )
            return [self._record(e, True) for e in entities]

    def settle(self, record: CallRecord) -> None:
        """The leg no longer awaits its transfer (its flow moved on, or the sweep acted on it)."""
        from azure.data.tables import UpdateMode

        with self._calls():
            self._client("bulk").update_entity(
                {"PartitionKey": record.correlation_id, "RowKey": record.leg, "AwaitingTransfer": False},
                mode=UpdateMode.MERGE,
            )

    def delete_expired(self, now: datetime) -> int:
        """Delete the records past their time to live (HANDOFF_CONTEXT_TTL_HOURS); how many."""
        with self._calls():
            client = self._client("bulk")
            expired = list(
                client.query_entities("ExpiresAt lt @now", parameters={"now": now}, select=["PartitionKey", "RowKey"])
            )
            for entity in expired:
                client.delete_entity(entity["PartitionKey"], entity["RowKey"])
        return len(expired)


def _is_endpoint(store: str | None) -> bool:
    return bool(store) and str(store).startswith(("https://", "http://"))


def _reason(exc: BaseException) -> str:
    """What went wrong, for a log line: the HTTP status and error code, or the kind of failure."""
    status = getattr(exc, "status_code", None)
    code = getattr(exc, "error_code", None)
    if status is not None:
        return f"the store answered {status}{f' {code}' if code else ''}"
    name = type(exc).__name__
    if name in ("ServiceRequestError", "ServiceRequestTimeoutError"):
        return "the store cannot be reached"
    if name in ("ServiceResponseError", "ServiceResponseTimeoutError"):
        return "the store did not answer in time"
    return f"the store failed ({name})"


#: A flow version, tagged with where it was read: the store's, or this process's own.
Version = tuple[str, int]


class FlowStates:
    """The callback flow's state of each call. With a store, it lives in the call's record, found by
    the correlation id and leg its verified operation context carries, so every instance sees it
    and a conditional write lets exactly one of them act. Without one, or when the store fails
    (logged), it is this process's own (dedupe.CallStates): the call still gets its step."""

    def __init__(self, store: CallStore | None, local: CallStates, writer: RecordWriter | None = None) -> None:
        self.store = store
        self.local = local
        #: Where a step decided on this instance's own state goes, to reach the store once it answers.
        self.writer = writer

    def _key(self, event: CallbackEvent) -> tuple[str, str] | None:
        op = event.operation_context
        if self.store is None or op is None or not op.correlation_id or not op.leg:
            return None
        return op.correlation_id, op.leg

    def get(self, event: CallbackEvent) -> tuple[CallState, Version]:
        key = self._key(event)
        if key is not None:
            try:
                state, number = self.store.flow(*key)  # type: ignore[union-attr]
                return _state(state), ("store", number)
            except StoreError as exc:
                log.warning("%s: the store is unavailable (%s); this instance's own state decides", event.who, exc)
        return self._local_get(event)

    def _local_get(self, event: CallbackEvent) -> tuple[CallState, Version]:
        if event.call_connection_id is None:
            return CallState.ANSWERED, ("local", 0)
        state, version = self.local.get(event.call_connection_id)
        return state, ("local", version)

    def set_if(self, event: CallbackEvent, version: Version, state: CallState) -> bool:
        where, number = version
        key = self._key(event)
        if where == "store" and key is not None:
            try:
                return self.store.set_flow_if(*key, number, str(state), _utcnow())  # type: ignore[union-attr]
            except StoreError as exc:
                log.warning("%s: the store is unavailable (%s); this instance's own state decides", event.who, exc)
                _, version = self._local_get(event)
                where, number = version
        moved = True if event.call_connection_id is None else self.local.set_if(event.call_connection_id, number, state)
        if moved and key is not None and self.writer is not None:
            # Decided without the store: written there once it answers, so that the sweep does not
            # take the call for stranded (and another instance sees where the flow is).
            self.writer.submit(FlowSync(key[0], key[1], str(state), _utcnow()))
        return moved


def _state(text: str | None) -> CallState:
    """The stored flow state; a record no callback has moved yet is answered."""
    try:
        return CallState(text) if text else CallState.ANSWERED
    except ValueError:
        return CallState.ANSWERED


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class FlowSync:
    """A transfer-flow step decided on an instance's own state, to be written once the store answers."""

    correlation_id: str
    leg: str
    state: str
    decided_at: datetime


class RecordWriter:
    """Writes records, and flow steps decided while the store failed, in the background, so no call
    waits on the store.

    Each is retried with growing pauses until it is written, :data:`attempts` are spent or it is
    older than ``give_up_after_s``; then it is lost: logged and counted (``on_lost`` for records).
    The queue is bounded: what finds it full is lost at once. Threads start with the first item.
    """

    def __init__(
        self,
        store: CallStore,
        on_written: Callable[[CallRecord, float], None] | None = None,
        on_lost: Callable[[CallRecord, str], None] | None = None,
        workers: int = 4,
        capacity: int = 10_000,
        attempts: int = 5,
        give_up_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._on_written = on_written
        self._on_lost = on_lost
        self._workers = workers
        self._queue: queue.Queue[tuple[CallRecord | FlowSync, float]] = queue.Queue(maxsize=capacity)
        self._attempts = attempts
        self._give_up_after_s = give_up_after_s
        self._clock = clock
        self._started = False
        self._start_lock = threading.Lock()
        self.written = 0
        self.lost = 0
        self.flows_synced = 0
        self.flows_lost = 0
        self._count_lock = threading.Lock()

    def submit(self, item: CallRecord | FlowSync) -> None:
        """Queue a record (or a flow step) for writing; never blocks, never raises."""
        if not self._started:
            self._start()
        try:
            self._queue.put_nowait((item, self._clock()))
        except queue.Full:
            self._lose(item, "the record queue is full")

    def _start(self) -> None:
        with self._start_lock:
            if self._started:
                return
            for n in range(self._workers):
                threading.Thread(target=self._run, name=f"handoff-records-{n}", daemon=True).start()
            self._started = True

    def _run(self) -> None:
        while True:
            item, queued_at = self._queue.get()
            try:
                self._write(item, queued_at)
            except Exception as exc:  # a bug must not stop the writer
                self._lose(item, f"unexpected {type(exc).__name__}")
            finally:
                self._queue.task_done()

    def _write(self, item: CallRecord | FlowSync, queued_at: float) -> None:
        pause = 0.2
        reason = ""
        for attempt in range(self._attempts):
            try:
                if isinstance(item, FlowSync):
                    self.store.sync_flow(item.correlation_id, item.leg, item.state, item.decided_at)
                else:
                    self.store.write(item)
            except StoreError as exc:
                reason = str(exc)
                if attempt == self._attempts - 1 or self._clock() - queued_at + pause > self._give_up_after_s:
                    break
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            with self._count_lock:
                if isinstance(item, FlowSync):
                    self.flows_synced += 1
                else:
                    self.written += 1
            if self._on_written is not None and isinstance(item, CallRecord):
                self._on_written(item, self._clock() - queued_at)
            return
        self._lose(item, reason)

    def _lose(self, item: CallRecord | FlowSync, reason: str) -> None:
        if isinstance(item, FlowSync):
            with self._count_lock:
                self.flows_lost += 1
            log.error(
                "call %s: its transfer flow (%s, decided while the store failed) could not be written: %s;"
                " the sweep may take it for stranded",
                item.correlation_id,
                item.state,
                reason,
            )
            return
        with self._count_lock:
            self.lost += 1
        log.error(
            "call %s: its record (leg %s) is lost: %s; a lookup will not find it",
            item.correlation_id,
            item.leg,
            reason,
        )
        if self._on_lost is not None:
            self._on_lost(item, reason)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued is written or lost (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True
