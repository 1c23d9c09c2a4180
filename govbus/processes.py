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
from typing import Self

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


class ServedProcess:
    """A govbus command run as a child process that serves ``/health``: started with the
    command an operator types, ready when ``/health`` says ``ready``. Subclasses say which
    command, where its health is, and what to call it in an error."""

    what = "the process"
    ready_timeout = 90.0  # seconds `start` waits for ready
    stop_timeout = 30.0  # seconds `stop` waits after SIGTERM before it kills

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def health_url(self) -> str:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return settings_environment(self.settings)

    def start(self, timeout: float | None = None) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "govbus.cli", *self.command()],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.environment())
        self.wait_ready(self.ready_timeout if timeout is None else timeout)
        return self

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as error:
            return json.load(error)
        except (OSError, ValueError):
            return None

    def wait_ready(self, timeout: float | None = None) -> dict:
        timeout = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise GovbusError(f"{self.what} exited with {self.process.returncode}; see {self.log_path}:\n{self.tail()}")
            health = self.health()
            if health and health.get("status") == "ready":
                return health
            time.sleep(0.3)
        raise GovbusError(f"{self.what} was not ready within {timeout:.0f} s; see {self.log_path}:\n{self.tail()}")

    def kill(self) -> None:
        """End it abruptly (SIGKILL), as a crash would: nothing is flushed or committed."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, as Ctrl-C or `docker compose stop` would, and wait; its exit code (None: killed)."""
        return stop_process(self.process, self.stop_timeout if timeout is None else timeout)

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()


class ProcessorProcess(ServedProcess):
    """One ``govbus processors run`` worker."""

    def __init__(self, settings: Settings, processors: list[str], log_path: Path, loglevel: str = "warn") -> None:
        super().__init__(settings, log_path)
        self.loglevel = loglevel
        self.processors = processors
        self.what = f"processor worker {processors}"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.processor_port}/health"

    def command(self) -> list[str]:
        return ["processors", "run", *self.processors, "--loglevel", self.loglevel]
