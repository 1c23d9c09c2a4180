"""Subscriptions: the one application channel (统一申请) through which a department asks for data.

A subscription is an event in the compacted topic `control.subscriptions`, keyed by its id;
each event carries the whole subscription with its history, so the latest value per key is
all the router and `govbus subscriptions list` need. A request is judged against the
catalog (library, owner, purposes) and the schema's field metadata (sharing class):

- an unknown department, library, purpose or field, a malformed filter, a past `until`,
  or any not-shared field (不予共享) → refused at once, naming the reason or the rule;
- only unconditional fields (无条件共享) → approved automatically by the bus;
- any conditional field (有条件共享), requested or used in a filter → waits for the field's
  authoritative department (its ``authority`` in the schema, 一数一源 — not the library's
  owner): every department authoritative for one of those fields approves, any of them may
  refuse with a reason. The authorities or the subscriber may revoke; `until` expires it.
- governance (the data bureau) may refuse or revoke any subscription on policy grounds, as
  itself; it never approves in a department's place.

Who may decide is one rule (`entitled`), used by the authority processor (which folds what
each principal wrote to its own ``control.acts.<principal>`` topic, so the broker, not the
message, says who decided) and by the operators' direct path alike. A decision by anyone
else is not applied but kept on the record with its reason (`Subscription.refusals`).

Row filters, a small language: `field=value` (equality) or `field=prefix..` (starts with),
several separated by commas or given as several filters, all of which must hold. Values are
compared as text; a null never matches; a list matches when one element does.
Example: `household_region=6101..` — registered in Xi'an (GB/T 2260 division 6101xx).
`region=6101..` means the library's own region field (its catalog's ``region_field``), so one
filter reads alike across libraries; it is stored resolved.

A request may ask for life events (``events``: a death, a deregistration; see ``lifeevents``)
with or without fields. An event is judged by the fields it reveals something of (its rule's
field, its date, its payload), like fields asked: a not-shared one refuses the request, a
conditional one waits for that field's authority.

Why one module of about 440 lines: a subscription's model, its states and who may decide it are one domain rule set, used by the authority, the router and the console.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from govbus.errors import GovbusError
from govbus.schemas.rules import CHINA_TIME
from govbus.security.credentials import GOVERNANCE

State = Literal["requested", "approved", "refused", "revoked", "expired"]
BUS = "govbus"  # the actor of automatic decisions
_NEXT: dict[str, frozenset[str]] = {
    "requested": frozenset({"approved", "refused", "revoked"}),
    "approved": frozenset({"revoked", "expired"}),
}


class SubscriptionError(GovbusError, ValueError):
    """A transition that is not allowed, by whom or from which state; the message says why."""


@dataclass(frozen=True, slots=True)
class RowFilter:
    field: str
    value: str
    prefix: bool

    def matches(self, data: Mapping[str, Any]) -> bool:
        value = data.get(self.field)
        if value is None:
            return False
        if isinstance(value, list):
            return any(self._matches(item) for item in value if item is not None)
        return self._matches(value)

    def _matches(self, value: Any) -> bool:
        text = value if isinstance(value, str) else str(value)
        return text.startswith(self.value) if self.prefix else text == self.value

    def __str__(self) -> str:
        return f"{self.field}={self.value}{'..' if self.prefix else ''}"


def filter_text(value: Any) -> str | list[str | None] | None:
    """A value as a row filter reads it (text; a list element by element), so that it can
    travel as JSON and match as the value itself would."""
    if value is None:
        return None
    if isinstance(value, list):
        return [None if item is None else (item if isinstance(item, str) else str(item)) for item in value]
    return value if isinstance(value, str) else str(value)


def parse_filters(texts: str | Iterable[str] | None) -> tuple[RowFilter, ...]:
    """`"a=1,b=61.."` or `["a=1", "b=61.."]` → filters; SubscriptionError on bad syntax."""
    if texts is None:
        return ()
    parts = [texts] if isinstance(texts, str) else list(texts)
    filters = []
    for condition in (piece.strip() for text in parts for piece in text.split(",")):
        field, equals, value = condition.partition("=")
        prefix = value.endswith("..")
        value = value[:-2] if prefix else value
        if not equals or not field.strip() or not value:
            raise SubscriptionError(f"filter {condition!r}: write field=value or field=prefix..")
        filters.append(RowFilter(field.strip(), value, prefix))
    return tuple(filters)


class Transition(BaseModel):
    """One step of a subscription's life: who moved it to which state, when, and why; with
    several authorities, each one's approval is a step and the last one approves."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    state: State
    by: str
    at: AwareDatetime
    reason: str | None = None
    act: str | None = None  # the act (in control.acts.<by>) this step was folded from
    via: str | None = None  # "admin" when the operators' super user wrote it for `by`


class Refusal(BaseModel):
    """A decision that was not applied because its author had no right to it: on the record."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    act: str | None = None
    by: str
    wanted: str
    at: AwareDatetime
    reason: str


class SubscriptionRequest(BaseModel):
    """What a department asks for (the form of `govbus subscriptions request`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    department: str
    library: str
    fields: tuple[str, ...] = ()
    purpose: str
    filters: tuple[str, ...] = ()
    until: date | None = None
    events: tuple[str, ...] = ()  # life events of the library (its catalog's ``life_events``)

    @model_validator(mode="after")
    def _asks_for_something(self) -> SubscriptionRequest:
        if not self.fields and not self.events:
            raise ValueError("a request asks for fields, life events, or both")
        return self


class Subscription(SubscriptionRequest):
    """A request with its decision history: the value of one `control.subscriptions` event."""

    format: Literal[1] = 1
    id: str
    owner: str  # the library's owner (catalog); decisions belong to `authorities`
    authorities: tuple[str, ...] = ()  # the departments authoritative for the conditional fields asked
    state: State
    history: tuple[Transition, ...] = Field(min_length=1)
    refusals: tuple[Refusal, ...] = ()

    @property
    def decision(self) -> Transition:
        return self.history[-1]

    @property
    def approved_by(self) -> frozenset[str]:
        return frozenset(step.by for step in self.history if step.state == "approved")

    @property
    def awaiting(self) -> tuple[str, ...]:
        """The authorities whose approval a pending request still needs."""
        if self.state != "requested":
            return ()
        return tuple(authority for authority in self.authorities if authority not in self.approved_by)

    def acts(self) -> frozenset[str]:
        """Every act already folded into this subscription (applied or refused)."""
        return frozenset(step.act for step in (*self.history, *self.refusals) if step.act)

    @property
    def requested_at(self) -> datetime:
        return self.history[0].at

    @property
    def automatic(self) -> bool:
        """Approved by the bus without the owner (only unconditional fields were asked)."""
        return any(step.state == "approved" and step.by == BUS for step in self.history)

    @property
    def expires_at(self) -> datetime | None:
        """The first instant after `until` (inclusive, China time)."""
        if self.until is None:
            return None
        return datetime.combine(self.until + timedelta(days=1), time.min, CHINA_TIME)

    def state_at(self, now: datetime) -> str:
        """The state as of `now`: an approval past its `until` reads as expired."""
        if self.state == "approved" and self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return self.state

    def active_at(self, now: datetime) -> bool:
        return self.state_at(now) == "approved"


def new_id() -> str:
    return f"sub-{uuid.uuid4().hex[:12]}"


def evaluate(request: SubscriptionRequest, catalog: Any, registry: Any, at: datetime,
             subscription_id: str | None = None) -> Subscription:
    """Judge a request against the catalog and the schema: refused, auto-approved or pending."""
    return judge(request, catalog, registry, at, subscription_id)


def judge(request: SubscriptionRequest, catalog: Any, registry: Any, at: datetime,
          subscription_id: str | None = None, *, author: str | None = None, act: str | None = None,
          via: str | None = None) -> Subscription:
    """`evaluate`, for a request written by `author` (None: taken as the department's own):
    a request in another department's name is refused, naming both."""
    library = catalog.libraries.get(request.library)
    owner = library.owner if library is not None else ""
    problems, conditional = _problems(request, catalog, registry, at)
    if author is not None and author != request.department:
        problems.insert(0, f"{author} wrote a request in the name of {request.department}: a department "
                           "requests data only as itself")
    authorities = field_authorities(request, registry, conditional)
    if problems:
        state, by, reason = "refused", BUS, "; ".join(problems)
    elif conditional:
        state, by, reason = "requested", request.department, (
            f"conditional fields {', '.join(conditional)} need the approval of {' and '.join(authorities)}, "
            "their authoritative department" + ("s" if len(authorities) > 1 else ""))
    else:
        state, by, reason = "approved", BUS, "only unconditional fields (无条件共享)"
    history = [Transition(state="requested", by=author or request.department, at=at,
                          reason=reason if state == "requested" else None, act=act, via=via)]
    if state != "requested":
        history.append(Transition(state=state, by=by, at=at, reason=reason))
    region_field = library.region_field if library is not None else None
    filters = resolve_region(request.filters, region_field)
    return Subscription(**{**request.model_dump(), "filters": filters}, id=subscription_id or new_id(),
                        owner=owner, authorities=authorities if not problems else (), state=state,
                        history=tuple(history))


def field_authorities(request: SubscriptionRequest, registry: Any, conditional: Iterable[str]) -> tuple[str, ...]:
    """The departments authoritative (一数一源, the schema's ``authority``) for the conditional
    fields asked: they, and only they, approve."""
    if request.library not in registry.libraries():
        return ()
    policies = registry.policy(request.library)
    return tuple(dict.fromkeys(policies[name].authority for name in conditional if name in policies))


def resolve_region(filters: tuple[str, ...], region_field: str | None) -> tuple[str, ...]:
    """A subscription's filters with ``region=…`` written as its library's own region field
    (``household_region`` in population, ``region`` in legal entities): one notion of region
    across libraries. Without a region field the filter stays as written (and is refused as
    an unknown field)."""
    if not region_field:
        return filters
    resolved = []
    for text in filters:
        parts = [piece.strip() for piece in text.split(",")]
        resolved.append(",".join(region_field + piece[len("region"):] if piece.startswith("region=") else piece
                                 for piece in parts))
    return tuple(resolved)


def _problems(request: SubscriptionRequest, catalog: Any, registry: Any,
              at: datetime) -> tuple[list[str], list[str]]:
    """(reasons to refuse, conditional fields and filter fields needing the owner)."""
    problems = []
    if request.department not in catalog.departments:
        problems.append(f"unknown department {request.department!r}")
    if request.purpose not in catalog.purposes:
        problems.append(f"unknown purpose {request.purpose!r}; declare one of {', '.join(catalog.purposes)}")
    if request.until is not None and request.until < at.astimezone(CHINA_TIME).date():
        problems.append(f"until {request.until} is in the past")
    if request.library not in catalog.libraries or request.library not in registry.libraries():
        known = sorted(set(catalog.libraries) & set(registry.libraries()))
        return problems + [f"unknown library {request.library!r}; known: {', '.join(known)}"], []
    policies = registry.policy(request.library)
    library = catalog.libraries[request.library]
    try:
        filter_fields = [row.field for row in parse_filters(resolve_region(request.filters, library.region_field))]
    except SubscriptionError as error:
        problems.append(str(error))
        filter_fields = []
    unknown_events = [name for name in request.events if name not in library.life_events]
    if unknown_events:
        problems.append(f"unknown life event(s) {', '.join(unknown_events)} of {request.library}; known: "
                        f"{', '.join(library.life_events) or 'none'}")
    event_fields = [name for event in request.events if event in library.life_events
                    for name in library.life_events[event].fields()]
    asked = list(dict.fromkeys([*request.fields, *event_fields, *filter_fields]))
    unknown = [name for name in asked if name not in policies]
    if unknown:
        problems.append(f"unknown field(s) {', '.join(unknown)} in library {request.library}; "
                        f"known: {', '.join(policies)}")
    for name in (name for name in asked if name in policies and policies[name].sharing == "not_shared"):
        problems.append(f"field {name} is not shared (不予共享): the {request.library} schema classes it "
                        f"sharing=not_shared, so it never leaves {policies[name].authority}")
    conditional = [name for name in asked if name in policies and policies[name].sharing == "conditional"]
    return problems, conditional


Action = Literal["approved", "refused", "revoked"]


def entitled(subscription: Subscription, action: Action, by: str) -> str | None:
    """Why `by` may not take `action` on `subscription`, or None when it may: THE rule of who
    decides. Approve: a pending authority of the conditional fields asked. Refuse: one of
    those authorities, or governance (policy-level). Revoke: an authority, the subscriber
    itself, or governance."""
    authorities = " and ".join(subscription.authorities) or "no department (only unconditional fields)"
    if action == "approved":
        if by in subscription.awaiting:
            return None
        if by in subscription.approved_by:
            return f"{by} has already approved {subscription.id}"
        return (f"{by} is not the authority of the conditional fields of {subscription.id}; only {authorities} "
                f"may approve it")
    allowed = {*subscription.authorities, GOVERNANCE} | ({subscription.department} if action == "revoked" else set())
    if by in allowed:
        return None
    also = f", {subscription.department}" if action == "revoked" else ""
    return (f"{by} may not {action[:-1]} {subscription.id}: only {authorities}{also} or {GOVERNANCE} may; "
            f"{by} is not the authority of its fields")


def _move(subscription: Subscription, state: str, by: str, at: datetime, reason: str | None,
          act: str | None = None, via: str | None = None) -> Subscription:
    if state not in _NEXT.get(subscription.state, frozenset()):
        raise SubscriptionError(f"subscription {subscription.id} is {subscription.state}; "
                                f"it cannot become {state}")
    step = Transition(state=state, by=by, at=at, reason=reason, act=act, via=via)
    return subscription.model_copy(update={"state": state, "history": (*subscription.history, step)})


def _entitled(subscription: Subscription, action: Action, by: str) -> None:
    why = entitled(subscription, action, by)
    _require(why is None, why or "")


def approve(subscription: Subscription, by: str, at: datetime, reason: str | None = None, *,
            act: str | None = None, via: str | None = None) -> Subscription:
    """An authority of the conditional fields grants a pending request; the last one's
    approval makes it approved."""
    _require(subscription.state == "requested", f"subscription {subscription.id} is {subscription.state}; "
                                                "it cannot become approved")
    _entitled(subscription, "approved", by)
    _require(subscription.expires_at is None or at < subscription.expires_at,
             f"{subscription.id} asks for data until {subscription.until}, which has passed")
    moved = _move(subscription, "approved", by, at, reason, act, via)
    if set(subscription.awaiting) - {by}:  # others still to approve: recorded, still requested
        return moved.model_copy(update={"state": "requested"})
    return moved


def refuse(subscription: Subscription, by: str, at: datetime, reason: str, *, act: str | None = None,
           via: str | None = None) -> Subscription:
    """An authority (or governance, on policy) turns a pending request down; the reason is
    required and recorded."""
    _require(bool(reason and reason.strip()), "a refusal needs a reason")
    _entitled(subscription, "refused", by)
    return _move(subscription, "refused", by, at, reason, act, via)


def revoke(subscription: Subscription, by: str, at: datetime, reason: str | None = None, *,
           act: str | None = None, via: str | None = None) -> Subscription:
    """An authority, governance or the subscriber itself withdraws it; at once."""
    _entitled(subscription, "revoked", by)
    return _move(subscription, "revoked", by, at, reason, act, via)


DECISIONS = {"approved": approve, "refused": refuse, "revoked": revoke}


def decide(subscription: Subscription, action: str, by: str, at: datetime, reason: str | None = None, *,
           act: str | None = None, via: str | None = None) -> Subscription:
    """Apply a decision, or keep it on the record as refused with the reason (never raises for
    a decision that is not allowed: the fold goes on for everyone else)."""
    try:
        if action not in DECISIONS:
            raise SubscriptionError(f"{action!r} is not a decision; one of {', '.join(DECISIONS)}")
        return DECISIONS[action](subscription, by, at, reason, act=act, via=via)  # type: ignore[arg-type]
    except SubscriptionError as why:
        return refused(subscription, by, action, at, str(why), act=act)


def refused(subscription: Subscription, by: str, wanted: str, at: datetime, reason: str, *,
            act: str | None = None) -> Subscription:
    """The subscription with an act that was not applied kept on its record, with the reason."""
    refusal = Refusal(act=act, by=by, wanted=wanted, at=at, reason=reason)
    return subscription.model_copy(update={"refusals": (*subscription.refusals, refusal)})


def expire(subscription: Subscription, at: datetime) -> Subscription:
    """Record that the `until` date has passed (the router already stops at that instant)."""
    _require(subscription.state_at(at) == "expired", f"{subscription.id} has not expired at {at}")
    return _move(subscription, "expired", BUS, at, f"valid until {subscription.until}")


def describe(subscription: Subscription, now: datetime) -> dict[str, Any]:
    """One row of `govbus subscriptions list`: the state as of `now`, who decided, when, why."""
    decision = subscription.decision
    return {"id": subscription.id, "department": subscription.department, "library": subscription.library,
            "fields": list(subscription.fields), "events": list(subscription.events), "purpose": subscription.purpose,
            "filters": list(subscription.filters), "until": subscription.until,
            "state": subscription.state_at(now), "decided_by": decision.by, "decided_at": decision.at,
            "reason": decision.reason, "authorities": list(subscription.authorities),
            "awaiting": list(subscription.awaiting),
            "refused_decisions": [refusal.model_dump(mode="json") for refusal in subscription.refusals]}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SubscriptionError(message)


def key(subscription: Subscription) -> bytes:
    return subscription.id.encode("utf-8")


def to_json(subscription: Subscription) -> bytes:
    """The event value for `control.subscriptions`."""
    return subscription.model_dump_json().encode("utf-8")


def from_json(value: bytes | str) -> Subscription:
    return Subscription.model_validate_json(value)


def fold(events: Iterable[tuple[bytes, bytes | None]]) -> dict[str, Subscription]:
    """The current subscriptions from (key, value) events in topic order; a null value
    (tombstone) removes its key."""
    current: dict[str, Subscription] = {}
    for event_key, value in events:
        if value is None:
            current.pop(event_key.decode("utf-8"), None)
        else:
            subscription = from_json(value)
            current[subscription.id] = subscription
    return current
