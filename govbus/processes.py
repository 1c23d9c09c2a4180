"""Processor workers as child processes, for the demo, the benchmarks and the tests.

A worker is started with the same command an operator types (``govbus processors run …``)
and is ready when its ``/health`` says so. ``kill()`` ends it abruptly, as a crash would;
``stop()`` asks it to finish cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from govbus.errors import GovbusError
from govbus.settings import Settings


def settings_environment(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process these settings."""
    values = settings.model_dump()
    environment = {**os.environ}
    for name, value in values.items():
        if value is not None:
            environment[f"GOVBUS_{name.upper()}"] = str(value)
    return environment


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> int | None:
    """Ask a child process to stop (SIGTERM) as `docker compose stop` would, and wait; its exit
    code, or None when it had to be killed after `timeout` seconds (or never started)."""
    if process is None or process.poll() is not None:
        return process.returncode if process else None
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


class ProcessorProcess:
    """One ``govbus processors run`` worker."""

    def __init__(self, settings: Settings, processors: list[str], log_path: Path, loglevel: str = "warn") -> None:
        self.settings = settings
        self.loglevel = loglevel
        self.processors = processors
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.processor_port}/health"

    def start(self, timeout: float = 90.0) -> ProcessorProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "govbus.cli", "processors", "run", *self.processors, "--loglevel", self.loglevel],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=settings_environment(self.settings))
        self.wait_ready(timeout)
        return self

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as error:
            return json.load(error)
        except (OSError, ValueError):
            return None

    def wait_ready(self, timeout: float = 90.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise GovbusError(f"processor worker {self.processors} exited with {self.process.returncode}; "
                                  f"see {self.log_path}:\n{self._tail()}")
            health = self.health()
            if health and health.get("status") == "ready":
                return health
            time.sleep(0.3)
        raise GovbusError(f"processor worker {self.processors} not ready within {timeout:.0f} s; see {self.log_path}:\n{self._tail()}")

    def kill(self) -> None:
        """End the worker abruptly (SIGKILL): nothing is flushed or committed."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 30.0) -> int | None:
        """Ask the worker to stop (SIGTERM) and wait; kill it if it does not."""
        return stop_process(self.process, timeout)

    def _tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> ProcessorProcess:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()
