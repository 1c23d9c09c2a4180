"""The PostgreSQL store, for a department that already runs PostgreSQL and wants its view
queryable by its own systems. Columns carry real types (date, timestamptz, jsonb) and the
session runs in UTC, so timestamps come back aware and equal to what was delivered.

Batches go through psycopg 3's `executemany`, which pipelines the statements: one network
round trip per batch rather than per row.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from .base import Store
from .sql import Dialect
from .types import StoreError

CONNECT_TIMEOUT_SECONDS = 10


def describe(url: str) -> str:
    """user@host:port/database, without the password, for messages."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        raise StoreError(f"cannot read the PostgreSQL URL: {error}; write "
                         "postgresql://user:password@host:port/database") from error
    host, port = parts.get("host") or "localhost", parts.get("port") or "5432"
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"{user}{host}:{port}/{parts.get('dbname') or '(default database)'}"


class PostgresStore(Store):
    dialect = Dialect("%s", {"text": "text", "integer": "integer", "bigint": "bigint", "boolean": "boolean",
                             "double": "double precision", "date": "date", "timestamp": "timestamptz",
                             "json": "jsonb"})
    conversions = {"json": Jsonb}
    driver_errors = (psycopg.Error,)

    def __init__(self, url: str) -> None:
        target = describe(url)
        self.where = f"the PostgreSQL store {target}"
        options = {} if "connect_timeout" in url else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
        try:
            self._connection = psycopg.connect(url, autocommit=True, **options)
        except psycopg.OperationalError as error:
            raise StoreError(
                f"cannot connect to PostgreSQL at {target} ({' '.join(str(error).split())}); check that the server "
                "is running and listens on that host and port (listen_addresses, pg_hba.conf), and that "
                "the user, password and database are right and the database exists") from error
        try:
            self._connection.execute("SET TIME ZONE 'UTC'")
            self._set_up()
        except psycopg.Error as error:
            self._connection.close()
            raise StoreError(f"cannot set up the store's tables in {target}: {error}; the user needs "
                             "the right to create tables in the database's default schema") from error

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        return cls(url)

    def _transaction(self) -> AbstractContextManager[Any]:
        return self._connection.transaction()

    def _execute(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._connection.cursor() as cursor:
            cursor.execute(sql, tuple(params))  # type: ignore[arg-type]  # built from validated identifiers
            return cursor.fetchall() if cursor.description else []

    def _executemany(self, sql: str, rows: list[list[Any]]) -> int:
        with self._connection.cursor() as cursor:
            cursor.executemany(sql, rows)  # type: ignore[arg-type]
            return cursor.rowcount

    def close(self) -> None:
        self._connection.close()
