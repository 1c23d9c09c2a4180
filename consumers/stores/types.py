"""The column types a local store knows, named neutrally so that one table definition fits
SQLite and PostgreSQL alike, and the checks that keep both backends equally strict.

A subscriber declares each delivered field with one of `COLUMN_TYPES`. Usually that is
`column_type(policy.avro_type)` from the schema registry, but a field the subscription
receives masked is declared "text": a masked birth date is a string, not a date.

Values are checked in Python before they reach the database so that SQLite (which would
store almost anything anywhere) refuses exactly what PostgreSQL refuses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, timezone
from typing import Any

from govbus.errors import GovbusError

COLUMN_TYPES = ("text", "integer", "bigint", "boolean", "double", "date", "timestamp", "json")
BOOKKEEPING = {  # the columns every library table has besides its data fields
    "entity_id": "text", "version": "bigint", "deleted": "boolean", "last_event_time": "timestamp",
    "delivered_at": "timestamp", "applied_at": "timestamp", "backfill": "boolean",
    # A row is one entity as one subscription delivers it, for that subscription's purpose:
    # a department's two subscriptions to a library (other fields, other purposes) keep a row
    # each, so neither's fields go stale behind the other's versions ("" for a delivery without one).
    "subscription_id": "text", "purpose": "text",
}
ROW_KEY = ("entity_id", "subscription_id")
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_INT32 = 2**31
_AVRO_PRIMITIVES = {"string": "text", "int": "integer", "long": "bigint", "boolean": "boolean",
                    "float": "double", "double": "double", "enum": "text"}
_AVRO_LOGICAL = {"date": "date", "timestamp-millis": "timestamp", "timestamp-micros": "timestamp"}


class StoreError(GovbusError):
    """The local store cannot do what was asked; the message says why and what to do."""


def column_type(avro_type: Any) -> str:
    """The neutral column type for a field's (non-null) Avro type, as `FieldPolicy.avro_type`."""
    if isinstance(avro_type, str) and avro_type in _AVRO_PRIMITIVES:
        return _AVRO_PRIMITIVES[avro_type]
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") in _AVRO_LOGICAL:
            return _AVRO_LOGICAL[avro_type["logicalType"]]
        if avro_type.get("type") in ("array", "map", "record"):
            return "json"
        if avro_type.get("type") in _AVRO_PRIMITIVES:
            return _AVRO_PRIMITIVES[avro_type["type"]]
    raise StoreError(f"no column type for the Avro type {avro_type!r}; "
                     f"declare the column as one of {', '.join(COLUMN_TYPES)}")


def identifier(name: str, what: str) -> str:
    """`name` if it is safe as a (quoted) SQL identifier in both backends, else an error.
    Lower case only, so that quoting never changes which table or column is meant."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise StoreError(f"{what} {name!r} cannot name a table or column: use lower-case letters, "
                         "digits and underscores, starting with a letter, at most 63 characters")
    return name


def new_columns(library: str, columns: Mapping[str, str], known: Mapping[str, str] | None) -> dict[str, str]:
    """The columns of `columns` that `known` (the table's, if it exists) lacks, once all are valid."""
    identifier(library, "library")
    if library.startswith("govbus_"):
        raise StoreError(f"library {library!r}: names starting with govbus_ are the store's own")
    for name, kind in columns.items():
        identifier(name, f"{library} field")
        if name in BOOKKEEPING:
            raise StoreError(f"{library} field {name!r} clashes with the store's column of that name")
        if kind not in COLUMN_TYPES:
            raise StoreError(f"{library}.{name}: type {kind!r} is not one of {', '.join(COLUMN_TYPES)}")
        if known and name in known and known[name] != kind:
            raise StoreError(f"{library}.{name} is stored as {known[name]} but is now delivered as {kind}; "
                             "open a new, empty store (or drop this one) and replay")
    return {name: kind for name, kind in columns.items() if not known or name not in known}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise TypeError("a string")


def _integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and -_INT32 <= value < _INT32:
        return value
    raise TypeError("a 32-bit integer")


def _bigint(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError("an integer")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError("true or false")


def _double(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError("a number")


def _date(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    raise TypeError("a date")


def _timestamp(value: Any) -> datetime:
    """Aware and in UTC; a naive datetime is taken to be UTC already (fastavro's are aware)."""
    if isinstance(value, datetime):
        zone = value.tzinfo
        if zone is timezone.utc:  # what the bus's decoders give: no new object per value
            return value
        return value.replace(tzinfo=timezone.utc) if zone is None else value.astimezone(timezone.utc)
    raise TypeError("a datetime")


def _json(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return value
    raise TypeError("a list or a mapping")


CHECKS: dict[str, Callable[[Any], Any]] = {
    "text": _text, "integer": _integer, "bigint": _bigint, "boolean": _boolean, "double": _double,
    "date": _date, "timestamp": _timestamp, "json": _json,
}
