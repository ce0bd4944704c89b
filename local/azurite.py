"""Azurite, the Azure Storage emulator, for the call records (Table Storage): started by `make run`
and by the tests that need a store, on loopback, a free port, in memory. Development only.

Installed by `make` from package.json / package-lock.json into node_modules/ (npm package
`azurite` 3.35.0, the newest that runs on Node.js 20). Started with ``--disableTelemetry`` (Azurite
otherwise reports usage to Microsoft), ``--inMemoryPersistence`` (nothing left on disk) and
``--skipApiVersionCheck`` (azure-data-tables may send an API version newer than the emulator knows).

    with Azurite() as store:
        store.connection_string   # HANDOFF_STORE for a local run
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
AZURITE_TABLE = ROOT / "node_modules" / ".bin" / "azurite-table"
#: Azurite's well-known development account: a public constant, documented with the emulator
#: (https://learn.microsoft.com/azure/storage/common/storage-use-azurite#well-known-storage-account-and-key).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#: Printed by azurite-table once it listens (3.35.0).
_STARTED = "successfully started"


class AzuriteError(RuntimeError):
    """Azurite is not installed or did not start; the message says what to do."""


def connection_string(port: int, host: str = "127.0.0.1") -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"TableEndpoint=http://{host}:{port}/{ACCOUNT};"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Azurite:
    """One azurite-table process on 127.0.0.1; stops with the context (or :meth:`stop`)."""

    def __init__(self, port: int | None = None, startup_timeout: float = 30.0) -> None:
        self.port = port or 0
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[str] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._output: list[str] = []

    @property
    def connection_string(self) -> str:
        return connection_string(self.port)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    def start(self) -> Azurite:
        if not AZURITE_TABLE.exists():
            raise AzuriteError(f"Azurite is not installed ({AZURITE_TABLE} is missing): run `make test` or `npm ci`")
        attempts = 1 if self.port else 3  # a free port can be taken between the check and the bind
        for attempt in range(attempts):
            port = self.port or free_port()
            try:
                self._spawn(port)
                self.port = port
                return self
            except AzuriteError:
                self.stop()
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _spawn(self, port: int) -> None:
        self._workdir = tempfile.TemporaryDirectory(prefix="handoff-azurite-")
        self._output = []
        self.process = subprocess.Popen(
            [
                str(AZURITE_TABLE),
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                str(port),
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--silent",
            ],
            cwd=self._workdir.name,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # stopped with its children as a group
        )
        started = threading.Event()
        threading.Thread(target=self._read, args=(self.process, started), daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if started.wait(0.05) and _listening(port):
                return
            if self.process.poll() is not None:
                break
        output = "".join(self._output).strip()[-2000:]
        raise AzuriteError(f"Azurite did not start on 127.0.0.1:{port}: {output or 'no output'}")

    def _read(self, process: subprocess.Popen[str], started: threading.Event) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._output.append(line)
            if _STARTED in line:
                started.set()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
