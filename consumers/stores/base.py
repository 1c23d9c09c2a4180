"""A subscriber's local store: its own current view of what it is entitled to, kept by
applying deliveries idempotently, with its consumer positions in the same transaction.

Why positions live here and not in Kafka: the store commits a batch of rows and the offsets
after them atomically, so after a crash the subscriber resumes from the store's own
positions and every delivery takes effect exactly once, whatever the broker remembers.

Why versions decide and not arrival order: the bus numbers each entity's deliveries, so a
replayed, duplicated or late delivery is recognised by its version and ignored. A DELETE
leaves a tombstone row (data cleared, `deleted` true, its version kept) so that an older
upsert arriving later cannot bring the entity back.

The SQL is the same for both backends (`INSERT … ON CONFLICT … DO UPDATE … WHERE`); a
backend supplies its connection, its type names and its value conversions.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .sql import BOOKKEEPING_NAMES, Dialect, quoted
from .types import BOOKKEEPING, CHECKS, COLUMN_TYPES, StoreError, new_columns

Encoder = Callable[[Any], Any]
_READ_BOOKKEEPING = tuple(name for name in BOOKKEEPING if name != "deleted")
_OPERATIONS = {"UPSERT": False, "SNAPSHOT": False, "DELETE": True}  # op -> is a delete


def _already_encoded(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What one batch did: rows written, entities deleted, deliveries ignored as not newer."""

    upserted: int = 0
    deleted: int = 0
    ignored: int = 0  # duplicates and stale versions: the store already had them or newer

    @property
    def total(self) -> int:
        return self.upserted + self.deleted + self.ignored


class Store(ABC):
    """The store's operations, written once; subclasses give the backend primitives.

    One store serves one subscriber: it holds one connection and is not for concurrent use
    by several threads."""

    dialect: Dialect
    conversions: Mapping[str, Encoder] = {}  # neutral type -> Python value to driver value
    decoders: Mapping[str, Encoder] = {}  # neutral type -> driver value to Python value
    driver_errors: tuple[type[Exception], ...] = ()
    where: str = "the store"  # for messages: which database this is

    # -- backend primitives ---------------------------------------------------------
    @abstractmethod
    def _transaction(self) -> AbstractContextManager[None]: ...

    @abstractmethod
    def _execute(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]: ...

    @abstractmethod
    def _executemany(self, sql: str, rows: list[list[Any]]) -> int:
        """Run `sql` once per row in order; return how many rows it changed in all."""

    @abstractmethod
    def close(self) -> None: ...

    # -- tables ---------------------------------------------------------------------
    def _set_up(self) -> None:
        """Create the bookkeeping tables if missing and load which columns exist."""
        with self._transaction():
            for statement in self.dialect.bookkeeping_tables():
                self._execute(statement)
        self._columns: dict[str, dict[str, str]] = {}
        for library, name, kind in self._execute("SELECT library, name, type FROM govbus_columns"):
            columns = self._columns.setdefault(library, {})
            if name not in BOOKKEEPING:
                columns[name] = kind
        self._encoders = {kind: self._encoder(kind) for kind in COLUMN_TYPES}
        self._statements: dict[tuple[str, tuple[str, ...]], tuple[str, list[Encoder]]] = {}

    def _encoder(self, kind: str) -> Encoder:
        check, convert = CHECKS[kind], self.conversions.get(kind)
        return check if convert is None else (lambda value: convert(check(value)))

    def ensure_table(self, library: str, columns: Mapping[str, str]) -> None:
        """Create the library's table, or add the columns it lacks (schema evolution).

        `columns` maps each delivered field to a neutral type (see `types.COLUMN_TYPES`);
        columns it omits are kept. A column that exists with another type is refused.
        """
        known = self._columns.get(library)
        missing = new_columns(library, columns, known)
        if known is not None and not missing:
            return
        recorded = {**BOOKKEEPING, **missing} if known is None else missing
        with self._transaction():
            if known is None:
                self._execute(self.dialect.create_table(library, recorded))
            for name, kind in ({} if known is None else missing).items():
                self._execute(self.dialect.add_column(library, name, kind))
            self._executemany(self.dialect.record_column(), [[library, name, kind] for name, kind in recorded.items()])
        self._columns[library] = {**(known or {}), **missing}
        self._statements = {key: sql for key, sql in self._statements.items() if key[0] != library}

    def _table(self, library: str) -> dict[str, str]:
        try:
            return self._columns[library]
        except KeyError:
            raise StoreError(f"{self.where} has no table for library {library!r}: "
                             "call ensure_table first") from None

    # -- writing --------------------------------------------------------------------
    def apply(self, library: str, deliveries: list[dict[str, Any]],
              positions: Mapping[tuple[str, int], int] | None = None,
              as_of: datetime | None = None) -> ApplyResult:
        """Apply a batch in one transaction, with the consumer positions reached after it and
        the time up to which the library is now complete. All of it or none of it."""
        columns, applied_at = self._table(library), self._encoders["timestamp"](datetime.now(timezone.utc))
        counts = {False: [0, 0], True: [0, 0]}  # is a delete -> [changed, given]
        try:
            with self._transaction():
                for deleting, names, run in self._runs(library, deliveries, columns):
                    sql, encoders = self._statement(library, names)
                    rows = [self._row(library, delivery, names, encoders, deleting, applied_at) for delivery in run]
                    counts[deleting][0] += self._executemany(sql, rows)
                    counts[deleting][1] += len(rows)
                if positions:
                    self._executemany(self.dialect.save_position(), [
                        [topic, partition, offset] for (topic, partition), offset in positions.items()])
                if as_of is not None:
                    self._execute(self.dialect.advance_watermark(), (library, self._encoders["timestamp"](as_of)))
        except StoreError as error:
            raise StoreError(f"{error}; nothing of the batch was applied and the positions did not move") from None
        except self.driver_errors as error:
            raise StoreError(f"{self.where} refused a batch of {len(deliveries)} {library} deliveries; "
                             f"nothing of it was applied and the positions did not move: {error}") from error
        ignored = counts[False][1] - counts[False][0] + counts[True][1] - counts[True][0]
        return ApplyResult(upserted=counts[False][0], deleted=counts[True][0], ignored=ignored)

    def _runs(self, library: str, deliveries: list[dict[str, Any]],
              columns: dict[str, str]) -> Iterator[tuple[bool, tuple[str, ...], list[dict[str, Any]]]]:
        """Consecutive deliveries that write the same columns: one statement each, in order."""
        def key(delivery: dict[str, Any]) -> tuple[bool, tuple[str, ...]]:
            deleting = _OPERATIONS.get(delivery.get("op"))  # type: ignore[arg-type]
            if deleting is None or (not deleting and not isinstance(delivery.get("fields"), (list, tuple))):
                raise StoreError(f"{library} delivery for {delivery.get('entity_id')!r} needs an op (one of "
                                 f"{', '.join(_OPERATIONS)}) and, unless it deletes, the list of its fields")
            return deleting, tuple(columns) if deleting else tuple(delivery["fields"])

        for (deleting, names), run in itertools.groupby(deliveries, key):
            unknown = [name for name in names if name not in columns]
            if unknown:
                raise StoreError(f"{library} deliveries carry {', '.join(unknown)}, which the table lacks: "
                                 "call ensure_table with every field the subscription delivers")
            yield deleting, names, list(run)

    @staticmethod
    def _row(library: str, delivery: dict[str, Any], names: tuple[str, ...], encoders: list[Encoder],
             deleting: bool, applied_at: Any) -> list[Any]:
        """The statement's parameters for one delivery, each checked against its column type."""
        entity_id, version = delivery.get("entity_id"), delivery.get("version")
        if entity_id is None or version is None:
            raise StoreError(f"{library} delivery {delivery.get('entity_id')!r} lacks its entity_id or version")
        data = {} if deleting else (delivery.get("data") or {})
        values = [entity_id, version, deleting, delivery.get("valid_from") or delivery.get("recorded_at"),
                  delivery.get("delivered_at"), applied_at, bool(delivery.get("backfill", False))]
        values.extend(data.get(name) for name in names)
        row = []
        try:
            for name, encode, value in zip(BOOKKEEPING_NAMES + names, encoders, values):
                row.append(None if value is None else encode(value))
        except TypeError as expected:
            raise StoreError(f"{library} delivery for {entity_id!r}: {name} must be {expected}, got "
                             f"{type(value).__name__} {value!r}") from None
        return row

    def _statement(self, library: str, names: tuple[str, ...]) -> tuple[str, list[Encoder]]:
        """The upsert for deliveries writing `names`, and the encoder of each of its values."""
        prepared = self._statements.get((library, names))
        if prepared is None:
            types = {**BOOKKEEPING, **self._columns[library]}
            encoders = [self._encoders[types[name]] for name in BOOKKEEPING_NAMES + names]
            encoders[BOOKKEEPING_NAMES.index("applied_at")] = _already_encoded
            prepared = self._statements[(library, names)] = (self.dialect.upsert(library, names), encoders)
        return prepared

    def reset(self) -> None:
        """Empty every library table, the positions and the watermarks: replay from the start.
        Tables and columns stay, so the subscriber need not declare them again."""
        with self._transaction():
            for library in self._columns:
                self._execute(f"DELETE FROM {quoted(library)}")
            self._execute("DELETE FROM govbus_positions")
            self._execute("DELETE FROM govbus_watermarks")

    # -- reading --------------------------------------------------------------------
    def positions(self) -> dict[tuple[str, int], int]:
        """Where to resume: (topic, partition) -> the offset of the next delivery to read."""
        rows = self._execute("SELECT topic, kafka_partition, next_offset FROM govbus_positions")
        return {(topic, partition): offset for topic, partition, offset in rows}

    def watermark(self, library: str) -> datetime | None:
        """The time up to which this library's view is complete, or None before the first batch."""
        rows = self._execute(f"SELECT as_of FROM govbus_watermarks WHERE library = {self.dialect.mark}", (library,))
        return self._decode("timestamp", rows[0][0]) if rows else None

    def get(self, library: str, entity_id: str) -> dict[str, Any] | None:
        """The entity's current row, or None when it was never received or has been deleted."""
        found = self._select(library, f" AND entity_id = {self.dialect.mark}", (entity_id,))
        return found[0] if found else None

    def rows(self, library: str) -> list[dict[str, Any]]:
        """Every current (not deleted) row, ordered by entity id."""
        return sorted(self._select(library, "", ()), key=lambda row: row["entity_id"])

    def count(self, library: str) -> int:
        self._table(library)
        return self._execute(f"SELECT count(*) FROM {quoted(library)} WHERE NOT deleted")[0][0]

    def _select(self, library: str, condition: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        columns = self._table(library)
        types = {**BOOKKEEPING, **columns}
        names = _READ_BOOKKEEPING + tuple(columns)
        found = self._execute(self.dialect.select(library, names, condition), params)
        return [{name: self._decode(types[name], value) for name, value in zip(names, row)} for row in found]

    def _decode(self, kind: str, value: Any) -> Any:
        decoder = self.decoders.get(kind)
        return value if value is None or decoder is None else decoder(value)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
