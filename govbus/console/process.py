"""The console as a child process (``govbus console``), for the demo and the tests: started
with the command an operator types, ready when its ``/health`` says it has read the bus."""

from __future__ import annotations

from pathlib import Path

from govbus.processes import ServedProcess
from govbus.settings import Settings


class ConsoleProcess(ServedProcess):
    """One ``govbus console`` on `host`:`port`, its output in `log_path`."""

    what = "the console"
    ready_timeout = 60.0
    stop_timeout = 15.0

    def __init__(self, settings: Settings, port: int, log_path: Path, host: str = "127.0.0.1",
                 environment: dict[str, str] | None = None, arguments: tuple[str, ...] = ()) -> None:
        super().__init__(settings, log_path)
        self.port, self.host = port, host
        self.extra_environment, self.arguments = environment or {}, arguments

    @property
    def address(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def health_url(self) -> str:
        return f"{self.address}health"

    def command(self) -> list[str]:
        return ["console", "--host", self.host, "--port", str(self.port), *self.arguments]

    def environment(self) -> dict[str, str]:
        return {**super().environment(), **self.extra_environment}
