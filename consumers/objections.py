"""Objections (疑义、错误信息校核): a subscriber flags a wrong value back to the one department
that is its authoritative source (一数一源), which corrects it or rejects the objection.

Who said what is the broker's word, not the message's: the raiser writes its objection, and
the field's authority its answer, as acts to their own ``control.acts.<department>`` topics
(``processors/governance/acts.py``). The authority processor folds them (`judge_act`): the owner is the
field's ``authority`` in the schema, never a name in the act; only the owner answers, and only
an open objection; a malformed step (a time without an offset, a missing field) is refused
with its reason and never stops the fold for anyone else. Every accepted or refused step is
recorded in ``control.objections`` (governance reads it: the assessment counts only these
genuine answers) and copied to ``control.objections.<raiser>`` and ``.<owner>``, which only
those two departments read, so nobody sees another's objections. The current state is the
fold of the steps (`fold`), the same function everywhere:

    raised ──▶ resolved   (the owner published a correction; its event id is recorded)
          └──▶ rejected   (the owner says why not)

Events carry names and ids, never data values: the corrected value travels only through the
normal publishing path and reaches subscribers as entitled. When the raiser knows the entity
by its delivery pseudonym ("p-…"), the raiser's copy keeps the pseudonym and only the owner's
copy (and governance's record) carries the real id, found by the authority processor in the
sharing records.

Why one module of about 360 lines: an objection's steps and who may take each are one fold, read by the raiser, the owner and the assessment alike.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from govbus.processors.governance import acts
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


class ObjectionTimeError(ValueError):
    """A step whose time is not an ISO time with an offset."""


def parse_time(text: Any) -> datetime:
    """An aware time from ISO text; a time without an offset is refused (it cannot be ordered
    against the others, and would break every reader's sorting)."""
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise ObjectionTimeError(f"time {text!r} is not an ISO time") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ObjectionTimeError(f"time {text!r} has no offset (write e.g. 2025-03-01T08:00:00Z)")
    return moment


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
    real_entity_id: str | None = None  # the owner's copy only, when the raiser knows a pseudonym
    refusals: tuple[dict[str, Any], ...] = ()  # acts about it that were refused, with their reasons

    @property
    def closed(self) -> bool:
        return self.state != "open"


def new_id() -> str:
    return f"obj-{uuid.uuid4().hex[:16]}"


def _time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def raised_event(objection_id: str, *, library: str, entity_id: str, field: str, reason: str, by: str, owner: str,
                 at: datetime, subscription: str | None = None, event_id: str | None = None,
                 act: str | None = None) -> dict[str, Any]:
    return {"format": FORMAT, "objection": objection_id, "step": "raised", "by": by, "at": _time(at),
            "library": library, "entity_id": entity_id, "field": field, "reason": reason, "owner": owner,
            "subscription": subscription, "event_id": event_id, "act": act}


def answer_event(objection_id: str, step: str, *, by: str, at: datetime, reason: str | None = None,
                 correction_event_id: str | None = None, act: str | None = None) -> dict[str, Any]:
    if step not in ANSWERS:
        raise ValueError(f"an answer is one of {', '.join(sorted(ANSWERS))}, not {step!r}")
    return {"format": FORMAT, "objection": objection_id, "step": step, "by": by, "at": _time(at),
            "reason": reason, "correction_event_id": correction_event_id, "act": act}


def refused_event(objection_id: str | None, *, by: str, at: datetime, wanted: str, reason: str,
                  act: str | None) -> dict[str, Any]:
    """An act that was not applied, kept on the record with why (it changes no state)."""
    return {"format": FORMAT, "objection": objection_id, "step": "refused", "by": by, "at": _time(at),
            "wanted": wanted, "reason": reason, "act": act}


def check_answer(objection: Objection, by: str) -> None:
    """The reasons an answer by `by` is refused, as an error (nothing when it is allowed)."""
    if objection.closed:
        raise ObjectionError(f"objection {objection.id} is already {objection.state} (by {objection.answered_by} "
                             f"at {_time(objection.answered_at)}); raise a new one if the value is still wrong")  # type: ignore[arg-type]
    if by != objection.owner:
        raise ObjectionError(f"objection {objection.id} is about {objection.library}.{objection.field}, whose "
                             f"authoritative source is {objection.owner}; only {objection.owner} may answer it, not {by}")


def step(current: Objection | None, event: Mapping[str, Any]) -> Objection | None:
    """The state after one recorded event (the state machine); an event out of turn changes
    nothing. The events are the authority processor's record, whose ``by`` is the principal
    that wrote the act (the broker's word): only it and the admin write these topics."""
    kind, at = event.get("step"), parse_time(event.get("at"))
    if kind == "refused":
        if current is None:
            return None
        return replace(current, refusals=(*current.refusals, dict(event)))
    if kind == "raised":
        if current is not None:
            return current
        return Objection(id=event["objection"], library=event["library"], entity_id=event["entity_id"],
                         field=event["field"], reason=event["reason"], raised_by=event["by"], owner=event["owner"],
                         raised_at=at, subscription=event.get("subscription"), event_id=event.get("event_id"),
                         steps=(dict(event),), real_entity_id=event.get("real_entity_id"))
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


def fold(values: Iterable[bytes | str | Mapping[str, Any]],
         start: Mapping[str, Objection] | None = None) -> dict[str, Objection]:
    """Every objection's current state from its events in topic order (unreadable ones, e.g. a
    time without an offset, skipped with a warning: one bad step never stops the others),
    continuing from `start` when given."""
    found: dict[str, Objection] = dict(start or {})
    for value in values:
        try:
            event = json.loads(value) if isinstance(value, (bytes, str)) else value
            objection_id = event["objection"]
            folded = step(found.get(objection_id), event)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
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


def judge_act(found: Mapping[str, Objection], author: str, act: Mapping[str, Any], at: datetime,
              real_entity_id: Any = None) -> dict[str, Any]:
    """What the record says of one objection act by `author` (the acts topic's principal):
    the step it makes, or a refusal with the reason. Never raises for a bad act.
    `real_entity_id(objection) -> str` finds the entity behind a pseudonym (sharing records)."""
    objection_id, kind = act.get("objection"), str(act.get("kind", ""))
    try:
        if not isinstance(objection_id, str) or not objection_id.startswith("obj-"):
            raise ObjectionError(f"an objection act needs the objection's id (obj-…), not {objection_id!r}")
        if kind == "objection.raise":
            return _judge_raise(found, author, act, at, real_entity_id)
        return _judge_answer(found.get(objection_id), objection_id, author, act, at)
    except (ObjectionError, ObjectionTimeError, KeyError, TypeError, AttributeError) as why:
        message = str(why) if isinstance(why, (ObjectionError, ObjectionTimeError)) else f"malformed act: {why!r}"
        return refused_event(objection_id if isinstance(objection_id, str) else None, by=author, at=at,
                             wanted=kind, reason=message, act=act.get("act"))


def _judge_raise(found: Mapping[str, Objection], author: str, act: Mapping[str, Any], at: datetime,
                 real_entity_id: Any) -> dict[str, Any]:
    if act["objection"] in found:
        raise ObjectionError(f"objection {act['objection']} exists already; raise a new one with a new id")
    library, field = str(act["library"]), str(act["field"])
    owner = owner_of(library, field)
    entity_id, reason = str(act.get("entity_id") or "").strip(), str(act.get("reason") or "").strip()
    if not entity_id or not reason:
        raise ObjectionError("an objection needs the entity's id and a reason saying what is wrong")
    subscription = act.get("subscription")
    if entity_id.startswith(PSEUDONYM_PREFIX) and not subscription:
        raise ObjectionError(f"{entity_id} is a pseudonym: give the subscription it was delivered under")
    event = raised_event(act["objection"], library=library, entity_id=entity_id, field=field, reason=reason,
                         by=author, owner=owner, at=at, subscription=subscription, event_id=act.get("event_id"),
                         act=act.get("act"))
    if entity_id.startswith(PSEUDONYM_PREFIX) and real_entity_id is not None:
        event["real_entity_id"] = real_entity_id(step(None, event))
    return event


def _judge_answer(current: Objection | None, objection_id: str, author: str, act: Mapping[str, Any],
                  at: datetime) -> dict[str, Any]:
    kind = str(act["kind"])
    answer = {"objection.resolve": "resolved", "objection.reject": "rejected"}.get(kind)
    if answer is None:
        raise ObjectionError(f"{kind!r} is not an objection act")
    if current is None:
        raise ObjectionError(f"no objection {objection_id!r}")
    check_answer(current, author)
    if answer == "rejected" and not str(act.get("reason") or "").strip():
        raise ObjectionError("a rejection needs a reason the raiser can act on")
    if answer == "resolved" and not act.get("correction_event_id"):
        raise ObjectionError("a resolution names the published correction's event id")
    return answer_event(objection_id, answer, by=author, at=at, act=act.get("act"),
                        reason=str(act["reason"]).strip() if answer == "rejected" else None,
                        correction_event_id=act.get("correction_event_id"))


def raise_objection(settings: Settings, library: str, entity_id: str, field: str, reason: str, *,
                    subscription: str | None = None, event_id: str | None = None) -> Objection:
    """Flag `field` of an entity as wrong to its authoritative department, as the logged-in
    department (the broker lets it write only its own acts topic).

    `entity_id` is the id as delivered; when that is a pseudonym ("p-…", the key field is
    masked for the subscription's purpose) give the `subscription` it came under, and if
    you can the delivery's `event_id`: the authority processor finds the real entity through
    the sharing records, for the owner's eyes only."""
    department = acts.principal(settings)
    load_catalog(settings.catalog_dir).require_department(department)
    owner_of(library, field)
    if not entity_id or not entity_id.strip() or not reason or not reason.strip():
        raise ObjectionError("an objection needs the entity's id and a reason saying what is wrong")
    if entity_id.startswith(PSEUDONYM_PREFIX) and not subscription:
        raise ObjectionError(f"{entity_id} is a pseudonym: give the subscription it was delivered under "
                             "(--subscription) and, if you have it, the delivery's event id (--event-id)")
    act = acts.build("objection.raise", objection=new_id(), library=library, entity_id=entity_id.strip(),
                     field=field, reason=reason.strip(), subscription=subscription, event_id=event_id)
    return _outcome(settings, act)


def list_objections(settings: Settings, *, owner: str | None = None, raised_by: str | None = None,
                    state: str | None = None) -> list[Objection]:
    """The objections an owner has to answer, or a raiser's with their outcome; oldest first.
    A department reads only its own (``control.objections.<itself>``); governance all."""
    return select(_folded(settings).values(), owner=owner, raised_by=raised_by, state=state)


def _folded(settings: Settings) -> dict[str, Objection]:
    return fold(message.value for message in read_topic(settings, topic_for(settings)))


def find(settings: Settings, objection_id: str) -> Objection:
    found = _folded(settings)
    if objection_id not in found:
        raise ObjectionError(f"no objection {objection_id!r} among those {acts.principal(settings)} may read; "
                             "`govbus objections list` shows them")
    return found[objection_id]


def resolve(settings: Settings, objection_id: str, correction: Any) -> Objection:
    """Publish the corrected value as the logged-in owner, then record the resolution."""
    from govbus.consumers.corrections import publish_correction  # it needs Objection from here

    objection = find(settings, objection_id)
    check_answer(objection, acts.principal(settings))
    published = publish_correction(settings, objection, correction)
    return _outcome(settings, acts.build("objection.resolve", objection=objection_id, correction_event_id=published))


def reject(settings: Settings, objection_id: str, reason: str) -> Objection:
    """Answer, as the logged-in owner, that the value stands, saying why."""
    if not reason or not reason.strip():
        raise ObjectionError("a rejection needs a reason the raiser can act on")
    check_answer(find(settings, objection_id), acts.principal(settings))
    return _outcome(settings, acts.build("objection.reject", objection=objection_id, reason=reason.strip()))


def _outcome(settings: Settings, act: Mapping[str, Any]) -> Objection:
    """Send the act, wait until the record shows it; the objection, or why it was refused."""
    act_id = acts.send(settings, act)

    def recorded() -> Objection | None:
        values = [message.value for message in read_topic(settings, topic_for(settings))]
        for value in values:
            try:
                event = json.loads(value)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("act") == act_id:
                if event.get("step") == "refused":
                    raise ObjectionError(f"refused by the bus: {event.get('reason')}")
                return fold(values).get(act["objection"])
        return None

    return acts.wait_for(recorded, f"{act['kind']} {act['objection']}")


def topic_for(settings: Settings) -> str:
    """Where the logged-in principal reads objections: its own copy, or the whole record for
    governance, the authority processor and the admin."""
    names = TopicNames(settings.topic_prefix)
    who = acts.principal(settings)
    if settings.secured and who in load_catalog(settings.catalog_dir).departments:
        return names.objections_of(who)
    return names.bus(OBJECTIONS)


def _now() -> datetime:
    return datetime.now(timezone.utc)
