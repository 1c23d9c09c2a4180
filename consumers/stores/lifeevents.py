"""The life-event log (``govbus_life_events``): what happened to an entity, kept apart from the
current view.

A life event (a death, a company's deregistration) arrives on the same delivery topic as the
library's record deliveries, but it is not a version of the record: it says that something
happened, with only its payload fields (最小必要), at the entity's version when it happened.
Written into the current view it would blank every field the payload lacks and take a
version from the record deliveries; so it goes to a log instead, one row per event and
subscription, in the same transaction as the batch's rows and positions.

The log is insert-or-ignore on (subscription_id, event_id): a redelivery or a replay from an
earlier offset finds the event there and leaves it, so each event is logged (and announced
to ``on_event``) once. The payload is JSON, its values checked against the library's column
types as the current view's are; dates and timestamps are ISO text in it, and turned back
into dates and times on reading, so that a payload reads back equal to what was delivered.
A masked field is a string whatever the field's type, and stays one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from .types import CHECKS, StoreError

TABLE = "govbus_life_events"
COLUMNS = {  # the log's columns, in table order, with their neutral types (besides its arrival number)
    "library": "text", "subscription_id": "text", "purpose": "text", "event": "text", "event_id": "text",
    "entity_id": "text", "version": "bigint", "event_date": "date", "payload": "json", "masked": "text",
    "valid_from": "timestamp", "recorded_at": "timestamp", "delivered_at": "timestamp", "applied_at": "timestamp",
}
OPTIONAL = frozenset({"event_date", "valid_from", "recorded_at", "delivered_at"})  # may be NULL
READ = tuple(name for name in COLUMNS if name != "applied_at")  # what `Store.events` gives of each row
_TO_TEXT = {"date": date.isoformat, "timestamp": lambda value: value.isoformat(timespec="microseconds")}
_FROM_TEXT = {"date": date.fromisoformat, "timestamp": datetime.fromisoformat}


def is_life_event(delivery: Mapping[str, Any]) -> bool:
    """Whether a delivery announces a life event (`deliveries.to_delivery` names it) rather
    than writing a version of the record."""
    return delivery.get("life_event") is not None


def as_event(library: str, delivery: Mapping[str, Any]) -> dict[str, Any]:
    """The log's row for a life-event delivery, as `Store.events` reads it back and
    ``on_event`` receives it. Refused (a `StoreError` of the data's own) without the ids
    that make it one event of one entity."""
    missing = [name for name in ("entity_id", "version", "event_id") if delivery.get(name) is None]
    if missing:
        raise StoreError(f"{library} life event {delivery.get('life_event')!r} for {delivery.get('entity_id')!r} "
                         f"lacks its {' and '.join(missing)}")
    data, fields = delivery.get("data") or {}, delivery.get("fields")
    return {
        "library": library, "subscription_id": delivery.get("subscription") or "",
        "purpose": delivery.get("purpose") or "", "event": delivery["life_event"],
        "event_id": delivery["event_id"], "entity_id": delivery["entity_id"], "version": delivery["version"],
        "event_date": delivery.get("event_date"),
        "payload": {name: data.get(name) for name in (data if fields is None else fields)},  # may be none (moved_out)
        "masked": list(delivery.get("masked") or []), "valid_from": delivery.get("valid_from"),
        "recorded_at": delivery.get("recorded_at"), "delivered_at": delivery.get("delivered_at"),
    }


def payload_to_json(event: Mapping[str, Any], columns: Mapping[str, str]) -> dict[str, Any]:
    """The payload with each value checked against its field's column type and made JSON:
    dates and timestamps as ISO text. A field the library table lacks is refused, as a
    record delivery's would be."""
    masked, encoded = set(event["masked"]), {}
    for name, value in event["payload"].items():
        if name not in columns:
            raise StoreError(f"{event['library']} life event {event['event']!r} carries {name}, which the table lacks: "
                             "call ensure_table with every field the subscription delivers")
        encoded[name] = value if value is None or name in masked else _json_value(event, name, columns[name], value)
    return encoded


def _json_value(event: Mapping[str, Any], name: str, kind: str, value: Any) -> Any:
    try:
        checked = CHECKS[kind](value)
    except TypeError as expected:
        raise StoreError(f"{event['library']} life event {event['event']!r} for {event['entity_id']!r}: {name} must be "
                         f"{expected}, got {type(value).__name__} {value!r}") from None
    convert = _TO_TEXT.get(kind)
    return checked if convert is None else convert(checked)


def payload_from_json(payload: Mapping[str, Any], columns: Mapping[str, str], masked: list[str]) -> dict[str, Any]:
    """The payload as delivered: ISO text back into dates and timestamps (masked values stay text)."""
    return {name: _from_json(value, columns.get(name), name in masked) for name, value in payload.items()}


def _from_json(value: Any, kind: str | None, masked: bool) -> Any:
    convert = _FROM_TEXT.get(kind) if kind else None
    return value if value is None or masked or convert is None or not isinstance(value, str) else convert(value)
