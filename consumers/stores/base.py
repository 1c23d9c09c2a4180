"""A subscriber's local store: its own current view of what it is entitled to, kept by
applying deliveries idempotently, with its consumer positions in the same transaction.

Why positions live here and not in Kafka: the store commits a batch of rows and the offsets
after them atomically, so after a crash the subscriber resumes from the store's own
positions and every delivery takes effect exactly once, whatever the broker remembers.

Why versions decide and not arrival order: the bus numbers each entity's deliveries, so a
replayed, duplicated or late delivery is recognised by its version and ignored. A DELETE
leaves a tombstone row (data cleared, `deleted` true, its version kept) so that an older
upsert arriving later cannot bring the entity back.

Why life events are not rows of the current view: a life event (a death) says that something
happened, with a minimal payload; it is not a version of the record. `apply` logs each in
``govbus_life_events`` instead (see `lifeevents`), in the batch's transaction, and leaves the
entity's row and version alone.

The SQL is the same for both backends (`INSERT … ON CONFLICT … DO UPDATE … WHERE`); a
backend supplies its connection, its type names and its value conversions.

Why one module of about 350 lines: the store contract and the apply-by-version rule every backend shares; the backends themselves are small.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from . import lifeevents
from .lifeevents import as_event, is_life_event, payload_from_json, payload_to_json
from .sql import BOOKKEEPING_NAMES, Dialect, quoted
from .types import BOOKKEEPING, CHECKS, COLUMN_TYPES, ROW_KEY, StoreError, new_columns

Encoder = Callable[[Any], Any]
_READ_BOOKKEEPING = tuple(name for name in BOOKKEEPING if name != "deleted")
_OPERATIONS = {"UPSERT": False, "SNAPSHOT": False, "DELETE": True}  # op -> is a delete


def _already_encoded(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What one batch did: rows written, entities deleted, deliveries ignored as not newer,
    and the life events it added to the log."""

    upserted: int = 0
    deleted: int = 0
    ignored: int = 0  # duplicates and stale versions: the store already had them or newer (life events too)
    new_events: frozenset[tuple[str, str]] = frozenset()  # (subscription_id, event_id) of each life event logged

    @property
    def events(self) -> int:
        """Life events logged; one the log already had is counted as ignored instead."""
        return len(self.new_events)

    @property
    def total(self) -> int:
        return self.upserted + self.deleted + self.ignored + self.events

    def __add__(self, other: ApplyResult) -> ApplyResult:
        """Both batches' effects: what a batch applied one delivery at a time did in all."""
        return ApplyResult(self.upserted + other.upserted, self.deleted + other.deleted, self.ignored + other.ignored,
                           self.new_events | other.new_events)


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
        recorded: dict[str, set[str]] = {}
        for library, name, kind in self._execute("SELECT library, name, type FROM govbus_columns"):
            columns = self._columns.setdefault(library, {})
            recorded.setdefault(library, set()).add(name)
            if name not in BOOKKEEPING:
                columns[name] = kind
        self._outdated = {library for library, names in recorded.items() if not set(ROW_KEY) <= names}
        self._described = {(identifier, library, purpose, fields) for identifier, library, purpose, fields in
                           self._execute("SELECT subscription_id, library, purpose, fields FROM govbus_subscriptions")}
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
        if library in self._outdated:
            raise StoreError(f"{self.where}: the {library} table was made by an older govbus, with one row per entity "
                             "(now one per entity and subscription); open a new, empty store and replay "
                             "(--replay-from beginning), or drop the table and its govbus_columns rows")
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
        the time up to which the library is now complete. All of it or none of it. Record
        deliveries write the current view; life events go to the log (see the module)."""
        columns, applied_at = self._table(library), self._encoders["timestamp"](datetime.now(timezone.utc))
        counts = {False: [0, 0], True: [0, 0]}  # is a delete -> [changed, given]
        records = [delivery for delivery in deliveries if not is_life_event(delivery)]
        new_events: frozenset[tuple[str, str]] = frozenset()
        try:
            with self._transaction():
                for deleting, names, run in self._runs(library, records, columns):
                    sql, encoders = self._statement(library, names)
                    rows = [self._row(library, delivery, names, encoders, deleting, applied_at) for delivery in run]
                    counts[deleting][0] += self._executemany(sql, rows)
                    counts[deleting][1] += len(rows)
                if len(records) < len(deliveries):
                    new_events = self._log_events(library, [delivery for delivery in deliveries
                                                            if is_life_event(delivery)], columns, applied_at)
                self._describe(library, records)
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
        ignored += len(deliveries) - len(records) - len(new_events)
        return ApplyResult(upserted=counts[False][0], deleted=counts[True][0], ignored=ignored, new_events=new_events)

    def _log_events(self, library: str, deliveries: list[dict[str, Any]], columns: dict[str, str],
                    applied_at: Any) -> frozenset[tuple[str, str]]:
        """Log the life events the log lacks; the (subscription_id, event_id) of those it lacked:
        the rows numbered past the highest arrival before (one store, one writer)."""
        rows = [self._event_row(as_event(library, delivery), columns, applied_at) for delivery in deliveries]
        before = self._execute(f"SELECT coalesce(max(arrival), 0) FROM {lifeevents.TABLE}")[0][0]
        self._executemany(self.dialect.log_life_event(), rows)
        added = self._execute(f"SELECT subscription_id, event_id FROM {lifeevents.TABLE} "
                              f"WHERE arrival > {self.dialect.mark}", (before,))
        return frozenset((subscription_id, event_id) for subscription_id, event_id in added)

    def _event_row(self, event: dict[str, Any], columns: dict[str, str], applied_at: Any) -> list[Any]:
        """The log statement's parameters for one event, each checked against its column type."""
        values = {**event, "payload": payload_to_json(event, columns), "masked": ",".join(event["masked"])}
        row = []
        for name, kind in lifeevents.COLUMNS.items():
            value = applied_at if name == "applied_at" else values.get(name)
            try:
                row.append(value if name == "applied_at" or value is None else self._encoders[kind](value))
            except TypeError as expected:
                raise StoreError(f"{event['library']} life event {event['event']!r} for {event['entity_id']!r}: "
                                 f"{name} must be {expected}, got {type(value).__name__} {value!r}") from None
        return row

    def _describe(self, library: str, deliveries: list[dict[str, Any]]) -> None:
        """Record each subscription's purpose and fields the first time a batch shows them (and
        again when its fields change: a newer schema), so each field's purpose is in the store."""
        seen = {(delivery.get("subscription") or "", library, delivery.get("purpose") or "", ",".join(delivery["fields"]))
                for delivery in deliveries if _OPERATIONS.get(delivery.get("op")) is False}
        new = sorted(seen - self._described)
        if new:
            self._executemany(self.dialect.record_subscription(), [list(row) for row in new])
            self._described |= set(new)

    def subscriptions(self) -> dict[str, dict[str, Any]]:
        """Every subscription the store holds rows of: its library, purpose and fields."""
        rows = self._execute("SELECT subscription_id, library, purpose, fields FROM govbus_subscriptions")
        return {identifier: {"library": library, "purpose": purpose, "fields": fields.split(",") if fields else []}
                for identifier, library, purpose, fields in rows}

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
        """The statement's parameters for one delivery, each checked against its column type.
        Why one comprehension and the loop only on a refusal: this runs once per delivery
        applied, and naming the refused column is needed only when one is refused."""
        entity_id, version = delivery.get("entity_id"), delivery.get("version")
        if entity_id is None or version is None:
            raise StoreError(f"{library} delivery {delivery.get('entity_id')!r} lacks its entity_id or version")
        data = {} if deleting else (delivery.get("data") or {})
        values = [entity_id, version, deleting, delivery.get("valid_from") or delivery.get("recorded_at"),
                  delivery.get("delivered_at"), applied_at, bool(delivery.get("backfill", False)),
                  delivery.get("subscription") or "", delivery.get("purpose") or ""]
        values.extend(data.get(name) for name in names)
        try:
            return [None if value is None else encode(value) for encode, value in zip(encoders, values)]
        except TypeError:
            for name, encode, value in zip(BOOKKEEPING_NAMES + names, encoders, values):
                if value is None:
                    continue
                try:
                    encode(value)
                except TypeError as expected:
                    raise StoreError(f"{library} delivery for {entity_id!r}: {name} must be {expected}, got "
                                     f"{type(value).__name__} {value!r}") from None
            raise  # an encoder that refused once and not again: not a value's fault

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
            self._execute("DELETE FROM govbus_subscriptions")
            self._execute(f"DELETE FROM {lifeevents.TABLE}")
        self._described = set()

    # -- reading --------------------------------------------------------------------
    def positions(self) -> dict[tuple[str, int], int]:
        """Where to resume: (topic, partition) -> the offset of the next delivery to read."""
        rows = self._execute("SELECT topic, kafka_partition, next_offset FROM govbus_positions")
        return {(topic, partition): offset for topic, partition, offset in rows}

    def watermark(self, library: str) -> datetime | None:
        """The time up to which this library's view is complete, or None before the first batch."""
        rows = self._execute(f"SELECT as_of FROM govbus_watermarks WHERE library = {self.dialect.mark}", (library,))
        return self._decode("timestamp", rows[0][0]) if rows else None

    def get(self, library: str, entity_id: str, subscription_id: str | None = None) -> dict[str, Any] | None:
        """The entity's current row (under `subscription_id`, which may be left out while the
        store holds the entity under one subscription only), or None when it was never
        received or has been deleted."""
        condition, params = f" AND entity_id = {self.dialect.mark}", (entity_id,)
        if subscription_id is not None:
            condition, params = f"{condition} AND subscription_id = {self.dialect.mark}", (entity_id, subscription_id)
        found = self._select(library, condition, params)
        if len(found) > 1:
            raise StoreError(f"{library} {entity_id} is held under several subscriptions "
                             f"({', '.join(sorted(row['subscription_id'] for row in found))}); name the one to read")
        return found[0] if found else None

    def rows(self, library: str, subscription_id: str | None = None) -> list[dict[str, Any]]:
        """Every current (not deleted) row (of one subscription, if given), by entity id."""
        condition, params = ("", ()) if subscription_id is None else (
            f" AND subscription_id = {self.dialect.mark}", (subscription_id,))
        return sorted(self._select(library, condition, params), key=lambda row: (row["entity_id"], row["subscription_id"]))

    def count(self, library: str, subscription_id: str | None = None) -> int:
        """Current rows (of one subscription, if given)."""
        self._table(library)
        condition, params = ("", ()) if subscription_id is None else (
            f" AND subscription_id = {self.dialect.mark}", (subscription_id,))
        return self._execute(f"SELECT count(*) FROM {quoted(library)} WHERE NOT deleted{condition}", params)[0][0]

    def events(self, library: str | None = None, subscription_id: str | None = None,
               event: str | None = None) -> list[dict[str, Any]]:
        """The life events logged (of one library, subscription or event name, if given), in the
        order they arrived: each as ``on_event`` received it, its payload with its types."""
        given = {name: value for name, value in (("library", library), ("subscription_id", subscription_id),
                                                 ("event", event)) if value is not None}
        condition = "".join(f" AND {name} = {self.dialect.mark}" for name in given)
        found = self._execute(self.dialect.select_life_events(condition), tuple(given.values()))
        return [self._logged_event(row) for row in found]

    def _logged_event(self, row: tuple[Any, ...]) -> dict[str, Any]:
        event = {name: self._decode(lifeevents.COLUMNS[name], value) for name, value in zip(lifeevents.READ, row)}
        event["masked"] = event["masked"].split(",") if event["masked"] else []
        event["payload"] = payload_from_json(event["payload"], self._columns.get(event["library"], {}), event["masked"])
        return event

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
