"""The local stack for integration tests: emulator + function app + local host, all on 127.0.0.1.

The function app is the real one (``function_app.py``), started with settings that point at the
emulator; the Call Automation SDK talks to the emulator over HTTP with HMAC, exactly as to ACS.
"""

from __future__ import annotations

import importlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from local.emulator import CallAutomationEmulator, RecordedAction
from local.host import LocalHost
from local.run import actions_for_call, free_port, local_settings
from shared import service


@dataclass
class Stack:
    emu: CallAutomationEmulator
    host: LocalHost
    env: dict[str, str]
    app: Any

    def restart(self, *, forget_calls: bool = True, **overrides: str) -> service.Service:
        """A fresh service (new dedupe table, new client) with these settings changed.

        ``forget_calls=False`` keeps the emulator's record of handled calls: a second instance.
        """
        self.emu.clear(state=forget_calls)
        self.host.errors.clear()
        return service.start({**self.env, **overrides})

    def call(self, to: str = "+14255550100", sip: dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
        return self.emu.incoming_call(callee=to, sip_headers=sip, **kwargs)

    def post(self, events: Any, kind: str = "Notification", function: str = "incoming_call") -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.host.event_grid_url(function),
            data=json.dumps(events).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "aeg-event-type": kind},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def post_callback(self, events: Any, authorization: str | None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        request = urllib.request.Request(
            f"{self.host.url}/api/callbacks", data=json.dumps(events).encode(), method="POST", headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def actions_for(self, event: dict[str, Any]) -> list[RecordedAction]:
        """Successful actions on this call, as `make run` reports them."""
        return actions_for_call(self.emu, event["data"]["incomingCallContext"])

    def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()


@contextmanager
def running_stack() -> Iterator[Stack]:
    saved = dict(os.environ)
    with CallAutomationEmulator() as emu:
        port = free_port()
        env = local_settings(emu, port)
        os.environ.update(env)
        try:
            function_app = importlib.import_module("function_app")
            service.start(env)  # in case function_app was imported earlier with other settings
            with LocalHost(function_app.app, port=port) as host:
                yield Stack(emu, host, env, function_app.app)
        finally:
            os.environ.clear()
            os.environ.update(saved)
