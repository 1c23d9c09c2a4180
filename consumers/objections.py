"""Objections (疑义、错误信息校核): a subscriber flags a wrong value back to the one department
that is its authoritative source (一数一源), which corrects it or rejects the objection.

Every step is an event on ``control.objections`` (JSON, keyed by the objection's id, never
compacted), so the history is the record (有依据、有痕迹、可追溯) and the current state is the
fold of the steps (`fold`):

    raised ──▶ resolved   (the owner published a correction; its event id is recorded)
          └──▶ rejected   (the owner says why not)

Only the owner (the field's ``authority`` in the schema) may answer, and only an open
objection; a step that breaks these rules (two owners' tools answering at once, say) is
ignored by the fold, so every reader computes the same state. The topic is readable by
every department, so events carry names and ids, never data values: the corrected value
travels only through the normal publishing path and reaches subscribers as entitled.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from govbus import clients
from govbus.reading import read_topic
from govbus.errors import GovbusError
from govbus.schemas.registry import SchemaRegistry, default_registry
from govbus.settings import Settings
from govbus.topics.catalog import load_catalog
from govbus.topics.names import OBJECTIONS, TopicNames

log = logging.getLogger("govbus.objections")
FORMAT = 1
STATES = ("open", "resolved", "rejected")
ANSWERS = {"resolved", "rejected"}


class ObjectionError(GovbusError, ValueError):
    """An objection that cannot be raised or answered; the message says why."""


@dataclass(frozen=True, slots=True)
class Objection:
    """The current state of one objection, folded from its steps."""

    id: str
    library: str
    entity_id: str  # as the raiser knows the entity: the real id or its delivery pseudonym ("p-…")
    field: str
    reason: str
    raised_by: str
    owner: str
    raised_at: datetime
    subscription: str | None = None
    event_id: str | None = None  # the delivery the raiser objects to, if given
    state: str = "open"
    answered_by: str | None = None
    answered_at: datetime | None = None
    answer: str | None = None  # why it was rejected
    correction_event_id: str | None = None  # the published correction of a resolution
    steps: tuple[dict[str, Any], ...] = ()

    @property
    def closed(self) -> bool:
        return self.state != "open"


def new_id() -> str:
    return f"obj-{uuid.uuid4().hex[:16]}"


def _time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def raised_event(objection_id: str, *, library: str, entity_id: str, field: str, reason: str, by: str, owner: str,
                 at: datetime, subscription: str | None = None, event_id: str | None = None) -> dict[str, Any]:
    return {"format": FORMAT, "objection": objection_id, "step": "raised", "by": by, "at": _time(at),
            "library": library, "entity_id": entity_id, "field": field, "reason": reason, "owner": owner,
            "subscription": subscription, "event_id": event_id}


def answer_event(objection_id: str, step: str, *, by: str, at: datetime, reason: str | None = None,
                 correction_event_id: str | None = None) -> dict[str, Any]:
    if step not in ANSWERS:
        raise ValueError(f"an answer is one of {', '.join(sorted(ANSWERS))}, not {step!r}")
    return {"format": FORMAT, "objection": objection_id, "step": step, "by": by, "at": _time(at),
            "reason": reason, "correction_event_id": correction_event_id}


def check_answer(objection: Objection, by: str) -> None:
    """The reasons an answer by `by` is refused, as an error (nothing when it is allowed)."""
    if objection.closed:
        raise ObjectionError(f"objection {objection.id} is already {objection.state} (by {objection.answered_by} "
                             f"at {_time(objection.answered_at)}); raise a new one if the value is still wrong")  # type: ignore[arg-type]
    if by != objection.owner:
        raise ObjectionError(f"objection {objection.id} is about {objection.library}.{objection.field}, whose "
                             f"authoritative source is {objection.owner}; only {objection.owner} may answer it, not {by}")


def step(current: Objection | None, event: Mapping[str, Any]) -> Objection | None:
    """The state after one event (the state machine); an event out of turn changes nothing."""
    kind, at = event.get("step"), datetime.fromisoformat(str(event.get("at")).replace("Z", "+00:00"))
    if kind == "raised":
        if current is not None:
            return current
        return Objection(id=event["objection"], library=event["library"], entity_id=event["entity_id"],
                         field=event["field"], reason=event["reason"], raised_by=event["by"], owner=event["owner"],
                         raised_at=at, subscription=event.get("subscription"), event_id=event.get("event_id"),
                         steps=(dict(event),))
    if kind not in ANSWERS or current is None:
        return current
    try:
        check_answer(current, event.get("by"))  # type: ignore[arg-type]
    except ObjectionError as why:
        log.info("ignoring step %s of objection %s: %s", kind, current.id, why)
        return current
    return replace(current, state=kind, answered_by=event["by"], answered_at=at,
                   answer=event.get("reason") if kind == "rejected" else None,
                   correction_event_id=event.get("correction_event_id"), steps=(*current.steps, dict(event)))


def fold(values: Iterable[bytes | str | Mapping[str, Any]]) -> dict[str, Objection]:
    """Every objection's current state from its events in topic order (unreadable ones skipped)."""
    found: dict[str, Objection] = {}
    for value in values:
        try:
            event = json.loads(value) if isinstance(value, (bytes, str)) else value
            objection_id = event["objection"]
            folded = step(found.get(objection_id), event)
        except (ValueError, KeyError, TypeError) as error:
            log.warning("skipping an unreadable objection event (%s): %r", error, value)
            continue
        if folded is not None:
            found[objection_id] = folded
    return found


def encode(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def select(objections: Iterable[Objection], *, owner: str | None = None, raised_by: str | None = None,
           state: str | None = None) -> list[Objection]:
    if state is not None and state not in STATES:
        raise ObjectionError(f"state {state!r}: choose one of {', '.join(STATES)}")
    chosen = [o for o in objections if (owner is None or o.owner == owner)
              and (raised_by is None or o.raised_by == raised_by) and (state is None or o.state == state)]
    return sorted(chosen, key=lambda objection: objection.raised_at)


# -- the SDK: raising, listing and answering on control.objections -------------------------
PSEUDONYM_PREFIX = "p-"


def owner_of(library: str, field: str, registry: SchemaRegistry | None = None) -> str:
    """The department authoritative for `field` (一数一源): the one that answers objections."""
    registry = registry or default_registry()
    if library not in registry.libraries():
        raise ObjectionError(f"unknown library {library!r}; the bus has {', '.join(registry.libraries())}")
    policy = registry.policy(library).get(field)
    if policy is None:
        raise ObjectionError(f"{library} has no field {field!r}; its fields are {', '.join(registry.policy(library))}")
    if policy.sharing == "not_shared":
        raise ObjectionError(f"{library}.{field} is not shared (不予共享): no department receives it, so there is "
                             f"no delivered value to object to")
    if field == registry.entity_key(library):
        raise ObjectionError(f"{field} is the key of {library}: it names the entity and is not corrected by an "
                             "objection; object to the fields that are wrong")
    return policy.authority


def raise_objection(settings: Settings, department: str, library: str, entity_id: str, field: str, reason: str, *,
                    subscription: str | None = None, event_id: str | None = None) -> Objection:
    """Flag `field` of an entity as wrong to its authoritative department.

    `entity_id` is the id as delivered; when that is a pseudonym ("p-…", the key field is
    masked for the subscription's purpose) give the `subscription` it came under, and if
    you can the delivery's `event_id`: the owner's side finds the real entity through the
    sharing records (see `corrections.real_entity_id`)."""
    load_catalog(settings.catalog_dir).require_department(department)
    owner = owner_of(library, field)
    if not entity_id or not entity_id.strip() or not reason or not reason.strip():
        raise ObjectionError("an objection needs the entity's id and a reason saying what is wrong")
    if entity_id.startswith(PSEUDONYM_PREFIX) and not subscription:
        raise ObjectionError(f"{entity_id} is a pseudonym: give the subscription it was delivered under "
                             "(--subscription) and, if you have it, the delivery's event id (--event-id)")
    event = raised_event(new_id(), library=library, entity_id=entity_id.strip(), field=field, reason=reason.strip(),
                         by=department, owner=owner, at=_now(), subscription=subscription, event_id=event_id)
    _write(settings, event)
    return step(None, event)  # type: ignore[return-value]


def list_objections(settings: Settings, *, owner: str | None = None, raised_by: str | None = None,
                    state: str | None = None) -> list[Objection]:
    """The objections an owner has to answer, or a raiser's with their outcome; oldest first."""
    return select(fold(message.value for message in read_topic(settings, _topic(settings))).values(),
                  owner=owner, raised_by=raised_by, state=state)


def find(settings: Settings, objection_id: str) -> Objection:
    found = {o.id: o for o in list_objections(settings)}
    if objection_id not in found:
        raise ObjectionError(f"no objection {objection_id!r}; `govbus objections list` shows them")
    return found[objection_id]


def resolve(settings: Settings, objection_id: str, by: str, correction: Any) -> Objection:
    """Publish the corrected value as `by` (the owner), then record the resolution."""
    from govbus.consumers.corrections import publish_correction  # it needs Objection from here

    objection = find(settings, objection_id)
    check_answer(objection, by)
    published = publish_correction(settings, objection, correction)
    event = answer_event(objection_id, "resolved", by=by, at=_now(), correction_event_id=published)
    _write(settings, event)
    return step(objection, event)  # type: ignore[return-value]


def reject(settings: Settings, objection_id: str, by: str, reason: str) -> Objection:
    """Answer that the value stands, saying why."""
    if not reason or not reason.strip():
        raise ObjectionError("a rejection needs a reason the raiser can act on")
    objection = find(settings, objection_id)
    check_answer(objection, by)
    event = answer_event(objection_id, "rejected", by=by, at=_now(), reason=reason.strip())
    _write(settings, event)
    return step(objection, event)  # type: ignore[return-value]


def _topic(settings: Settings) -> str:
    return TopicNames(settings.topic_prefix).bus(OBJECTIONS)


def _write(settings: Settings, event: Mapping[str, Any]) -> None:
    producer = clients.producer(settings)
    try:
        producer.send(_topic(settings), key=event["objection"].encode(), value=encode(event)).get(timeout=30)
    finally:
        producer.close()


def _now() -> datetime:
    return datetime.now(timezone.utc)
