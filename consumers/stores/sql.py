"""The store's SQL, written once for both backends: they differ only in the parameter marker,
the names of the column types and SQLite's STRICT tables. Every statement is built from
identifiers checked by `types.identifier`, never from delivered values.

`INSERT … ON CONFLICT … DO UPDATE … WHERE excluded.version > t.version` is what makes
applying idempotent: the database itself refuses a delivery that is not newer than the row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .types import BOOKKEEPING

BOOKKEEPING_NAMES = tuple(BOOKKEEPING)


def quoted(name: str) -> str:
    """Quoted, so that a field may be called `order` or `user`; names are checked lower case."""
    return f'"{name}"'


@dataclass(frozen=True)
class Dialect:
    mark: str  # the driver's parameter marker
    types: Mapping[str, str]  # neutral column type -> the backend's SQL type
    table_suffix: str = ""

    def marks(self, count: int) -> str:
        return ", ".join([self.mark] * count)

    def bookkeeping_tables(self) -> list[str]:
        text, integer, bigint, timestamp = (self.types[kind] for kind in ("text", "integer", "bigint", "timestamp"))
        return [f"CREATE TABLE IF NOT EXISTS {table} ({columns}){self.table_suffix}" for table, columns in (
            ("govbus_columns", f"library {text} NOT NULL, name {text} NOT NULL, type {text} NOT NULL, "
                               "PRIMARY KEY (library, name)"),
            ("govbus_positions", f"topic {text} NOT NULL, kafka_partition {integer} NOT NULL, "
                                 f"next_offset {bigint} NOT NULL, PRIMARY KEY (topic, kafka_partition)"),
            ("govbus_watermarks", f"library {text} PRIMARY KEY, as_of {timestamp} NOT NULL"))]

    def create_table(self, library: str, columns: Mapping[str, str]) -> str:
        definitions = ", ".join(f"{quoted(name)} {self.types[kind]}" for name, kind in columns.items())
        return f"CREATE TABLE {quoted(library)} ({definitions}, PRIMARY KEY (entity_id)){self.table_suffix}"

    def add_column(self, library: str, name: str, kind: str) -> str:
        return f"ALTER TABLE {quoted(library)} ADD COLUMN {quoted(name)} {self.types[kind]}"

    def record_column(self) -> str:
        return f"INSERT INTO govbus_columns (library, name, type) VALUES ({self.marks(3)})"

    def upsert(self, library: str, names: tuple[str, ...]) -> str:
        """Write the bookkeeping columns and `names`, only over an older version; keep the rest."""
        every, table = [quoted(name) for name in BOOKKEEPING_NAMES + names], quoted(library)
        updates = ", ".join(f"{name} = excluded.{name}" for name in every[1:])
        return (f"INSERT INTO {table} ({', '.join(every)}) VALUES ({self.marks(len(every))}) "
                f"ON CONFLICT (entity_id) DO UPDATE SET {updates} WHERE excluded.version > {table}.version")

    def select(self, library: str, names: tuple[str, ...], condition: str = "") -> str:
        """The current (not deleted) rows; `condition` is appended, e.g. " AND entity_id = ?"."""
        columns = ", ".join(quoted(name) for name in names)
        return f"SELECT {columns} FROM {quoted(library)} WHERE NOT deleted{condition}"

    def save_position(self) -> str:
        return (f"INSERT INTO govbus_positions (topic, kafka_partition, next_offset) VALUES ({self.marks(3)}) "
                "ON CONFLICT (topic, kafka_partition) DO UPDATE SET next_offset = excluded.next_offset")

    def advance_watermark(self) -> str:
        """Only ever forwards: a replayed or late batch does not make the store look older."""
        return (f"INSERT INTO govbus_watermarks (library, as_of) VALUES ({self.marks(2)}) ON CONFLICT (library) "
                "DO UPDATE SET as_of = excluded.as_of WHERE excluded.as_of > govbus_watermarks.as_of")
