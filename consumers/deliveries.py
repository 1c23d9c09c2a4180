"""From a message on ``deliver.<department>.<library>`` to what a local store applies.

Kept free of Kafka and of the store so that the rules are tested alone:

- `to_delivery`: a decoded record and its headers → the store's delivery dict. The bus's
  version of the entity is the record's ``sequence``; the delivery writes the entity's whole
  image at that version (every delivered field, unset ones null), so the row at the highest
  version is right whatever arrived before it; the delivery time is the router's ROUTED_AT
  stamp. A life event (the LIFE_EVENT header: a death, a deregistration) is a delivery too,
  marked with its name (``life_event``) and day (``event_date``): the store logs it apart
  from the current view (see `stores.lifeevents`).
- `table_columns`: the typed columns of a library table, from its schema's field metadata.
- `parse_replay`: what ``--replay-from`` means.
- `Received`: a message as read (`received` makes one of a librdkafka message, asking each of
  its accessors once): its headers and its time decoded once, for the delivery, the watermark
  and the rejected log alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from datetime import date, datetime, timezone
from typing import Any, Literal

from govbus.consumers.stores import column_type
from govbus.errors import GovbusError
from govbus.producers.records import parse_timestamp
from govbus.schemas.framing import (ACCEPTED_AT, BACKFILL, EVENT_DATE, IMAGE, LIFE_EVENT, MASKED, PURPOSE, ROUTED_AT,
                                    SUBSCRIPTION, header_map, header_seconds)
from govbus.schemas.registry import SchemaVersion

REPLAY_FORMS = "beginning, an ISO-8601 time (e.g. 2025-03-01T08:00:00+08:00; no offset means China time) " \
               "or an offset (a whole number, per partition)"


class ReplayError(GovbusError, ValueError):
    """A --replay-from value that means nothing; the message lists what it may be."""


@dataclass(frozen=True, slots=True)
class Replay:
    """Where to start reading instead of the store's own positions.

    ``beginning`` empties the store first (a rebuild); a time or an offset re-reads from there
    into the store as it is, where versions make re-applying harmless."""

    kind: Literal["beginning", "time", "offset"]
    at: datetime | None = None
    offset: int | None = None

    def describe(self) -> str:
        if self.kind == "time":
            return f"from {self.at.isoformat()}"  # type: ignore[union-attr]
        return "from the beginning" if self.kind == "beginning" else f"from offset {self.offset}"


def parse_replay(value: str | int | datetime | Replay | None) -> Replay | None:
    """None (resume from the store), "beginning", an offset or an ISO time → a `Replay`."""
    if value is None or isinstance(value, Replay):
        return value
    if isinstance(value, datetime):
        return Replay("time", at=value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    if isinstance(value, bool):
        raise ReplayError(f"--replay-from {value!r}: write {REPLAY_FORMS}")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        offset = int(value)
        if offset < 0:
            raise ReplayError(f"--replay-from {value}: an offset is not negative; write {REPLAY_FORMS}")
        return Replay("offset", offset=offset)
    text = str(value).strip()
    if text.lower() in ("beginning", "earliest", "start"):
        return Replay("beginning")
    moment = parse_timestamp(text)
    if not isinstance(moment, datetime):
        raise ReplayError(f"--replay-from {value!r} is not understood: write {REPLAY_FORMS}")
    return Replay("time", at=moment)


def table_columns(schema: SchemaVersion) -> dict[str, str]:
    """Every field the library may deliver (anything but not-shared) → its column type."""
    return {name: column_type(policy.avro_type) for name, policy in schema.fields.items()
            if policy.sharing != "not_shared"}


def header_time(headers: Mapping[str, bytes], name: str) -> datetime | None:
    """A bus time header as a time, or None if absent or garbled."""
    seconds = header_seconds(headers, name)
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc)


@lru_cache(maxsize=256)
def _image_fields(header: bytes) -> tuple[str, ...]:
    """The IMAGE header's field names; one header per subscription, so parsed once each."""
    return tuple(header.decode().split(","))


def to_delivery(record: Mapping[str, Any], headers: Mapping[str, bytes],
                message_time: datetime | None = None) -> dict[str, Any]:
    """The store delivery for one decoded delivery record.

    ``fields`` is every field of the delivered image (the IMAGE header: the subscription's
    fields) that the reader's schema has (a reader pinned to an older version drops the newer
    fields); ``data`` holds exactly those, and ``changed`` the ones this version changed
    (``fields_set``). A delivery without the IMAGE header writes only what it changed.

    Why the whole image and not only the changed fields: a store applies by version and
    ignores what is not newer, so a partial write is right only if every earlier version
    arrived first. That is not so when a live change and an approval's backfill race (the
    live version 2 arrives before the backfill's snapshot of version 2, which is then
    ignored, and version 1 was routed before the approval): writing only the changed fields
    left the other columns empty for good (seen in CI). The router sends the whole image
    anyway. The
    delivery time is ROUTED_AT, else ACCEPTED_AT, else the Kafka message time. The extra
    keys (event id, subscription, masked fields) are for callbacks and objections; stores
    ignore them, but for ``life_event`` (the event's name, None for a record delivery), which
    sends the delivery to the event log instead of the current view."""
    data = record.get("data") or {}
    deleting = record["op"] == "DELETE"
    changed = [] if deleting else [name for name in record["fields_set"] if name in data]
    image = headers.get(IMAGE)
    fields = changed if deleting or image is None else [name for name in _image_fields(image) if name in data]
    masked = headers.get(MASKED)
    subscription, purpose = headers.get(SUBSCRIPTION), headers.get(PURPOSE)
    return {
        "entity_id": record["entity_id"], "version": record["sequence"], "op": record["op"],
        "data": {name: data[name] for name in fields}, "fields": fields, "changed": changed,
        "valid_from": record.get("valid_from"), "recorded_at": record.get("recorded_at"),
        "delivered_at": header_time(headers, ROUTED_AT) or header_time(headers, ACCEPTED_AT) or message_time,
        "backfill": headers.get(BACKFILL) == b"true",
        "event_id": record.get("event_id"),
        "subscription": subscription.decode("utf-8", "replace") if subscription else None,
        "purpose": purpose.decode("utf-8", "replace") if purpose else None,
        "masked": masked.decode("utf-8", "replace").split(",") if masked else [],
        "life_event": life_event(headers), "event_date": event_date(headers),
    }


def life_event(headers: Mapping[str, bytes]) -> str | None:
    """The name of the life event a delivery announces, or None for a record delivery.
    An empty name is refused (the message is rejected): it would log an event nobody can name."""
    name = headers.get(LIFE_EVENT)
    if name is None:
        return None
    if not name.strip():
        raise ValueError(f"the {LIFE_EVENT} header is empty: a life event without its name")
    return name.decode("utf-8", "replace").strip()


def event_date(headers: Mapping[str, bytes]) -> date | None:
    """The day the life event happened, or None when the header is absent or not an ISO date:
    the event itself still counts (its payload usually holds the date too), as a garbled
    time header leaves a delivery undated rather than lost."""
    day = headers.get(EVENT_DATE)
    try:
        return date.fromisoformat(day.decode("ascii")) if day else None
    except (UnicodeDecodeError, ValueError):
        return None


@dataclass(slots=True)
class Received:
    """One message of a delivery topic as the subscriber read it (see the module)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    time: datetime | None  # the Kafka timestamp

    @property
    def routed_at(self) -> datetime | None:
        """When the router wrote the message: ROUTED_AT, else the Kafka timestamp."""
        return header_time(self.headers, ROUTED_AT) or self.time


def received(message: Any) -> Received:
    """A librdkafka (confluent-kafka) `Message` without an error, as a `Received`."""
    _, millis = message.timestamp()
    return Received(message.topic(), message.partition(), message.offset(), message.key(), message.value(),
                    header_map(message.headers()), message_time(millis))


def message_time(millis: int | None) -> datetime | None:
    """A Kafka timestamp (milliseconds since the epoch), or None when the message has none."""
    return datetime.fromtimestamp(millis / 1000, timezone.utc) if millis is not None and millis > 0 else None
