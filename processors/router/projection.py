"""The hot path of the router: one change on `shared.<library>` → what one subscriber may see.

A `Projector` is built once per subscription (when it is approved, or when the router
starts) and then called per change with plain dicts and precomputed lookups only. It
enforces the sharing rules again, whatever the subscription says (defence in depth):

- only approved subscriptions deliver, and only before their `until`;
- a field leaves only if the subscription lists it, the schema knows it, it is not
  `not_shared` (不予共享), and — when conditional (有条件共享) — the owner approved it (an
  automatic approval covers unconditional fields only);
- a field whose schema metadata asks for a mask under the subscription's purpose is masked
  (脱敏) with the rule of that name in `govbus.schemas.masks.MASKS` (the table the registry validates schemas against);
- rows are delivered only when every row filter holds on the current image; a filter on a
  field the subscriber may not see disables the projector (it would leak by selection);
- the entity id is the key field's value: when that field is masked for the purpose (or
  not shared) the delivered `entity_id` is a keyed pseudonym, stable per subscription, so
  the subscriber can keep a current view without learning the identifier.

A live UPSERT that touches none of the delivered or filter fields is not delivered; a
SNAPSHOT, a backfill or a DELETE always is (when the row matches). A live change that takes
the row out of the filter (it matched on the image before the change: the gate sends the
changed fields' previous values) is delivered as a DELETE: the row leaves the subscriber's
view with it; one that never matched is not delivered at all. A DELETE without its
last image cannot be matched against a row filter, so it is not delivered under a filter.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from govbus.errors import GovbusError

from govbus.schemas.masks import MASKS, Mask
from govbus.processors.governance.subscriptions import Subscription, parse_filters

# The envelope keys a delivery carries; anything else a change may hold stays behind.
ENVELOPE = ("event_id", "entity_id", "version", "op", "backfill", "valid_from", "recorded_at",
            "source_department")
Delivered = dict[str, Any]


PSEUDONYM_PREFIX = "p-"
PSEUDONYM_DIGITS = 32  # hex digits of the HMAC after the prefix: every pseudonym has the same length


def keyed_hmac(key: bytes, prefix: bytes) -> Any:
    """An HMAC-SHA256 keyed with `key` and fed `prefix`, to be copied per message. CPython's
    OpenSSL object where there is one: its copy, update and digest run in C, where the
    standard library's wrapper added about half a microsecond to each pseudonym, once per
    pseudonymous delivery (bench: fan_out)."""
    try:
        from _hashlib import hmac_new
    except ImportError:  # a Python without OpenSSL's HMAC: the same values, a little slower
        keyed = hmac.new(key, prefix, digestmod=hashlib.sha256)
    else:
        keyed = hmac_new(key, prefix, digestmod="sha256")
    return keyed


def pseudonym_digits(keyed: Any, entity_id: bytes) -> bytes:
    """The hex digits of the pseudonym of `entity_id` for the subscription `keyed` belongs to
    (``Projector.pseudonym_hmac``): what follows ``PSEUDONYM_PREFIX``, and the delivery's key."""
    digest = keyed.copy()
    digest.update(entity_id)
    return digest.hexdigest()[:PSEUDONYM_DIGITS].encode()


def pseudonym_key(pseudonym: str) -> bytes:
    """The Kafka key of a delivery to a subscription that knows the entity by `pseudonym`: the
    pseudonym's own digest — already a keyed HMAC, unique per subscription and entity, so it
    reveals nothing the value does not — rather than a second HMAC of it (a delivery's key was
    a third of the router's cost per pseudonymous subscription; bench: fan_out)."""
    return pseudonym[len(PSEUDONYM_PREFIX):].encode()


class ProjectionError(GovbusError, ValueError):
    """A projector cannot be built safely; the message says what to configure."""


class Projector:
    """What one subscription receives; `project` is called per change."""

    __slots__ = ("subscription_id", "department", "library", "purpose", "fields", "image_header", "masked",
                 "_active", "_expires_at", "_plan", "_filters", "_triggers", "_field_set",
                 "_pseudonym_hmac", "projection")

    def __init__(self, subscription: Subscription, policies: Mapping[str, Any], entity_key: str,
                 pseudonym_key: bytes | None = None, masks: Mapping[str, Mask] = MASKS) -> None:
        self.subscription_id = subscription.id
        self.department = subscription.department
        self.library = subscription.library
        self.purpose = subscription.purpose
        automatic = subscription.automatic

        def allowed(name: str) -> bool:
            policy = policies.get(name)
            return policy is not None and (policy.sharing == "unconditional" or (
                policy.sharing == "conditional" and not automatic))

        plan = []
        for name in dict.fromkeys(subscription.fields):
            if allowed(name):
                rule = policies[name].mask_for_purpose(self.purpose)
                if rule is not None and rule not in masks:
                    raise ProjectionError(f"{self.library}.{name}: unknown mask rule {rule!r}")
                plan.append((name, masks[rule] if rule is not None else None))
        self._plan: tuple[tuple[str, Mask | None], ...] = tuple(plan)
        self.fields = tuple(name for name, _ in plan)
        self.image_header = ",".join(self.fields)  # sent with every delivery: see deliveries.to_delivery
        self.masked = tuple(name for name, rule in plan if rule is not None)
        self._field_set = frozenset(self.fields)
        self._filters = parse_filters(subscription.filters)
        self._triggers = self._field_set | {row.field for row in self._filters}
        self._active = subscription.state == "approved" and bool(plan) and all(
            allowed(row.field) for row in self._filters)
        self._expires_at = subscription.expires_at
        key_policy = policies.get(entity_key)
        hide_key = key_policy is None or key_policy.sharing == "not_shared" or (
            key_policy.mask_for_purpose(self.purpose) is not None)
        if hide_key and self._active and not pseudonym_key:
            raise ProjectionError(
                f"subscription {subscription.id}: the key field {entity_key} of {self.library} is "
                f"masked for purpose {self.purpose}; give the router a pseudonym key so that "
                "delivered entity ids are pseudonyms")
        # Keyed with the secret and already fed this subscription's id: a pseudonym is then one
        # copy, one update with the entity id and one digest (HMAC is incremental, so the value
        # is the HMAC of "<subscription>\0<entity>" as before).
        self._pseudonym_hmac = (keyed_hmac(pseudonym_key, f"{subscription.id}\x00".encode("utf-8"))
                                if hide_key and pseudonym_key else None)
        # What decides `project`'s result but for the entity id: subscriptions equal in it see
        # the same delivery of a change (the router projects and encodes it once for all of them).
        self.projection = (self.library, self._plan, self._filters, self._active, self._expires_at,
                           self._pseudonym_hmac is not None)

    @classmethod
    def for_subscription(cls, subscription: Subscription, registry: Any,
                         pseudonym_key: bytes | None = None) -> Projector:
        """A projector from the latest schema of the subscription's library."""
        return cls(subscription, registry.policy(subscription.library),
                   registry.entity_key(subscription.library), pseudonym_key)

    def _left(self, change: Mapping[str, Any], data: Mapping[str, Any] | None) -> Delivered | None:
        """A DELETE when this live change takes the entity out of the filter (it held on the
        image before: the changed fields' previous values, from the gate), so the subscriber's
        row goes with it; None when it never held — the subscriber learns nothing of it."""
        before = change.get("before")
        if not before or not data or change.get("backfill") or change.get("op") == "DELETE":
            return None
        image = {**data, **before}
        if not all(row.matches(image) for row in self._filters):
            return None
        delivered = {key: change.get(key) for key in ENVELOPE}
        delivered.update(backfill=False, op="DELETE", data=None, fields_set=[])
        if self._pseudonym_hmac is not None:
            delivered["entity_id"] = self.pseudonym(str(delivered["entity_id"]))
        return delivered

    def active_at(self, now: datetime) -> bool:
        return self._active and (self._expires_at is None or now < self._expires_at)

    @property
    def hides_key(self) -> bool:
        """Whether this subscription knows entities by a pseudonym of its own."""
        return self._pseudonym_hmac is not None

    def pseudonym(self, entity_id: str) -> str:
        """The id this subscriber sees for `entity_id` (itself unless the key is hidden)."""
        if self._pseudonym_hmac is None:
            return entity_id
        return PSEUDONYM_PREFIX + pseudonym_digits(self._pseudonym_hmac, entity_id.encode("utf-8")).decode()

    @property
    def pseudonym_hmac(self) -> Any:
        """The keyed HMAC `pseudonym_digits` copies (None when the key is not hidden)."""
        return self._pseudonym_hmac

    def project(self, change: Mapping[str, Any],
                now: datetime | None = None) -> tuple[Delivered | None, tuple[str, ...]]:
        """(the delivery, the masked field names), or (None, ()) when nothing is delivered.

        `now` is the delivery time checked against `until` (the clock when not given)."""
        if not self._active:
            return None, ()
        if self._expires_at is not None and (now or datetime.now(timezone.utc)) >= self._expires_at:
            return None, ()
        data = change.get("data")
        if self._filters and (not data or not all(row.matches(data) for row in self._filters)):
            return self._left(change, data), ()
        op = change.get("op")
        fields_set = change.get("fields_set")
        live_upsert = op not in ("DELETE", "SNAPSHOT") and not change.get("backfill")
        if live_upsert and fields_set is not None and self._triggers.isdisjoint(fields_set):
            return None, ()
        delivered = {key: change.get(key) for key in ENVELOPE}
        delivered["backfill"] = bool(delivered["backfill"])
        if self._pseudonym_hmac is not None:
            delivered["entity_id"] = self.pseudonym(str(delivered["entity_id"]))
        if op == "DELETE":
            delivered["data"], delivered["fields_set"] = None, []
            return delivered, ()
        image = data or {}
        delivered["data"] = {name: (image.get(name) if rule is None else rule(image.get(name)))
                             for name, rule in self._plan}
        delivered["fields_set"] = (list(self.fields) if fields_set is None
                                   else [name for name in fields_set if name in self._field_set])
        return delivered, self.masked
