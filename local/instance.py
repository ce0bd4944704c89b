"""One more instance of the function app in its own process, as Flex Consumption scales out: the real
app (``import function_app``) behind a local host, with the settings it is given. Development only.

    python -m local.instance --port 0 [--function-key K]     (settings from the environment)

Prints ``ready <url>`` once it serves, then serves until its standard input closes or it gets
SIGTERM. The tests that share one store between instances, and ``make bench ARGS=scale``, start
their instances with :func:`spawn`.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.instance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--function-key", default=None)
    args = parser.parse_args(argv)

    import logging

    # The app's log lines on stderr, as the Functions host collects them.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    import function_app
    from local.host import LocalHost

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def until_stdin_closes() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    with LocalHost(function_app.app, port=args.port, function_key=args.function_key) as host:
        print(f"ready {host.url}", flush=True)
        stop.wait()
    return 0


class Instance:
    """A running ``python -m local.instance``; stops with the context."""

    def __init__(
        self, env: dict[str, str], function_key: str | None = None, timeout: float = 60.0, port: int = 0
    ) -> None:
        command = [sys.executable, "-m", "local.instance", "--port", str(port)]
        if function_key:
            command += ["--function-key", function_key]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(self.process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        line = ready[0] if ready else ""
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"instance did not start: {line!r} {self.stderr_tail()}")
        self.url = line.split()[1]
        # The app logs to stderr: drain it, or a full pipe would block the instance.
        self._stderr: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)

    def stderr_tail(self) -> str:
        lines = getattr(self, "_stderr", None)
        if lines is None and self.process.poll() is not None and self.process.stderr is not None:
            return self.process.stderr.read()[-2000:]
        return "".join(lines or [])[-2000:]

    def logs(self) -> str:
        return "".join(getattr(self, "_stderr", []))

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
