"""Life events: that something happened to an entity (a death, a move out of a region, a
company deregistered), told to the departments entitled to know it, and nothing more.

The events are data: each library's catalog file declares them under ``life_events`` (a name,
the rule that detects it in one field, the day it happened, the minimal payload), and
``region_field`` says what a ``region=`` filter means in that library. Adding an event is
adding lines there, not code.

Where they come from: the gate, when it applies a live change, compares the entity's golden
record before and after (``derive``) and names the events on the shared change
(``LIFE_EVENTS``, a header only the router reads). Why there and not in a processor of its
own: the gate is the one place that holds both records at the moment of the change, and it
writes the shared change, the golden record and its input offset in one transaction — so an
event is derived exactly once per real change. A redelivered event (``Status.REDELIVERED``),
a stale one, a source's initial load (a snapshot) and a change to other fields derive
nothing; a crash aborts the transaction with the event in it and the retry derives it again,
once. A separate deriver would need a second copy of every golden record to know "before".

Where they go: the router delivers each event to the approved subscriptions that asked for
it, whose region filter matches the event's region (``Occurred.region``), masked like fields,
recorded in the sharing record (``EventProjector``). A subscriber keeps them in an event log
beside its current view (``consumers``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from govbus.errors import GovbusError
from govbus.schemas.masks import MASKS, Mask
from govbus.schemas.rules import CHINA_TIME
from govbus.topics.catalog import Catalog, LifeEvent, LifeEventRule
from govbus.processors.governance.subscriptions import RowFilter, Subscription, parse_filters


class LifeEventError(GovbusError, ValueError):
    """A life event declared on fields its library's schema does not have; the message names them."""


@dataclass(frozen=True, slots=True)
class Occurred:
    """One life event of one change: its name and the region it happened in (the region the
    entity left, for an event declared ``region: before``), which region filters match."""

    event: str
    region: str | None
    region_after: str | None = None  # for a ``region: before`` event (a move): the region moved to
    leaves: bool = False  # declared ``region: before``: a region filter must hold before and not after


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def happened(rule: LifeEventRule, before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """Whether `rule` holds between the values of a field before and after one change."""
    old, new = before.get(rule.field), after.get(rule.field)
    if rule.change == "set":
        return _empty(old) and not _empty(new)
    if rule.change == "changed":
        return not _empty(old) and old != new
    return new in rule.values and old not in rule.values


def derive(events: Mapping[str, LifeEvent], region_field: str | None, before: Mapping[str, Any] | None,
           after: Mapping[str, Any], changed: frozenset[str] | set[str]) -> list[Occurred]:
    """THE rule of which life events a change is: each declared event whose rule holds between
    the golden record's values `before` (None for a new entity) and `after`, checked only when
    the change touched the rule's field (`changed`)."""
    old = before or {}
    occurred = []
    for name, event in events.items():
        if event.when.field in changed and happened(event.when, old, after):
            leaves = event.region == "before"
            region = _text((old if leaves else after).get(region_field) if region_field else None)
            region_after = _text(after.get(region_field)) if leaves and region_field else None
            occurred.append(Occurred(name, region, region_after, leaves))
    return occurred


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def header(occurred: list[Occurred]) -> bytes:
    """The ``LIFE_EVENTS`` header of a shared change."""
    return json.dumps([[each.event, each.region, each.region_after, each.leaves] for each in occurred],
                      separators=(",", ":")).encode()


def from_header(value: bytes | None) -> list[Occurred]:
    if not value:
        return []
    return [Occurred(str(name), _text(region), _text(after), bool(leaves)) for name, region, after, leaves
            in json.loads(value)]


def check(catalog: Catalog, registry: Any) -> None:
    """Refuse a catalog whose life events or region field name fields the schema lacks (at start,
    rather than an event that never fires)."""
    for library in catalog.libraries.values():
        if library.library not in registry.libraries():
            continue
        known = registry.policy(library.library)
        wrong = [f"region_field {library.region_field}"] if library.region_field and library.region_field not in known else []
        for name, event in library.life_events.items():
            wrong += [f"{name}: {field}" for field in event.fields() if field not in known]
        if wrong:
            raise LifeEventError(f"topics/{library.library}.yaml names fields the {library.library} schema does not "
                                 f"have: {'; '.join(wrong)}")


class EventProjector:
    """What one subscription receives of a library's life events; `project` is called per event.

    Only approved, unexpired subscriptions deliver, only the events they asked for, only where
    every row filter holds — a filter on the region field matched against the event's region,
    any other against the entity's current image. The payload carries only the event's declared
    fields, each masked as the schema asks for the subscription's purpose; the entity id is the
    record projector's (a pseudonym where the key is hidden for that purpose)."""

    __slots__ = ("subscription_id", "department", "library", "purpose", "events", "fields", "masked_by_event",
                 "_plans", "_filters", "_region_field", "_active", "_expires_at", "_pseudonym", "hides_key")

    def __init__(self, subscription: Subscription, declared: Mapping[str, LifeEvent], region_field: str | None,
                 policies: Mapping[str, Any], pseudonym: Any, masks: Mapping[str, Mask] = MASKS,
                 hides_key: bool = False) -> None:
        self.subscription_id = subscription.id
        self.department = subscription.department
        self.library = subscription.library
        self.purpose = subscription.purpose
        self.events = tuple(name for name in subscription.events if name in declared)
        self._plans: dict[str, tuple[tuple[str, Mask | None], ...]] = {}
        for name in self.events:
            plan = []
            for field in declared[name].payload:
                rule = policies[field].mask_for_purpose(self.purpose) if field in policies else None
                plan.append((field, masks.get(rule) if rule else None))
            self._plans[name] = tuple(plan)
        self.masked_by_event = {name: tuple(field for field, mask in plan if mask is not None)
                                for name, plan in self._plans.items()}
        self.fields = tuple(dict.fromkeys(field for plan in self._plans.values() for field, _ in plan))
        self._filters: tuple[RowFilter, ...] = parse_filters(subscription.filters)
        self._region_field = region_field
        automatic = subscription.automatic
        self._active = subscription.state == "approved" and bool(self.events) and all(
            field in policies and (policies[field].sharing == "unconditional" or (
                policies[field].sharing == "conditional" and not automatic))
            for name in self.events for field in declared[name].fields())
        self._expires_at = subscription.expires_at
        self._pseudonym = pseudonym
        self.hides_key = hides_key  # entities are known by a pseudonym (keys: ``projection.pseudonym_key``)

    def active_at(self, now: datetime) -> bool:
        return self._active and (self._expires_at is None or now < self._expires_at)

    def matches(self, occurred: Occurred, image: Mapping[str, Any]) -> bool:
        """Whether this subscription asked for the event, where it happened."""
        if occurred.event not in self._plans:
            return False
        regional = [row for row in self._filters if row.field == self._region_field]
        others = [row for row in self._filters if row.field != self._region_field]
        if not all(row.matches(image) for row in others):
            return False
        if not regional:
            return True
        where = {row.field: occurred.region for row in regional}
        if not all(row.matches(where) for row in regional):
            return False
        towards = {row.field: occurred.region_after for row in regional}
        return not (occurred.leaves and all(row.matches(towards) for row in regional))  # a move within stays

    def project(self, occurred: Occurred, image: Mapping[str, Any], entity_id: str,
                now: datetime) -> tuple[dict[str, Any], tuple[str, ...]] | None:
        """(the event's payload, the masked field names) and the id the subscriber knows the
        entity by, or None when this subscription does not receive the event."""
        if not self.active_at(now) or not self.matches(occurred, image):
            return None
        payload = {field: (image.get(field) if mask is None else mask(image.get(field)))
                   for field, mask in self._plans[occurred.event]}
        return {"entity_id": self._pseudonym(entity_id), "data": payload}, self.masked_by_event[occurred.event]


def event_date(event: LifeEvent, image: Mapping[str, Any], valid_from: datetime | None) -> str | None:
    """The day the event happened, ISO: its declared date field, else the day (China time) of the change's valid_from."""
    value = image.get(event.date) if event.date else None
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if valid_from is not None:
        return valid_from.astimezone(CHINA_TIME).date().isoformat()
    return None
