"""Fault injection: make the next requests of an operation fail, stall, or both.

A fault with a status answers with it: its own body (JSON, or bytes/str sent as they are) or an ACS-shaped
error ``{"error": {"code": ..., "message": "Injected fault <status>. (emulated)"}}``, plus a ``Retry-After``
header when asked. A fault with a delay sleeps that long first (cut short when the emulator stops); without a
status the request is then handled normally. Faulted requests are recorded with their status and never
executed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from local.emulator.model import OPERATIONS, Response

#: The ``code`` of an injected error without a body of its own (else the status as text).
DEFAULT_ERROR_CODES = {
    400: "BadRequest",
    401: "Denied",
    403: "Forbidden",
    404: "NotFound",
    408: "RequestTimeout",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


@dataclass
class Fault:
    operation: str
    status: int | None
    retry_after: float | None
    delay: float
    remaining: int
    body: Any
    #: Only transfers to this participant (raw id or phone number); None: every request of the operation.
    target: str | None = None

    def response(self) -> Response:
        """What a fault with a status answers."""
        assert self.status is not None
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            value = self.retry_after
            headers["Retry-After"] = str(int(value)) if float(value).is_integer() else f"{value:g}"
        if self.body is None:
            code = DEFAULT_ERROR_CODES.get(self.status, str(self.status))
            body: Any = {"error": {"code": code, "message": f"Injected fault {self.status}. (emulated)"}}
            return Response(self.status, body, headers)
        if isinstance(self.body, bytes | str):
            raw = self.body.encode("utf-8") if isinstance(self.body, str) else self.body
            return Response(self.status, None, headers, raw=raw)
        return Response(self.status, self.body, headers)


class Faults:
    """The pending faults, guarded by the emulator's lock."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._faults: list[Fault] = []

    def add(
        self,
        operation: str,
        status: int | None,
        retry_after: float | None,
        delay: float,
        times: int,
        body: Any,
        target: str | None = None,
    ) -> None:
        """See :meth:`CallAutomationEmulator.inject`."""
        if operation != "*" and operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; expected one of {OPERATIONS} or '*'")
        if status is None and delay <= 0:
            raise ValueError("inject needs a status, a delay, or both")
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(Fault(operation, status, retry_after, float(delay), int(times), body, target))

    def take(self, operation: str, participant: str | None = None) -> Fault | None:
        """One use of the first pending fault for ``operation`` (or ``"*"``) and, for a fault limited to
        a target, for a request addressed to it (``participant``); None when there is none."""
        with self._lock:
            for fault in self._faults:
                if fault.target is not None and fault.target != participant:
                    continue
                if fault.remaining > 0 and fault.operation in ("*", operation):
                    fault.remaining -= 1
                    taken = Fault(fault.operation, fault.status, fault.retry_after, fault.delay, 1, fault.body)
                    self._faults = [f for f in self._faults if f.remaining > 0]
                    return taken
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
