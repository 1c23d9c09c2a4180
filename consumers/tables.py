"""The subscriber's side of its store: typed tables that follow the schema, and batches that
a single bad value cannot block.

Columns come from the schema's field metadata (every field but the not-shared ones, typed
with `column_type`). A field the table lacks — delivered under a newer schema than the one
the table was made from — gets its column when it first arrives, instead of failing.

When the store refuses a batch because of one delivery's values (a `StoreError` the store
raised itself, with no database error behind it), the batch is applied one delivery at a
time, the refused ones are rejected, and the positions are saved last: a crash in between
re-reads the batch, and versions make the re-applied deliveries no-ops. A database error
(connection lost, disk full) is not the data's fault: it stops the subscriber.

Life-event deliveries go through the same batch (the store logs them apart from the current
view, see `stores.lifeevents`): their payload fields get columns like any delivered field,
since the log checks each payload value against its field's column type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from govbus.consumers.deliveries import table_columns
from govbus.consumers.stores import ApplyResult, Store, StoreError, column_type
from govbus.errors import GovbusError
from govbus.schemas.registry import SchemaRegistry, SchemaVersion

Reject = Callable[[Any, str], None]  # (message, reason)


class Tables:
    """One store's library tables, as one subscriber fills them."""

    def __init__(self, store: Store, registry: SchemaRegistry) -> None:
        self.store = store
        self.registry = registry
        self._columns: dict[str, set[str]] = {}

    def prepare(self, library: str, schema: SchemaVersion) -> None:
        """Create the library's table, or add the columns of `schema` that it lacks."""
        self._add(library, table_columns(schema))

    def add_new_columns(self, library: str, deliveries: list[dict[str, Any]]) -> None:
        known = self._columns[library]
        new = {name for delivery in deliveries for name in delivery["fields"] if name not in known}
        if new:
            self._add(library, {name: column_type(self._policy(library, name).avro_type) for name in new})

    def _policy(self, library: str, name: str) -> Any:
        for version in reversed(self.registry.versions(library)):
            fields = self.registry.policy(library, version)
            if name in fields:
                return fields[name]
        raise GovbusError(f"{library} delivers a field {name!r} that no known schema has")

    def _add(self, library: str, columns: dict[str, str]) -> None:
        self.store.ensure_table(library, columns)
        self._columns.setdefault(library, set()).update(columns)

    def apply(self, library: str, pairs: list[tuple[Any, dict[str, Any]]],
              positions: Mapping[tuple[str, int], int], as_of: datetime | None, reject: Reject) -> ApplyResult:
        """Apply (message, delivery) pairs with the positions after them; see the module."""
        deliveries = [delivery for _, delivery in pairs]
        self.add_new_columns(library, deliveries)
        try:
            return self.store.apply(library, deliveries, positions, as_of)
        except StoreError as error:
            if error.__cause__ is not None or not deliveries:
                raise
        result = ApplyResult()
        for message, delivery in pairs:
            try:
                result += self.store.apply(library, [delivery])
            except StoreError as error:
                if error.__cause__ is not None:
                    raise
                reject(message, str(error))
        self.store.apply(library, [], positions, as_of)
        return result
