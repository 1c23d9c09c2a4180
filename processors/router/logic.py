"""The router: each authoritative change goes to exactly the departments entitled to it.

For every change on ``shared.<library>`` and every active subscription of that library, the
subscription's ``Projector`` decides what the department may see (approved fields only,
masked where the schema asks, never a not-shared field). Each delivery goes to
``deliver.<department>.<library>`` with its subscription and purpose in the headers. Each
routed change writes one sharing record, listing its deliveries, to ``audit.deliveries``,
hash-chained per (library, partition): the router instance that owns a shared partition is
the only writer of that chain, and keeps the chain's head in ``audit.heads.<library>`` (a
``PartitionStore``, restored on assignment).

Subscriptions are read by every instance from ``control.subscriptions`` (``SubscriptionBook``)
so that a revocation stops deliveries at once everywhere. A new approval makes the delivery
topic, and each shared partition's owner then delivers the current state of its partition
(``backfill``), marked as such, before it routes the partition's next change.

A shared change may name life events (``lifeevents``: the gate found them when it applied the
change). Each goes to the approved subscriptions that asked for it, its payload only, on the
same delivery topic, and is listed in the change's sharing record with the event's name.

Why one module of about 350 lines: routing one change (projection, life events, the sharing record, the headers) is the hot path; one module keeps its per-event work visible in one place.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from govbus import clients, compact_json
from govbus.processors.governance import audit
from govbus.processors import lifeevents
from govbus.processors.governance import subscriptions as rules
from govbus.processors.runtime.output import Output
from govbus.processors.lifeevents import EventProjector
from govbus.processors.router.projection import PSEUDONYM_DIGITS, PSEUDONYM_PREFIX, Projector, pseudonym_digits, pseudonym_key
from govbus.processors.governance.subscriptions import Subscription
from govbus.schemas.codec import Codec, around_entity_id, avro_string
from govbus.schemas.framing import (BACKFILL, EVENT_DATE, FILTER_BEFORE, IMAGE, LIFE_EVENT, LIFE_EVENTS, MASKED, PURPOSE, ROUTED_AT,
                                    SUBSCRIPTION, Headers, cloudevent_headers, entity_keyer, header_map,
                                    life_event_type, now_millis, schema_urn)
from govbus.settings import Settings
from govbus.topics import apply as topic_apply
from govbus.topics.catalog import Catalog
from govbus.topics.names import AUDIT, SUBSCRIPTIONS, TopicNames

log = logging.getLogger("govbus.router")
# Projectors whose static headers are kept: well above the subscriptions of a province's
# library (a few hundred bytes each). At 256 a library with 400 subscriptions rebuilt them
# for every delivery (bench: fan_out).
STATIC_HEADERS_KEPT = 50_000
WATCH_PATIENCE = 120.0  # seconds the subscription watcher may fail to read before the router stops routing
EMPTY: Mapping = MappingProxyType({})
# A pseudonym's Avro encoding before its digits (its length is fixed): the router writes the
# digits, which are also the delivery's key, after it.
PSEUDONYM_HEAD = avro_string(PSEUDONYM_PREFIX + "0" * PSEUDONYM_DIGITS)[:-PSEUDONYM_DIGITS]
# Per subscription of a group but its first: pseudonym HMAC, topic, fixed headers, department, subscription, purpose.
Member = tuple[Any, str, Headers, str, str, str]
Groups = tuple[tuple[tuple[Projector, ...], tuple[Member, ...]], ...]


class SubscriptionBook:
    """The active projectors per library, kept current from ``control.subscriptions``."""

    def __init__(self, settings: Settings, catalog: Catalog, codec: Codec) -> None:
        self.settings = settings
        self.catalog = catalog
        self.codec = codec
        self.names = TopicNames(settings.topic_prefix)
        self.pseudonym_key = settings.key_secret.encode()
        self.subscriptions: dict[str, Subscription] = {}
        self.by_library: dict[str, tuple[Projector, ...]] = {}
        self.events_by_library: dict[str, tuple[EventProjector, ...]] = {}
        self.ready = threading.Event()
        self._made_topics: set[str] = set()

    def projectors(self, library: str) -> tuple[Projector, ...]:
        return self.by_library.get(library, ())

    def event_projectors(self, library: str) -> tuple[EventProjector, ...]:
        return self.events_by_library.get(library, ())

    def apply(self, events: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Fold new subscription events in; make delivery topics before activating them."""
        current = dict(self.subscriptions)
        current.update(rules.fold(events))
        for subscription in current.values():
            if subscription.state == "approved":
                self._ensure_delivery_topic(subscription)
        by_library: dict[str, list[Projector]] = {}
        events: dict[str, list[EventProjector]] = {}
        for subscription in current.values():
            if subscription.state == "approved" and subscription.library in self.catalog.libraries:
                projector = Projector.for_subscription(subscription, self.codec.registry, self.pseudonym_key)
                by_library.setdefault(subscription.library, []).append(projector)
                if subscription.events:
                    events.setdefault(subscription.library, []).append(self._event_projector(subscription, projector))
        self.subscriptions = current
        self.by_library = {library: tuple(projectors) for library, projectors in by_library.items()}
        self.events_by_library = {library: tuple(projectors) for library, projectors in events.items()}

    def _event_projector(self, subscription: Subscription, projector: Projector) -> EventProjector:
        """The life events `subscription` receives; entity ids as its record deliveries have them."""
        library = self.catalog.library(subscription.library)
        return EventProjector(subscription, library.life_events, library.region_field,
                              self.codec.registry.policy(subscription.library), projector.pseudonym,
                              hides_key=projector.hides_key)

    def _ensure_delivery_topic(self, subscription: Subscription) -> None:
        name = self.names.deliver(subscription.department, subscription.library)
        if name in self._made_topics:
            return
        admin = clients.admin(self.settings)
        try:
            brokers = len(admin.describe_cluster()["brokers"])
            spec = self.catalog.delivery_topic(self.names, subscription.department, subscription.library)
            if topic_apply.ensure_topic(admin, spec, brokers, self.catalog.bus.min_insync_replicas):
                log.info("made delivery topic %s for %s", name, subscription.id)
        finally:
            admin.close()
        self._made_topics.add(name)

    def watch(self, stop: threading.Event) -> None:
        """Follow the subscriptions topic for ever (in a thread); ready once caught up.

        A failure to read (ACLs applied a moment ago and not yet in force on the broker, a
        broker away) is said and the follow resumes where it was, from the position after the
        last record applied — never from the start, which would briefly bring back states
        since overtaken (a revoked subscription, active again). Only reads that keep failing
        for ``WATCH_PATIENCE`` seconds stop the router (a dead watcher must not look alive)."""
        positions: dict[Any, int] = {}
        progress = {"at": time.monotonic()}
        while not stop.is_set():
            try:
                self._follow(stop, positions, progress)
                return
            except KafkaError as error:
                if time.monotonic() - progress["at"] > WATCH_PATIENCE:
                    log.exception("the subscription watcher failed for %.0f s; the router stops routing", WATCH_PATIENCE)
                    self.ready.clear()
                    raise
                log.warning("reading %s failed (%s); resuming where it was", self.names.bus(SUBSCRIPTIONS), error)
                stop.wait(1.0)
            except Exception:  # noqa: BLE001 - a dead watcher must not look alive
                log.exception("the subscription watcher failed; the router stops routing")
                self.ready.clear()
                raise

    def _follow(self, stop: threading.Event, positions: dict[Any, int], progress: dict[str, float]) -> None:
        consumer = clients.consumer(self.settings)
        try:
            name = self.names.bus(SUBSCRIPTIONS)
            partitions = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or [0])]
            consumer.assign(partitions)
            for partition in partitions:
                if partition in positions:
                    consumer.seek(partition, positions[partition])
                else:
                    consumer.seek_to_beginning(partition)
            ends = consumer.end_offsets(partitions)
            while not stop.is_set():
                batches = consumer.poll(timeout_ms=200)
                events = [(record.key, record.value) for records in batches.values() for record in records]
                if events:
                    self.apply(events)
                for partition in partitions:
                    positions[partition] = consumer.position(partition)
                progress["at"] = time.monotonic()
                if not self.ready.is_set() and all(positions[tp] >= ends[tp] for tp in partitions):
                    self.ready.set()
        finally:
            consumer.close()


class RouterLogic:
    """Routing of one library's changes, free of faust."""

    def __init__(self, library: str, settings: Settings, codec: Codec, book: SubscriptionBook) -> None:
        self.library = library
        self.codec = codec
        self.book = book
        self.names = TopicNames(settings.topic_prefix)
        self.secret = settings.key_secret.encode()
        self.audit_topic = self.names.bus(AUDIT)
        self.deliveries = 0
        self._static_headers: dict[Projector, tuple[str, Headers]] = {}  # per projector: its topic and fixed headers
        self.version = codec.registry.latest(library).version  # the schema version deliveries are written in
        self._dataschema = ("ce_dataschema", schema_urn(library, self.version).encode())
        self._groups: Groups = ()
        self._groups_of: object = None  # the projectors tuple `_groups` was made from
        self.grouping = True  # False: one projection per subscription (the bench's baseline)
        self._entity_key = entity_keyer(self.secret, library)

    def route(self, value: bytes, headers: Headers, partition: int, offset: int, timestamp_ms: int,
              head: str, covered: Mapping[str, Mapping[str, int]] = EMPTY,
              projectors: Iterable[Projector] | None = None) -> tuple[list[Output], str]:
        """The deliveries and the sharing record of one shared change; the chain's new head.
        `covered`: per subscription, the entity versions a backfill already delivered (a
        change not newer than those is not delivered again; see ``backfill``). `projectors`:
        the subscriptions to route with (the book's current ones when not given)."""
        _, record = self.codec.decode(value)
        found = header_map(headers)
        change = shared_change(record, found.get(BACKFILL) == b"true", found.get(FILTER_BEFORE))
        delivered_at = datetime.fromtimestamp(timestamp_ms / 1000, timezone.utc)
        kept = passed_on(headers)
        keys: dict[str, bytes] = {}
        outputs, shared = [], []
        for group, members in self._grouped(self.book.projectors(self.library) if projectors is None else projectors):
            due = group if not covered else [
                projector for projector in group
                if change["version"] > covered.get(projector.subscription_id, EMPTY).get(change["entity_id"], 0)]
            if due:
                for output, part in self.deliver_group(due, change, record, kept, delivered_at, keys,
                                                       members if due is group else None):
                    outputs.append(output)
                    shared.append(part)
        if not change["backfill"]:
            for occurred in lifeevents.from_header(found.get(LIFE_EVENTS)):
                for events in self.book.event_projectors(self.library):
                    made = self.deliver_event(events, occurred, change, record, kept, delivered_at, keys)
                    if made is not None:
                        outputs.append(made[0])
                        shared.append(made[1])
        if not shared:
            return outputs, head
        chain = audit.AuditChain(f"{self.library}/{partition}", head)
        outputs.append(self.sharing_record(chain, change, shared, delivered_at, offset))
        return outputs, chain.head

    def _grouped(self, projectors: tuple[Projector, ...] | Iterable[Projector]) -> Groups:
        """The projectors in groups that see the same delivery (``Projector.projection``), in
        their order, each with its ``_members``; remembered for the book's current tuple (it
        changes with the subscriptions)."""
        if self._groups_of is not projectors:
            groups: dict[Any, list[Projector]] = {}
            for projector in projectors:
                groups.setdefault(projector.projection if self.grouping else id(projector), []).append(projector)
            self._groups = tuple((tuple(group), self._members(group)) for group in groups.values())
            self._groups_of = projectors
        return self._groups

    def deliver_group(self, group: Sequence[Projector], change: dict[str, Any], record: dict[str, Any], kept: Headers,
                      delivered_at: datetime, keys: dict[str, bytes],
                      members: Sequence[Member] | None = None) -> list[tuple[Output, audit.Record]]:
        """The deliveries of `change` to subscriptions that see the same projection: projected
        and encoded once, then only the entity id changed for each subscription that knows the
        entity by a pseudonym of its own (``codec.around_entity_id``). Why: with many
        subscriptions sharing a few projections the router's cost per change grows with the
        projections, not with the subscriptions (bench: fan_out). `members`: ``_members`` of
        the group, when already made."""
        delivered, masked = group[0].project(change, delivered_at)
        if delivered is None:
            return []
        value = self._encoded(delivered, record)
        front = self._front(kept, delivered, masked)
        first = self._delivery(group[0], delivered["entity_id"], value, delivered, masked, front, keys)
        deliveries = [first]
        if len(group) == 1:
            return deliveries
        fields, masked_names = first[1]["fields"], first[1]["masked"]
        new = tuple.__new__  # an Output without the named tuple's Python-level constructor
        # The hot loop of a wide fan-out: nothing here but what differs per subscription. A
        # group shares its projection, so either every member hides the key or none does.
        if group[0].hides_key:
            entity = str(change["entity_id"]).encode()
            before, after = around_entity_id(value)
            before += PSEUDONYM_HEAD
            for keyed, topic, headers, department, subscription, purpose in members or self._members(group):
                key = pseudonym_digits(keyed, entity)
                deliveries.append((new(Output, (topic, key, before + key + after, [*front, ("ce_subject", key), *headers])),
                                   {"department": department, "subscription": subscription, "purpose": purpose,
                                    "fields": fields, "masked": masked_names}))
        else:
            key = first[0].key
            keyed_front = [*front, ("ce_subject", key)]
            for _, topic, headers, department, subscription, purpose in members or self._members(group):
                deliveries.append((new(Output, (topic, key, value, keyed_front + headers)),
                                   {"department": department, "subscription": subscription, "purpose": purpose,
                                    "fields": fields, "masked": masked_names}))
        self.deliveries += len(group) - 1
        return deliveries

    def _members(self, group: Sequence[Projector]) -> tuple[Member, ...]:
        """What a delivery to each subscription of `group` but the first needs and the change
        does not decide: its pseudonym HMAC, topic, fixed headers and names for the sharing record."""
        return tuple((projector.pseudonym_hmac, *self._fixed_of(projector), projector.department,
                      projector.subscription_id, projector.purpose) for projector in group[1:])

    def deliver(self, projector: Projector, change: dict[str, Any], record: dict[str, Any], kept: Headers,
                delivered_at: datetime, keys: dict[str, bytes] | None = None) -> tuple[Output, audit.Record] | None:
        """The delivery of `change` to one subscription, and its part of the sharing record.
        `kept`: the change's headers that deliveries pass on (``passed_on``); `keys`: entity
        keys already computed for this change (one HMAC for its several deliveries)."""
        delivered, masked = projector.project(change, delivered_at)
        if delivered is None:
            return None
        return self._delivery(projector, delivered["entity_id"], self._encoded(delivered, record), delivered, masked,
                              self._front(kept, delivered, masked), {} if keys is None else keys)

    def _encoded(self, delivered: dict[str, Any], record: dict[str, Any]) -> bytes:
        return self.codec.encode(self.library, {
            "event_id": delivered["event_id"], "entity_id": delivered["entity_id"], "op": delivered["op"],
            "fields_set": delivered["fields_set"], "source_department": delivered["source_department"],
            "source_system": record["source_system"], "sequence": delivered["version"],
            "valid_from": delivered["valid_from"], "recorded_at": delivered["recorded_at"],
            "data": delivered["data"] or {}}, self.version)

    def _delivery(self, projector: Projector, entity_id: str, value: bytes, delivered: dict[str, Any],
                  masked: tuple[str, ...], front: Headers, keys: dict[str, bytes]) -> tuple[Output, audit.Record]:
        """One subscription's delivery message (keyed by the id it knows the entity by) and its
        part of the sharing record. `front`: the projection's headers (``_front``)."""
        key = self._key_of(projector, entity_id, keys)
        topic, headers = self._fixed_of(projector)
        self.deliveries += 1
        return (Output(topic, key, value, [*front, ("ce_subject", key), *headers]),
                audit.delivery_of(projector, delivered, masked))

    def _front(self, kept: Headers, delivered: dict[str, Any], masked: tuple[str, ...]) -> Headers:
        """The headers every delivery of one projection of a change carries, whoever receives
        it: the change's own (`kept`), then the projection's — made once per projection, so
        that all its deliveries say the same ROUTED_AT."""
        return [*kept, self._dataschema, (MASKED, ",".join(masked).encode()),
                (BACKFILL, b"true" if delivered["backfill"] else b"false"), (ROUTED_AT, now_millis())]

    def deliver_event(self, projector: EventProjector, occurred: lifeevents.Occurred, change: dict[str, Any],
                      record: dict[str, Any], kept: Headers, delivered_at: datetime,
                      keys: dict[str, bytes]) -> tuple[Output, audit.Record] | None:
        """The delivery of one life event of `change` to one subscription (its payload only, in
        the library's Avro like every delivery, a CloudEvent of its own type and id), and its
        part of the sharing record."""
        image = change["data"] or {}
        made = projector.project(occurred, image, str(change["entity_id"]), delivered_at)
        if made is None:
            return None
        delivered, masked = made
        event_id = str(uuid.uuid5(LIFE_EVENT_IDS, f"{change['event_id']}/{occurred.event}"))
        payload = list(delivered["data"])
        value = self.codec.encode(self.library, {
            "event_id": event_id, "entity_id": delivered["entity_id"], "op": "UPSERT", "fields_set": payload,
            "source_department": change["source_department"], "source_system": record["source_system"],
            "sequence": change["version"], "valid_from": change["valid_from"], "recorded_at": change["recorded_at"],
            "data": delivered["data"]}, self.version)
        key = self._key_of(projector, delivered["entity_id"], keys)  # as its record deliveries are keyed
        declared = self.book.catalog.library(self.library).life_events[occurred.event]
        day = lifeevents.event_date(declared, image, change["valid_from"])
        out_headers = [*(h for h in kept if h[0] not in ("ce_id", "ce_type")), ("ce_id", event_id.encode()),
                       ("ce_type", life_event_type(self.library, occurred.event).encode()),
                       (SUBSCRIPTION, projector.subscription_id.encode()), (PURPOSE, projector.purpose.encode()),
                       (IMAGE, ",".join(payload).encode()), ("ce_subject", key), self._dataschema,
                       (LIFE_EVENT, occurred.event.encode()), *([(EVENT_DATE, day.encode())] if day else []),
                       (MASKED, ",".join(masked).encode()), (BACKFILL, b"false"), (ROUTED_AT, now_millis())]
        self.deliveries += 1
        return (Output(self.names.deliver(projector.department, self.library), key, value, out_headers),
                audit.delivery(department=projector.department, subscription=projector.subscription_id,
                               purpose=projector.purpose, fields=payload, masked=masked, event=occurred.event))

    def snapshot_headers(self, record: dict[str, Any]) -> Headers:
        """The CloudEvents attributes of a backfill's snapshot `record`, which no shared change
        carried: so that every delivery, backfills included, is a valid CloudEvent (the
        router adds ``ce_subject`` and ``ce_dataschema`` to each delivery itself)."""
        return passed_on(cloudevent_headers(record, self.library, self.version, b""))

    def _key_of(self, projector: Projector | EventProjector, entity_id: str, keys: dict[str, bytes]) -> bytes:
        """The key of a delivery to `projector`'s subscription of the entity it knows as `entity_id`."""
        return pseudonym_key(entity_id) if projector.hides_key else self._key(entity_id, keys)

    def _key(self, entity_id: str, keys: dict[str, bytes]) -> bytes:
        key = keys.get(entity_id)
        if key is None:
            key = keys[entity_id] = self._entity_key(entity_id)
        return key

    def _fixed_of(self, projector: Projector) -> tuple[str, Headers]:
        """What every delivery to `projector`'s subscription has the same: its topic and the
        headers naming the subscription, made once per subscription, not per delivery."""
        found = self._static_headers.get(projector)
        if found is None:
            if len(self._static_headers) > STATIC_HEADERS_KEPT:  # most are of subscriptions since changed
                self._static_headers.clear()
            found = self._static_headers[projector] = (self.names.deliver(projector.department, self.library), [
                (SUBSCRIPTION, projector.subscription_id.encode()), (PURPOSE, projector.purpose.encode()),
                (IMAGE, projector.image_header.encode())])
        return found

    def sharing_record(self, chain: audit.AuditChain, change: dict[str, Any], deliveries: list[audit.Record],
                       delivered_at: datetime, offset: int | None) -> Output:
        """The one sharing record of a change's `deliveries`, next in `chain`."""
        record = chain.record_change(self.library, change, deliveries, delivered_at, offset)
        return Output(self.audit_topic, chain.chain.encode(), audit.encode(record), [])


ROUTER_HEADERS = frozenset({"ce_subject", "ce_dataschema", SUBSCRIPTION, PURPOSE, MASKED, IMAGE, BACKFILL, ROUTED_AT,
                            LIFE_EVENTS, LIFE_EVENT, EVENT_DATE, FILTER_BEFORE})
LIFE_EVENT_IDS = uuid.UUID("6f1c2a4e-8d0b-5e57-9a3c-1b7e2f4d6a80")  # namespace: a life event's id from its change's


def passed_on(headers: Headers | None) -> Headers:
    """The headers of a shared change that its deliveries carry on (the router sets the others)."""
    return [(name, value) for name, value in headers or () if name not in ROUTER_HEADERS]


def shared_change(record: dict[str, Any], backfill: bool, previous: bytes | None = None) -> dict[str, Any]:
    """A decoded ``shared.<library>`` event as the change a projector reads; `previous`: the
    gate's FILTER_BEFORE header (the changed fields' values before, as filters read them)."""
    return {"entity_id": record["entity_id"], "version": record["sequence"], "op": record["op"],
            "fields_set": record["fields_set"], "data": record["data"], "backfill": backfill,
            "source_department": record["source_department"], "event_id": record["event_id"],
            "valid_from": record["valid_from"], "recorded_at": record["recorded_at"],
            "before": compact_json.loads(previous) if previous else None}
