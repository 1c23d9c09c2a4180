"""The SQLite store: one file beside the subscriber, nothing to run. The default.

Tables are STRICT, so SQLite refuses a value of the wrong storage class as PostgreSQL would;
dates and timestamps are ISO-8601 text (timestamps always in UTC with microseconds, so that
text order is time order), booleans 0/1, JSON as text. The declared neutral types, kept in
`govbus_columns`, turn them back into Python values on reading.

Write-ahead logging with `synchronous=NORMAL`: a power cut may lose the last transactions,
but never half of one, and the positions go with the rows they describe, so the subscriber
simply reads those deliveries again.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

from .base import Store
from .sql import Dialect
from .types import StoreError

MEMORY = ":memory:"


def path_from_url(url: str) -> str:
    """`sqlite:///relative.db`, `sqlite:////absolute/path.db` or `sqlite:///:memory:`."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix:
        raise StoreError(f"{url!r} is not a SQLite store URL: write sqlite:///relative/path.db, "
                         "sqlite:////absolute/path.db or sqlite:///:memory:")
    return url[len(prefix):]


class SQLiteStore(Store):
    dialect = Dialect("?", {"text": "TEXT", "integer": "INTEGER", "bigint": "INTEGER", "boolean": "INTEGER",
                            "double": "REAL", "date": "TEXT", "timestamp": "TEXT", "json": "TEXT"}, " STRICT",
                      identity="INTEGER PRIMARY KEY")  # SQLite's rowid: the next is one more than the highest
    conversions = {
        # no "boolean": sqlite3 binds a bool as the integer 0 or 1 by itself
        "date": date.isoformat,
        "timestamp": lambda value: value.isoformat(timespec="microseconds"),
        "json": lambda value: json.dumps(value, ensure_ascii=False, separators=(",", ":")),
    }
    decoders = {"boolean": bool, "date": date.fromisoformat, "timestamp": datetime.fromisoformat,
                "json": json.loads}
    driver_errors = (sqlite3.Error, OverflowError)

    def __init__(self, path: str) -> None:
        self.path = path
        self.where = "the in-memory SQLite store" if path == MEMORY else f"the SQLite store {path}"
        if path != MEMORY:
            _check_path(Path(path))
            # Owner-only from the start: the rows are personal data. SQLite makes -wal and -shm
            # with the database file's permission bits.
            try:
                os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
                os.chmod(path, 0o600)
            except OSError as error:
                raise StoreError(f"cannot use {path} as a SQLite store ({error.strerror}): is it readable and "
                                 "writable by this user?") from error
        try:
            self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._connection.execute("PRAGMA busy_timeout = 10000")
            if path != MEMORY:
                self._connection.execute("PRAGMA journal_mode = WAL")
                self._connection.execute("PRAGMA synchronous = NORMAL")
            self._set_up()
        except sqlite3.DatabaseError as error:
            raise StoreError(f"cannot use {path} as a SQLite store ({error}): is it a SQLite database "
                             "file, readable and writable by this user?") from error

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        return cls(path_from_url(url))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    def _execute(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        return self._connection.execute(sql, tuple(params)).fetchall()

    def _executemany(self, sql: str, rows: list[list[Any]]) -> int:
        return self._connection.executemany(sql, rows).rowcount

    def close(self) -> None:
        self._connection.close()


def _check_path(path: Path) -> None:
    if path.is_dir():
        raise StoreError(f"the SQLite store path {path} is a directory; name a file in it, e.g. {path / 'store.db'}")
    if not path.parent.is_dir():
        raise StoreError(f"the directory {path.parent} of the SQLite store {path} does not exist; create it first")
