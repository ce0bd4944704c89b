"""``Repeatability-Request-ID``: a repeated id gets the stored response and is not executed again.

The first request with an id is executed and its response stored, with ``Repeatability-Result: accepted``.
A later request with the same id and the same method, path and body gets a copy of that response; with a
different request it gets 409 ``Conflict`` and ``Repeatability-Result: rejected``. Either way it is not
executed. SDK 1.6.0 sends the id (and ``Repeatability-First-Sent``) with answer, redirect, reject and
transfer (the wire capture) and with ``:terminate``; ``hang_up(is_for_everyone=False)``, a ``DELETE``, sends
none.
"""

from __future__ import annotations

import hashlib
import threading

from local.emulator.model import RequestError, Response


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests with the same Repeatability-Request-ID the same request."""
    return hashlib.sha256(f"{method} {path}\n".encode() + body).hexdigest()


class Repeatability:
    """Stored responses by Repeatability-Request-ID, guarded by the emulator's lock."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._stored: dict[str, tuple[str, Response]] = {}

    def replay(self, request_id: str, request_fingerprint: str) -> Response | None:
        """The answer to a repeated id (a copy of the stored response, or 409), None for a new id."""
        with self._lock:
            stored = self._stored.get(request_id)
        if stored is None:
            return None
        stored_fingerprint, stored_response = stored
        if stored_fingerprint != request_fingerprint:
            message = "Repeatability-Request-ID was already used for a different request."
            response = RequestError(409, message, "Conflict").response()
            response.headers["Repeatability-Result"] = "rejected"
            return response
        return Response(stored_response.status, stored_response.body, dict(stored_response.headers))

    def remember(self, request_id: str, request_fingerprint: str, response: Response) -> None:
        """Mark ``response`` accepted and store it for later requests with ``request_id``."""
        response.headers["Repeatability-Result"] = "accepted"
        with self._lock:
            self._stored[request_id] = (request_fingerprint, response)

    def clear(self) -> None:
        with self._lock:
            self._stored.clear()
