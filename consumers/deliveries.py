"""From a message on ``deliver.<department>.<library>`` to what a local store applies.

Kept free of Kafka and of the store so that the rules are tested alone:

- `to_delivery`: a decoded record and its headers → the store's delivery dict. The bus's
  version of the entity is the record's ``sequence``; the delivery writes the entity's whole
  image at that version (every delivered field, unset ones null), so the row at the highest
  version is right whatever arrived before it; the delivery time is the router's ROUTED_AT
  stamp.
- `table_columns`: the typed columns of a library table, from its schema's field metadata.
- `parse_replay`: what ``--replay-from`` means.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timezone
from typing import Any, Literal

from govbus.consumers.stores import column_type
from govbus.errors import GovbusError
from govbus.producers.records import parse_timestamp
from govbus.schemas.framing import ACCEPTED_AT, BACKFILL, IMAGE, MASKED, ROUTED_AT, SUBSCRIPTION, header_map
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
    """A bus time header (milliseconds since the epoch as text), or None if absent or garbled."""
    value = headers.get(name)
    try:
        return datetime.fromtimestamp(int(value) / 1000, timezone.utc) if value else None
    except (ValueError, OverflowError, OSError):
        return None


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
    ignore them."""
    data = record.get("data") or {}
    deleting = record["op"] == "DELETE"
    changed = [] if deleting else [name for name in record["fields_set"] if name in data]
    image = headers.get(IMAGE)
    fields = changed if deleting or image is None else [name for name in _image_fields(image) if name in data]
    masked = headers.get(MASKED)
    subscription = headers.get(SUBSCRIPTION)
    return {
        "entity_id": record["entity_id"], "version": record["sequence"], "op": record["op"],
        "data": {name: data[name] for name in fields}, "fields": fields, "changed": changed,
        "valid_from": record.get("valid_from"), "recorded_at": record.get("recorded_at"),
        "delivered_at": header_time(headers, ROUTED_AT) or header_time(headers, ACCEPTED_AT) or message_time,
        "backfill": headers.get(BACKFILL) == b"true",
        "event_id": record.get("event_id"),
        "subscription": subscription.decode("utf-8", "replace") if subscription else None,
        "masked": masked.decode("utf-8", "replace").split(",") if masked else [],
    }


def message_time(message: Any) -> datetime | None:
    """The Kafka timestamp of a message (a kafka-python ConsumerRecord)."""
    return datetime.fromtimestamp(message.timestamp / 1000, timezone.utc) if message.timestamp and message.timestamp > 0 else None


def routed_at(message: Any) -> datetime | None:
    """When the router wrote the message: ROUTED_AT, else the Kafka timestamp."""
    return header_time(header_map(message.headers), ROUTED_AT) or message_time(message)
