"""A throw-away PostgreSQL server for the polling baseline's central database.

The same approach as the test suite's ``tests/pg.py``: Debian's binaries, ``initdb`` in a
temporary folder, the server on a free loopback port (as the ``postgres`` user when we are
root, since initdb refuses root), stopped and removed afterwards. ``GOVBUS_BENCH_POSTGRES_DSN``
points the bench at a running server instead. fsync is off, as Kafka's own log is not
fsynced per message either: both sides are measured without disk flushes.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from govbus.errors import GovbusError

USER = "govbus"
_FAST = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


class PostgresUnavailable(GovbusError):
    """No PostgreSQL server binaries, or the server would not start; the message says what to do."""


def _binaries() -> Path:
    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name),
                         reverse=True):
        if Path(initdb).with_name("pg_ctl").exists():
            return Path(initdb).parent
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    raise PostgresUnavailable("the polling baseline needs PostgreSQL's server binaries (initdb, pg_ctl): "
                              "apt-get install -y postgresql, or set GOVBUS_BENCH_POSTGRES_DSN")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise PostgresUnavailable(f"{what} failed ({result.returncode}): {result.stderr or result.stdout}")


@contextmanager
def server() -> Iterator[str]:
    """A private server for the bench; yields its DSN."""
    if os.environ.get("GOVBUS_BENCH_POSTGRES_DSN"):
        yield os.environ["GOVBUS_BENCH_POSTGRES_DSN"]
        return
    binaries = _binaries()
    runner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="govbus-bench-pg-"))
    data, port = root / "data", _free_port()
    if runner:
        shutil.chown(root, user="postgres", group="postgres")
    try:
        _run([*runner, str(binaries / "initdb"), "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8",
              "--locale=C", "--no-sync"], "initdb")
        options = ["-p", str(port), "-k", str(root), "-c", "listen_addresses=127.0.0.1", *_FAST]
        _run([*runner, str(binaries / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
              "-o", " ".join(options), "start"], "pg_ctl start")
        try:
            yield f"postgresql://{USER}@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*runner, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
    finally:
        shutil.rmtree(root, ignore_errors=True)
