"""Subscriptions: the one application channel (统一申请) through which a department asks for data.

A subscription is an event in the compacted topic `control.subscriptions`, keyed by its id;
each event carries the whole subscription with its history, so the latest value per key is
all the router and `govbus subscriptions list` need. A request is judged against the
catalog (library, owner, purposes) and the schema's field metadata (sharing class):

- an unknown department, library, purpose or field, a malformed filter, a past `until`,
  or any not-shared field (不予共享) → refused at once, naming the reason or the rule;
- only unconditional fields (无条件共享) → approved automatically by the bus;
- any conditional field (有条件共享), requested or used in a filter → waits for the library
  owner, who approves or refuses with a reason. Either side may revoke; `until` expires it.

Row filters, a small language: `field=value` (equality) or `field=prefix..` (starts with),
several separated by commas or given as several filters, all of which must hold. Values are
compared as text; a null never matches; a list matches when one element does.
Example: `household_region=6101..` — registered in Xi'an (GB/T 2260 division 6101xx).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from govbus.errors import GovbusError
from govbus.schemas.rules import CHINA_TIME

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
    """One step of a subscription's life: who moved it to which state, when, and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    state: State
    by: str
    at: AwareDatetime
    reason: str | None = None


class SubscriptionRequest(BaseModel):
    """What a department asks for (the form of `govbus subscriptions request`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    department: str
    library: str
    fields: tuple[str, ...] = Field(min_length=1)
    purpose: str
    filters: tuple[str, ...] = ()
    until: date | None = None


class Subscription(SubscriptionRequest):
    """A request with its decision history: the value of one `control.subscriptions` event."""

    format: Literal[1] = 1
    id: str
    owner: str  # the department whose approval conditional fields need
    state: State
    history: tuple[Transition, ...] = Field(min_length=1)

    @property
    def decision(self) -> Transition:
        return self.history[-1]

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


def evaluate(request: SubscriptionRequest, catalog: Any, registry: Any, at: datetime,
             subscription_id: str | None = None) -> Subscription:
    """Judge a request against the catalog and the schema: refused, auto-approved or pending."""
    library = catalog.libraries.get(request.library)
    owner = library.owner if library is not None else ""
    problems, conditional = _problems(request, catalog, registry, at)
    if problems:
        state, by, reason = "refused", BUS, "; ".join(problems)
    elif conditional:
        state, by, reason = "requested", request.department, (
            f"conditional fields {', '.join(conditional)} need the approval of {owner}")
    else:
        state, by, reason = "approved", BUS, "only unconditional fields (无条件共享)"
    history = [Transition(state="requested", by=request.department, at=at,
                          reason=reason if state == "requested" else None)]
    if state != "requested":
        history.append(Transition(state=state, by=by, at=at, reason=reason))
    return Subscription(**request.model_dump(), id=subscription_id or f"sub-{uuid.uuid4().hex[:12]}",
                        owner=owner, state=state, history=tuple(history))


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
    try:
        filter_fields = [row.field for row in parse_filters(request.filters)]
    except SubscriptionError as error:
        problems.append(str(error))
        filter_fields = []
    asked = list(dict.fromkeys([*request.fields, *filter_fields]))
    unknown = [name for name in asked if name not in policies]
    if unknown:
        problems.append(f"unknown field(s) {', '.join(unknown)} in library {request.library}; "
                        f"known: {', '.join(policies)}")
    for name in (name for name in asked if name in policies and policies[name].sharing == "not_shared"):
        problems.append(f"field {name} is not shared (不予共享): the {request.library} schema classes it "
                        f"sharing=not_shared, so it never leaves {policies[name].authority}")
    conditional = [name for name in asked if name in policies and policies[name].sharing == "conditional"]
    return problems, conditional


def _move(subscription: Subscription, state: str, by: str, at: datetime,
          reason: str | None) -> Subscription:
    if state not in _NEXT.get(subscription.state, frozenset()):
        raise SubscriptionError(f"subscription {subscription.id} is {subscription.state}; "
                                f"it cannot become {state}")
    step = Transition(state=state, by=by, at=at, reason=reason)
    return subscription.model_copy(update={"state": state, "history": (*subscription.history, step)})


def approve(subscription: Subscription, by: str, at: datetime, reason: str | None = None) -> Subscription:
    """The owner grants a pending request."""
    _require(by == subscription.owner, f"only the owner {subscription.owner} may approve {subscription.id}")
    _require(subscription.expires_at is None or at < subscription.expires_at,
             f"{subscription.id} asks for data until {subscription.until}, which has passed")
    return _move(subscription, "approved", by, at, reason)


def refuse(subscription: Subscription, by: str, at: datetime, reason: str) -> Subscription:
    """The owner turns a pending request down; the reason is required and recorded."""
    _require(by == subscription.owner, f"only the owner {subscription.owner} may refuse {subscription.id}")
    _require(bool(reason and reason.strip()), "a refusal needs a reason")
    return _move(subscription, "refused", by, at, reason)


def revoke(subscription: Subscription, by: str, at: datetime, reason: str | None = None) -> Subscription:
    """The owner withdraws the grant, or the subscriber withdraws its request; at once."""
    _require(by in (subscription.owner, subscription.department),
             f"only {subscription.owner} or {subscription.department} may revoke {subscription.id}")
    return _move(subscription, "revoked", by, at, reason)


def expire(subscription: Subscription, at: datetime) -> Subscription:
    """Record that the `until` date has passed (the router already stops at that instant)."""
    _require(subscription.state_at(at) == "expired", f"{subscription.id} has not expired at {at}")
    return _move(subscription, "expired", BUS, at, f"valid until {subscription.until}")


def describe(subscription: Subscription, now: datetime) -> dict[str, Any]:
    """One row of `govbus subscriptions list`: the state as of `now`, who decided, when, why."""
    decision = subscription.decision
    return {"id": subscription.id, "department": subscription.department, "library": subscription.library,
            "fields": list(subscription.fields), "purpose": subscription.purpose,
            "filters": list(subscription.filters), "until": subscription.until,
            "state": subscription.state_at(now), "decided_by": decision.by, "decided_at": decision.at,
            "reason": decision.reason}


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
