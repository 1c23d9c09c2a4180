"""The golden record of one entity: what the gate has accepted as true, and from whom.

The gate keeps one per entity, as the value of the compacted `state.<library>` topic keyed
by entity id. It holds
- the authoritative values (一数一源), each with a `Stamp` saying which event of which
  department set it, when the fact became true and when it was recorded (有依据、有痕迹、
  可追溯);
- the latest value each non-authoritative department reported for a field (`Claim`), so
  that a disagreement is detected whichever of the two arrives first (多元校核);
- per source department, the last applied sequence and event id and what that event
  produced (`Mark`), so that a redelivery re-emits exactly the same outputs;
- a `version` that grows by one with every change subscribers see.

A deleted entity stays as a tombstone record (`deleted`, no values, version and marks kept)
rather than a null: a DELETE redelivered after a crash must re-emit its change, a late event
from before the delete must still be recognised as stale, and versions must keep growing
if the entity comes back, or version-idempotent subscribers would ignore the new life.

Records are treated as immutable: `decide` builds new ones and never changes its input.
`GoldenFormat` turns them into plain JSON-ready dicts and back, in this layout (dates and
timestamps in Avro's own encodings: days and milliseconds since the epoch):

    {"format": 1, "entity_id": "…", "version": 7, "deleted": false,
     "events": {event_id: [department, sequence, valid_from_ms | null, recorded_at_ms]},
     "fields": {field: [value, event_id]},                       # authoritative values
     "claims": {field: {department: [value, event_id, raised_against_event_id | null]}},
     "sources": {department: {"sequence": 9, "event_id": "…",
                              "change": shared change | null, "conflicts": [conflict, …]}}}

Stamps are stored once per event and referenced by id, since one event usually sets several
fields; the state of a typical person is then about as big as two copies of the record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, NamedTuple

FORMAT = 1  # the layout written by GoldenFormat.dump; bump it when the layout changes


class Stamp(NamedTuple):
    """Where a value came from."""

    department: str
    event_id: str
    sequence: int
    valid_from: datetime | None
    recorded_at: datetime


class Claim(NamedTuple):
    """A non-authoritative department's latest non-null value for a field.

    `raised_against` is the event id of the authoritative value this claim was last
    reported as conflicting with; the same disagreement is not raised twice.
    """

    value: Any
    stamp: Stamp
    raised_against: str | None = None


class Mark(NamedTuple):
    """The last event applied from one source department and the outputs it produced."""

    sequence: int
    event_id: str
    change: dict[str, Any] | None
    conflicts: tuple[dict[str, Any], ...] = ()


@dataclass(slots=True)
class Golden:
    """One entity's record; never changed in place (decide returns a new one)."""

    entity_id: str
    version: int = 0
    deleted: bool = False
    values: dict[str, Any] = field(default_factory=dict)  # field → authoritative value
    stamps: dict[str, Stamp] = field(default_factory=dict)  # same keys as values
    claims: dict[str, dict[str, Claim]] = field(default_factory=dict)  # field → department →
    marks: dict[str, Mark] = field(default_factory=dict)  # department → last applied event


# --- plain form -----------------------------------------------------------------------------

Convert = Callable[[Any], Any]
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_DAY = date(1970, 1, 1)
_MILLISECOND = timedelta(milliseconds=1)
CONFLICT_TIMES = ("authoritative_valid_from", "authoritative_recorded_at",
                  "reported_valid_from", "reported_recorded_at")


def _identity(value: Any) -> Any:
    return value


def time_to_plain(value: datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // _MILLISECOND


def time_from_plain(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + value * _MILLISECOND


def _converters(avro_type: Any) -> tuple[Convert, Convert] | None:
    """(to plain, from plain) for values of one Avro type, None if they are plain already."""
    if not isinstance(avro_type, dict):
        return None
    logical = avro_type.get("logicalType")
    if logical == "date":
        return (lambda v: None if v is None else (v - _EPOCH_DAY).days,
                lambda v: None if v is None else _EPOCH_DAY + timedelta(days=v))
    if logical == "timestamp-millis":
        return time_to_plain, time_from_plain
    items = _converters(avro_type["items"]) if avro_type.get("type") == "array" else None
    if items is None:
        return None
    to_item, from_item = items
    return (lambda v: None if v is None else [to_item(item) for item in v],
            lambda v: None if v is None else [from_item(item) for item in v])


class GoldenFormat:
    """Golden ⇄ plain dict for one library; build once per library, from its field policies.

    JSON rather than Avro: the record is a document of per-field maps whose value types
    differ by field, and only the gate reads it back. Fields without a converter (strings,
    numbers, a field dropped from a later schema) are copied as they are.
    """

    def __init__(self, policies: Mapping[str, Any]) -> None:
        pairs = {name: _converters(policy.avro_type) for name, policy in policies.items()}
        self._to_plain = {name: pair[0] for name, pair in pairs.items() if pair}
        self._from_plain = {name: pair[1] for name, pair in pairs.items() if pair}

    def dump(self, golden: Golden) -> dict[str, Any]:
        to_plain, events = self._to_plain, {}

        def event(stamp: Stamp) -> str:
            if stamp.event_id not in events:
                events[stamp.event_id] = [stamp.department, stamp.sequence,
                                          time_to_plain(stamp.valid_from), time_to_plain(stamp.recorded_at)]
            return stamp.event_id

        return {
            "format": FORMAT, "entity_id": golden.entity_id, "version": golden.version,
            "deleted": golden.deleted, "events": events,
            "fields": {name: [_convert(to_plain, name, golden.values[name]), event(stamp)]
                       for name, stamp in golden.stamps.items()},
            "claims": {name: {department: [_convert(to_plain, name, claim.value), event(claim.stamp),
                                           claim.raised_against]
                              for department, claim in by_department.items()}
                       for name, by_department in golden.claims.items()},
            "sources": {department: {"sequence": mark.sequence, "event_id": mark.event_id,
                                     "change": _change(mark.change, to_plain, time_to_plain),
                                     "conflicts": [_conflict(c, to_plain, time_to_plain)
                                                   for c in mark.conflicts]}
                        for department, mark in golden.marks.items()},
        }

    def load(self, plain: Mapping[str, Any]) -> Golden:
        if plain.get("format") != FORMAT:
            raise ValueError(f"golden record of entity {plain.get('entity_id')!r} has format "
                             f"{plain.get('format')!r}; this gate reads format {FORMAT}")
        from_plain = self._from_plain
        stamps = {event_id: Stamp(department, event_id, sequence, time_from_plain(valid_from),
                                  time_from_plain(recorded_at))
                  for event_id, (department, sequence, valid_from, recorded_at) in plain["events"].items()}
        fields = plain["fields"]
        return Golden(
            entity_id=plain["entity_id"], version=plain["version"], deleted=plain["deleted"],
            values={name: _convert(from_plain, name, value) for name, (value, _) in fields.items()},
            stamps={name: stamps[event_id] for name, (_, event_id) in fields.items()},
            claims={name: {department: Claim(_convert(from_plain, name, value), stamps[event_id], raised)
                           for department, (value, event_id, raised) in by_department.items()}
                    for name, by_department in plain["claims"].items()},
            marks={department: Mark(entry["sequence"], entry["event_id"],
                                    _change(entry["change"], from_plain, time_from_plain),
                                    tuple(_conflict(c, from_plain, time_from_plain) for c in entry["conflicts"]))
                   for department, entry in plain["sources"].items()},
        )


def _convert(converters: dict[str, Convert], name: str, value: Any) -> Any:
    convert = converters.get(name)
    return value if convert is None else convert(value)


def _change(change: dict[str, Any] | None, converters: dict[str, Convert],
            convert_time: Convert) -> dict[str, Any] | None:
    if change is None:
        return None
    converted = {**change, "valid_from": convert_time(change["valid_from"]),
                 "recorded_at": convert_time(change["recorded_at"])}
    data = change["data"]
    if data is not None and converters:
        converted["data"] = data = dict(data)
        for name, convert in converters.items():
            if name in data:
                data[name] = convert(data[name])
    return converted


def _conflict(conflict: dict[str, Any], converters: dict[str, Convert],
              convert_time: Convert) -> dict[str, Any]:
    name = conflict["field"]
    converted = {key: convert_time(conflict[key]) for key in CONFLICT_TIMES}
    return {**conflict, **converted,
            "authoritative_value": _convert(converters, name, conflict["authoritative_value"]),
            "reported_value": _convert(converters, name, conflict["reported_value"])}
