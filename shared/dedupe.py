"""At-most-once handling of IncomingCall deliveries within one process.

Event Grid delivers at least once, without ordering: the same IncomingCall can arrive twice, one
after the other or at the same time (handbook acs.md, "Event Grid delivery"). A call must get
exactly one action, so each delivery first *claims* its event id and correlation id. A claim held
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
