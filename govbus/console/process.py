"""The console as a child process (``govbus console``), for the demo and the tests: started
with the command an operator types, ready when its ``/health`` says it has read the bus."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from govbus.errors import GovbusError
from govbus.processes import settings_environment, stop_process
from govbus.settings import Settings


class ConsoleProcess:
    """One ``govbus console`` on `host`:`port`, its output in `log_path`."""

    def __init__(self, settings: Settings, port: int, log_path: Path, host: str = "127.0.0.1",
                 environment: dict[str, str] | None = None, arguments: tuple[str, ...] = ()) -> None:
        self.settings, self.port, self.log_path, self.host = settings, port, log_path, host
        self.environment, self.arguments = environment or {}, arguments
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self, timeout: float = 60.0) -> ConsoleProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "govbus.cli", "console", "--host", self.host, "--port", str(self.port),
                 *self.arguments],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**settings_environment(self.settings), **self.environment})
        self.wait_ready(timeout)
        return self

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"{self.address}health", timeout=2) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as error:
            return json.load(error)
        except (OSError, ValueError):
            return None

    def wait_ready(self, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise GovbusError(f"the console exited with {self.process.returncode}; see {self.log_path}:\n"
                                  f"{self.tail()}")
            health = self.health()
            if health and health.get("status") == "ready":
                return health
            time.sleep(0.3)
        raise GovbusError(f"the console was not ready within {timeout:.0f} s; see {self.log_path}:\n{self.tail()}")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, as Ctrl-C or `docker compose stop` would; its exit code (None: killed)."""
        return stop_process(self.process, timeout)

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> ConsoleProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
