"""Does a department's store hold exactly what it is entitled to?

The answer is computed, not asserted: the gate's golden records (``state.<library>``) are what
is true, and the router's own ``Projector`` for the department's approved subscription says
what of it the department may see — the approved fields, masked for its purpose, the rows its
filters let through, under a pseudonym when the key is hidden. A store is right when it holds
that projection and nothing else:

- every entity the projection gives has a row, and no other (undeleted) row is there;
- no row is ahead of its golden record's version; one behind it is right only when every value
  equals the projection (the later changes touched none of its fields: the router delivers a
  live change only when it touches a field the subscription sees, see ``projection``);
- an entity none of whose approved fields has a value is allowed but not required (the router
  delivers it on a backfill only, as a row of nulls);
- each approved field is a column of the table and holds the projected value;
- no other field holds a value (the table has a column for every shareable field of the
  schema, so a column alone is not a leak: a value in it is).

Why one function for the demo and the tests: "every department received exactly what it is
entitled to" is a claim about the rules, and the only honest check of it uses the rules'
own home (the projector), not a second copy of them that could agree with a bug.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from govbus import compact_json
from govbus.consumers.stores.types import BOOKKEEPING
from govbus.processors.gate.golden import Golden, GoldenFormat
from govbus.processors.router.projection import Projector
from govbus.processors.governance.subscriptions import Subscription
from govbus.reading import stream_topic
from govbus.settings import Settings
from govbus.topics.names import TopicNames

SHOWN = 5  # differences quoted in a failure message


@dataclass(frozen=True, slots=True)
class Difference:
    """One way a store differs from the projection: a row missing or extra, a stale version,
    an approved field missing or with another value, a field not approved holding a value."""

    entity_id: str
    kind: str  # missing row | extra row | stale version | missing field | other value | not approved
    field: str | None = None
    expected: Any = None
    found: Any = None

    def describe(self) -> str:
        entity = f"{self.entity_id[:8]}…" if len(self.entity_id) > 9 else self.entity_id
        where = f"{entity} {self.field}" if self.field else entity
        if self.kind in ("missing row", "extra row", "missing field"):
            return f"{where}: {self.kind}"
        return f"{where}: {self.kind} (expected {self.expected!r}, store has {self.found!r})"


@dataclass(frozen=True, slots=True)
class Entitlement:
    """The outcome of checking one department's store for one library."""

    department: str
    library: str
    subscription_id: str
    fields: tuple[str, ...]  # the approved fields, as the projector delivers them
    entities: int  # rows the projection says the store must hold
    rows: int  # undeleted rows the store holds
    differences: tuple[Difference, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        verdict = "equal to the projection of the golden records" if self.ok else \
            f"{len(self.differences)} difference(s)"
        return (f"{self.department:<18} {self.library:<13} {self.entities:>4} entities, "
                f"{len(self.fields)} fields ({', '.join(self.fields)}): {verdict}")

    def failure(self) -> str:
        """What a failed check says: department, library, counts and the first differences."""
        first = "; ".join(difference.describe() for difference in self.differences[:SHOWN])
        more = f" … and {len(self.differences) - SHOWN} more" if len(self.differences) > SHOWN else ""
        return (f"{self.department}'s {self.library} store is not what {self.subscription_id} entitles it to: "
                f"the projection has {self.entities} entities, the store {self.rows} rows; {first}{more}")


OPTIONAL = "govbus_optional"  # in an expected row: none of its approved fields has a value


def expected_rows(goldens: Iterable[Golden], projector: Projector,
                  policies: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Delivered entity id → {approved field: value, "version": …} that the store must hold:
    each live golden record projected as the router projects a backfill of it."""
    expected: dict[str, dict[str, Any]] = {}
    for golden in goldens:
        if golden.deleted or not golden.values:
            continue
        delivered, _ = projector.project(_image(golden, policies))
        if delivered is not None:
            empty = all(value is None for value in delivered["data"].values())
            expected[delivered["entity_id"]] = {**delivered["data"], "version": golden.version, OPTIONAL: empty}
    return expected


def _image(golden: Golden, policies: Mapping[str, Any]) -> dict[str, Any]:
    """The golden record as the change the router projects (its whole image, unset fields null)."""
    data: dict[str, Any] = dict.fromkeys(policies)
    data.update(golden.values)
    return {"event_id": "entitlement-check", "entity_id": golden.entity_id, "version": golden.version,
            "op": "SNAPSHOT", "backfill": True, "fields_set": sorted(golden.values), "data": data,
            "source_department": "govbus", "valid_from": None, "recorded_at": None}


def compare(expected: Mapping[str, Mapping[str, Any]], rows: Iterable[Mapping[str, Any]],
            fields: tuple[str, ...]) -> list[Difference]:
    """Every difference between the projection and the store's undeleted rows."""
    by_entity = {row["entity_id"]: row for row in rows}
    differences = [Difference(entity_id, "missing row") for entity_id in sorted(set(expected) - set(by_entity))
                   if not expected[entity_id].get(OPTIONAL)]
    differences += [Difference(entity_id, "extra row") for entity_id in sorted(set(by_entity) - set(expected))]
    for entity_id in sorted(set(expected) & set(by_entity)):
        differences += _row_differences(entity_id, expected[entity_id], by_entity[entity_id], fields)
    return differences


def _row_differences(entity_id: str, want: Mapping[str, Any], row: Mapping[str, Any],
                     fields: tuple[str, ...]) -> list[Difference]:
    found: list[Difference] = []
    for name in fields:
        if name not in row:
            found.append(Difference(entity_id, "missing field", name))
        elif row[name] != want[name]:
            found.append(Difference(entity_id, "other value", name, want[name], row[name]))
    version = row.get("version")
    if version is None or version > want["version"] or (version < want["version"] and found):
        found.append(Difference(entity_id, "stale version" if version is not None and version < want["version"]
                                else "other version", "version", want["version"], version))
    for name in sorted(set(row) - set(BOOKKEEPING) - set(fields)):
        if row[name] is not None:
            found.append(Difference(entity_id, "not approved", name, None, row[name]))
    return found


def check(subscription: Subscription, goldens: Iterable[Golden], rows: Iterable[Mapping[str, Any]],
          registry: Any, pseudonym_key: bytes) -> Entitlement:
    """Check one store's rows of the subscription's library against the projection of the
    golden records under that subscription (the router's projector, the router's key)."""
    projector = Projector.for_subscription(subscription, registry, pseudonym_key)
    expected = expected_rows(goldens, projector, registry.policy(subscription.library))
    rows = list(rows)
    return Entitlement(department=subscription.department, library=subscription.library,
                       subscription_id=subscription.id, fields=projector.fields, entities=len(expected),
                       rows=len(rows), differences=tuple(compare(expected, rows, projector.fields)))


def read_goldens(settings: Settings, library: str, registry: Any, timeout: float = 120) -> list[Golden]:
    """Every entity's newest golden record now in ``state.<library>`` (the compacted topic may
    still hold older ones). The principal must read ``state.*``: the processors' or the admin's."""
    golden_format = GoldenFormat(registry.policy(library))
    newest: dict[bytes, bytes | None] = {}
    for message in stream_topic(settings, TopicNames(settings.topic_prefix).state(library), timeout=timeout, settle=2.0):
        newest[message.key] = message.value
    return [golden_format.load(compact_json.loads(value)) for value in newest.values() if value]
