"""The local stack: Call Automation emulator + settings + the real function app + the local Functions host.

One :func:`running_stack` serves ``make run``, the tests, the telemetry driver and the benchmarks,
so all of them start the app the same way: the emulator on a free loopback port, settings that
point the app at it (HMAC key, JWKS, callback URL on the local host), ``import function_app`` (the
worker's own start-up), and the local host serving the app's triggers. Nothing listens on anything
but 127.0.0.1; callbacks for other hosts are recorded by the emulator, never sent.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from local.emulator import CallAutomationEmulator, RecordedAction
from local.host import LocalHost
from shared import app as handoff


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def local_settings(emu: CallAutomationEmulator, host_port: int) -> dict[str, str]:
    """The app's settings for a local run against ``emu``, with callbacks to the local host."""
    return {
        "ACS_ENDPOINT": emu.endpoint,
        "ACS_ACCESS_KEY": emu.access_key,
        "ACS_RESOURCE_ID": emu.resource_id,
        "HANDOFF_OPENID_CONFIG_URL": emu.openid_config_url,
        "HANDOFF_CALLBACK_URL": f"http://127.0.0.1:{host_port}/api/callbacks",
        "HANDOFF_CONFIG": os.environ.get("HANDOFF_CONFIG", "routing.yaml"),
        # A fresh key per run: it signs and seals the operation contexts of this run's calls only.
        "HANDOFF_CONTEXT_KEY": secrets.token_hex(32),
    }


def actions_for_call(emu: CallAutomationEmulator, incoming_call_context: str) -> list[RecordedAction]:
    """What the emulator executed for one call: the action on its incomingCallContext, then the
    mid-call actions (transfer, hang-up) on the call connection that answer created."""
    executed = emu.executed()
    first = [a for a in executed if (a.body or {}).get("incomingCallContext") == incoming_call_context]
    connections = {a.call_connection_id for a in first if a.operation == "answer"}
    return first + [a for a in executed if a.operation != "answer" and a.call_connection_id in connections]


def post_json(url: str, body: Any, headers: dict[str, str], timeout: float = 30.0) -> tuple[int, bytes]:
    """POST ``body`` as JSON; (status, response body), HTTP errors included."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


@dataclass
class Stack:
    emu: CallAutomationEmulator
    host: LocalHost
    env: dict[str, str]
    app: Any  # function_app.app, the func.FunctionApp the host serves

    def function(self, name: str) -> Callable[..., Any]:
        """The app's function ``name`` as the worker invokes it (the host indexed the app once)."""
        [fn] = [f for f in self.host.functions if f.get_function_name() == name]
        return fn.get_user_function()

    def restart(self, *, forget_calls: bool = True, **overrides: str) -> handoff.App:
        """A fresh app (new dedupe table, new client) with these settings changed.

        ``forget_calls=False`` keeps the emulator's record of handled calls: a second instance.
        """
        self.emu.clear(state=forget_calls)
        self.host.errors.clear()
        return handoff.start({**self.env, **overrides})

    def call(self, to: str = "+14255550100", sip: dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
        """A new IncomingCall event (Event Grid schema) for a call the emulator is ringing."""
        return self.emu.incoming_call(callee=to, sip_headers=sip, **kwargs)

    def post(self, events: Any, kind: str = "Notification", function: str = "incoming_call") -> tuple[int, bytes]:
        """Deliver events to the Event Grid trigger as Event Grid does."""
        return post_json(self.host.event_grid_url(function), events, {"aeg-event-type": kind})

    def post_callback(self, events: Any, authorization: str | None) -> tuple[int, bytes]:
        headers = {} if authorization is None else {"Authorization": authorization}
        return post_json(f"{self.host.url}/api/callbacks", events, headers)

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
def running_stack(
    settings: dict[str, str] | None = None,
    before_start: Callable[[], object] | None = None,
    port: int | None = None,
    function_key: str | None = None,
) -> Iterator[Stack]:
    """Start the emulator, the app (``import function_app``) and the local host; stop them after.

    ``settings`` change the app's local settings; ``before_start`` runs once they are in the
    environment and before the app starts (the telemetry driver configures telemetry there); ``port``
    fixes the local host's port (``make run --port``; any free one otherwise). The process's
    environment is restored on exit.
    """
    saved = dict(os.environ)
    with CallAutomationEmulator() as emu:
        port = port or free_port()
        env = {**local_settings(emu, port), **(settings or {})}
        os.environ.update(env)
        try:
            if before_start is not None:
                before_start()
            imported = "function_app" in sys.modules
            function_app = importlib.import_module("function_app")
            if imported:  # started earlier in this process with other settings
                handoff.start(env)
            with LocalHost(function_app.app, port=port, function_key=function_key) as host:
                yield Stack(emu, host, env, function_app.app)
        finally:
            os.environ.clear()
            os.environ.update(saved)
