"""A throw-away PostgreSQL server for tests: the real thing, started from Debian's binaries.

`postgres_server()` runs `initdb` in a temporary directory, starts the server on a free port
bound to 127.0.0.1 (its unix socket in the same directory, so it never touches the machine's
own cluster), yields a DSN and stops the server afterwards. `initdb` refuses to run as root,
so under root the directory is handed to the `postgres` user and the binaries run as that
user through `runuser`. `fresh_database(dsn)` gives each test an empty database of its own.

Where the binaries are missing: `apt-get install -y postgresql` (Debian's packages
`postgresql` and `postgresql-client`). Set GOVBUS_TEST_POSTGRES_DSN to use a running server
instead; its user must be allowed to create databases.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

SERVER_USER = "postgres"  # the OS user that runs the server when we are root
DATABASE_USER = "govbus"
_FAST_UNSAFE = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries here, or the server would not start."""


def find_binaries() -> Path:
    """The newest `/usr/lib/postgresql/<version>/bin` that holds initdb and pg_ctl."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda path: int(Path(path).parent.parent.name), reverse=True)
    for initdb in candidates:
        if Path(initdb).with_name("pg_ctl").exists():
            return Path(initdb).parent
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    raise PostgresUnavailable("no PostgreSQL server binaries (initdb, pg_ctl) under "
                              "/usr/lib/postgresql/*/bin; install them: apt-get install -y postgresql")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _runner() -> list[str]:
    """The prefix that runs a server binary as a user initdb accepts."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        raise PostgresUnavailable("running as root and runuser is missing: cannot run initdb")
    return ["runuser", "-u", SERVER_USER, "--"]


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise PostgresUnavailable(f"{what} failed ({result.returncode}): {result.stderr or result.stdout}")


@contextmanager
def postgres_server(durable: bool = False) -> Iterator[str]:
    """Start a private server; yield its DSN (database `postgres`, user `govbus`, no password).

    `durable=False` turns fsync off: tests only need the semantics, and it is much faster.
    """
    if os.environ.get("GOVBUS_TEST_POSTGRES_DSN"):
        yield os.environ["GOVBUS_TEST_POSTGRES_DSN"]
        return
    binaries, runner = find_binaries(), _runner()
    root = Path(tempfile.mkdtemp(prefix="govbus-pg-"))
    data, port = root / "data", free_port()
    if runner:
        shutil.chown(root, user=SERVER_USER, group=SERVER_USER)
    try:
        _run([*runner, str(binaries / "initdb"), "-D", str(data), "-U", DATABASE_USER, "-A", "trust",
              "-E", "UTF8", "--locale=C", "--no-sync"], "initdb")
        options = ["-p", str(port), "-k", str(root), "-c", "listen_addresses=127.0.0.1",
                   *([] if durable else _FAST_UNSAFE)]
        _run([*runner, str(binaries / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"),
              "-w", "-t", "60", "-o", " ".join(options), "start"], "pg_ctl start")
        try:
            yield f"postgresql://{DATABASE_USER}@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*runner, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate",
                            "-w", "stop"], capture_output=True, timeout=60)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(dsn: str) -> str:
    """Create an empty database on the server at `dsn`; return the DSN that reaches it."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))
