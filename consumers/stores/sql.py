"""The store's SQL, written once for both backends: they differ only in the parameter marker,
the names of the column types and SQLite's STRICT tables. Every statement is built from
identifiers checked by `types.identifier`, never from delivered values.

`INSERT … ON CONFLICT … DO UPDATE … WHERE excluded.version > t.version` is what makes
applying idempotent: the database itself refuses a delivery that is not newer than the row.
The life-event log's `INSERT … ON CONFLICT (subscription_id, event_id) DO NOTHING` does the
same for events, which have no version of their own to compare.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from . import lifeevents
from .types import BOOKKEEPING, ROW_KEY

BOOKKEEPING_NAMES = tuple(BOOKKEEPING)


def quoted(name: str) -> str:
    """Quoted, so that a field may be called `order` or `user`; names are checked lower case."""
    return f'"{name}"'


@dataclass(frozen=True)
class Dialect:
    mark: str  # the driver's parameter marker
    types: Mapping[str, str]  # neutral column type -> the backend's SQL type
    table_suffix: str = ""
    identity: str = "bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"  # a key numbered by the database, rising

    def marks(self, count: int) -> str:
        return ", ".join([self.mark] * count)

    def bookkeeping_tables(self) -> list[str]:
        text, integer, bigint, timestamp = (self.types[kind] for kind in ("text", "integer", "bigint", "timestamp"))
        return [f"CREATE TABLE IF NOT EXISTS {table} ({columns}){self.table_suffix}" for table, columns in (
            ("govbus_columns", f"library {text} NOT NULL, name {text} NOT NULL, type {text} NOT NULL, "
                               "PRIMARY KEY (library, name)"),
            ("govbus_positions", f"topic {text} NOT NULL, kafka_partition {integer} NOT NULL, "
                                 f"next_offset {bigint} NOT NULL, PRIMARY KEY (topic, kafka_partition)"),
            ("govbus_watermarks", f"library {text} PRIMARY KEY, as_of {timestamp} NOT NULL"),
            ("govbus_subscriptions", f"subscription_id {text} PRIMARY KEY, library {text} NOT NULL, "
                                     f"purpose {text} NOT NULL, fields {text} NOT NULL"),
            (lifeevents.TABLE, self._life_event_columns()))]

    def _life_event_columns(self) -> str:
        """Numbered by arrival (the order `Store.events` gives), one row per event and subscription."""
        definitions = ", ".join(f"{name} {self.types[kind]}{'' if name in lifeevents.OPTIONAL else ' NOT NULL'}"
                                for name, kind in lifeevents.COLUMNS.items())
        return f"arrival {self.identity}, {definitions}, UNIQUE (subscription_id, event_id)"

    def create_table(self, library: str, columns: Mapping[str, str]) -> str:
        definitions = ", ".join(f"{quoted(name)} {self.types[kind]}" for name, kind in columns.items())
        key = ", ".join(ROW_KEY)
        return f"CREATE TABLE {quoted(library)} ({definitions}, PRIMARY KEY ({key})){self.table_suffix}"

    def add_column(self, library: str, name: str, kind: str) -> str:
        return f"ALTER TABLE {quoted(library)} ADD COLUMN {quoted(name)} {self.types[kind]}"

    def record_column(self) -> str:
        return f"INSERT INTO govbus_columns (library, name, type) VALUES ({self.marks(3)})"

    def upsert(self, library: str, names: tuple[str, ...]) -> str:
        """Write the bookkeeping columns and `names`, only over an older version; keep the rest."""
        every, table = [quoted(name) for name in BOOKKEEPING_NAMES + names], quoted(library)
        updates = ", ".join(f"{name} = excluded.{name}" for name in every[1:])
        return (f"INSERT INTO {table} ({', '.join(every)}) VALUES ({self.marks(len(every))}) "
                f"ON CONFLICT ({', '.join(ROW_KEY)}) DO UPDATE SET {updates} WHERE excluded.version > {table}.version")

    def select(self, library: str, names: tuple[str, ...], condition: str = "") -> str:
        """The current (not deleted) rows; `condition` is appended, e.g. " AND entity_id = ?"."""
        columns = ", ".join(quoted(name) for name in names)
        return f"SELECT {columns} FROM {quoted(library)} WHERE NOT deleted{condition}"

    def record_subscription(self) -> str:
        """What a subscription delivers, for what: the purpose of each field of its rows."""
        return (f"INSERT INTO govbus_subscriptions (subscription_id, library, purpose, fields) VALUES ({self.marks(4)}) "
                "ON CONFLICT (subscription_id) DO UPDATE SET library = excluded.library, purpose = excluded.purpose, "
                "fields = excluded.fields")

    def log_life_event(self) -> str:
        """Insert-or-ignore: an event already logged for its subscription (a redelivery, a replay) stays as it was."""
        names = ", ".join(lifeevents.COLUMNS)
        return (f"INSERT INTO {lifeevents.TABLE} ({names}) VALUES ({self.marks(len(lifeevents.COLUMNS))}) "
                "ON CONFLICT (subscription_id, event_id) DO NOTHING")

    def select_life_events(self, condition: str = "") -> str:
        """The log in arrival order; `condition` is appended, e.g. " AND library = ?"."""
        return f"SELECT {', '.join(lifeevents.READ)} FROM {lifeevents.TABLE} WHERE TRUE{condition} ORDER BY arrival"

    def save_position(self) -> str:
        return (f"INSERT INTO govbus_positions (topic, kafka_partition, next_offset) VALUES ({self.marks(3)}) "
                "ON CONFLICT (topic, kafka_partition) DO UPDATE SET next_offset = excluded.next_offset")

    def advance_watermark(self) -> str:
        """Only ever forwards: a replayed or late batch does not make the store look older."""
        return (f"INSERT INTO govbus_watermarks (library, as_of) VALUES ({self.marks(2)}) ON CONFLICT (library) "
                "DO UPDATE SET as_of = excluded.as_of WHERE excluded.as_of > govbus_watermarks.as_of")
