"""At-most-once handling of IncomingCall deliveries, and the callback flow's call states, within one process.

Event Grid delivers at least once, without ordering: the same IncomingCall can arrive twice, one
after the other or at the same time (handbook acs.md, "Event Grid delivery"). A call must get
exactly one action, so each delivery first *claims* its call (shared/core/events.py's
``delivery_keys``: the incomingCallContext, which a redelivery repeats). A claim held
by a delivery still in flight, or by one that finished, turns the newcomer into a duplicate. A
delivery that failed in a way a retry could fix *releases* its claim so Event Grid's retry can act.

Entries expire after ``ttl`` seconds (a call rings 30 s and Event Grid's TTL for IncomingCall is
1 minute, so 10 minutes is far past any useful retry) and the table is bounded in size.
Across instances the service's own answer for an already-handled call is the backstop.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from shared.core.callback_flow import CallState


class Claims:
    def __init__(self, ttl: float = 600.0, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, float] = OrderedDict()

    def _expire(self, now: float) -> None:
        while self._seen:
            _, at = next(iter(self._seen.items()))
            if now - at < self._ttl and len(self._seen) <= self._max:
                break
            self._seen.popitem(last=False)

    def claim(self, keys: Iterable[str | None]) -> bool:
        """True if none of the keys was seen: the caller now owns the call. Atomic."""
        wanted = [k for k in keys if k]
        with self._lock:
            now = self._clock()
            self._expire(now)
            if any(k in self._seen for k in wanted):
                return False
            for k in wanted:
                self._seen[k] = now
            return True

    def release(self, keys: Iterable[str | None]) -> None:
        """Forget a claim so a later delivery of the same call may act (after a transient failure)."""
        with self._lock:
            for k in keys:
                if k:
                    self._seen.pop(k, None)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._seen

    def __len__(self) -> int:
        return len(self._seen)


class CallStates:
    """The callback flow's state of each call connection (shared/core/callback_flow.py), per process.

    :meth:`get` gives a state and its version; :meth:`set_if` stores a new state only when nobody
    changed it since that version (compare-and-set), so two threads handling repeated callbacks of
    one call never both act on it. A connection never seen is ``answered``. Entries expire like
    claims do and the table is bounded.
    """

    def __init__(self, ttl: float = 3600.0, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._states: OrderedDict[str, tuple[CallState, int, float]] = OrderedDict()

    def _expire(self, now: float) -> None:
        while self._states:
            _, (_, _, at) = next(iter(self._states.items()))
            if now - at < self._ttl and len(self._states) <= self._max:
                break
            self._states.popitem(last=False)

    def get(self, call_connection_id: str) -> tuple[CallState, int]:
        with self._lock:
            state, version, _ = self._states.get(call_connection_id, (CallState.ANSWERED, 0, 0.0))
            return state, version

    def set_if(self, call_connection_id: str, version: int, state: CallState) -> bool:
        """Store ``state`` if the connection is still at ``version``; False when someone got there first."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            _, current, _ = self._states.get(call_connection_id, (CallState.ANSWERED, 0, 0.0))
            if current != version:
                return False
            self._states.pop(call_connection_id, None)
            self._states[call_connection_id] = (state, version + 1, now)
            return True
