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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from kafka import TopicPartition

from govbus import clients
from govbus.processors import audit
from govbus.processors import subscriptions as rules
from govbus.processors.gate import Output
from govbus.processors.projection import Projector
from govbus.processors.subscriptions import Subscription
from govbus.schemas.codec import Codec
from govbus.schemas.framing import (BACKFILL, IMAGE, MASKED, PURPOSE, ROUTED_AT, SUBSCRIPTION, Headers, entity_key,
                                    header_map, now_millis)
from govbus.settings import Settings
from govbus.topics import apply as topic_apply
from govbus.topics.catalog import Catalog
from govbus.topics.names import AUDIT, SUBSCRIPTIONS, TopicNames

log = logging.getLogger("govbus.router")
EMPTY: Mapping = MappingProxyType({})


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
        self.ready = threading.Event()
        self._made_topics: set[str] = set()

    def projectors(self, library: str) -> tuple[Projector, ...]:
        return self.by_library.get(library, ())

    def apply(self, events: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Fold new subscription events in; make delivery topics before activating them."""
        current = dict(self.subscriptions)
        current.update(rules.fold(events))
        for subscription in current.values():
            if subscription.state == "approved":
                self._ensure_delivery_topic(subscription)
        by_library: dict[str, list[Projector]] = {}
        for subscription in current.values():
            if subscription.state == "approved" and subscription.library in self.catalog.libraries:
                projector = Projector.for_subscription(subscription, self.codec.registry, self.pseudonym_key)
                by_library.setdefault(subscription.library, []).append(projector)
        self.subscriptions = current
        self.by_library = {library: tuple(projectors) for library, projectors in by_library.items()}

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
        """Follow the subscriptions topic for ever (in a thread); ready once caught up."""
        consumer = clients.consumer(self.settings)
        name = self.names.bus(SUBSCRIPTIONS)
        partitions = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or [0])]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        try:
            while not stop.is_set():
                batches = consumer.poll(timeout_ms=200)
                events = [(record.key, record.value) for records in batches.values() for record in records]
                if events:
                    self.apply(events)
                if not self.ready.is_set() and all(consumer.position(tp) >= ends[tp] for tp in partitions):
                    self.ready.set()
        except Exception:  # noqa: BLE001 - a dead watcher must not look alive
            log.exception("the subscription watcher failed; the router stops routing")
            self.ready.clear()
            raise
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
        self._static_headers: dict[Projector, Headers] = {}  # per projector: the headers all its deliveries carry

    def route(self, value: bytes, headers: Headers, partition: int, offset: int, timestamp_ms: int,
              head: str, covered: Mapping[str, Mapping[str, int]] = EMPTY,
              projectors: Iterable[Projector] | None = None) -> tuple[list[Output], str]:
        """The deliveries and the sharing record of one shared change; the chain's new head.
        `covered`: per subscription, the entity versions a backfill already delivered (a
        change not newer than those is not delivered again; see ``backfill``). `projectors`:
        the subscriptions to route with (the book's current ones when not given)."""
        _, record = self.codec.decode(value)
        change = shared_change(record, header_map(headers).get(BACKFILL) == b"true")
        delivered_at = datetime.fromtimestamp(timestamp_ms / 1000, timezone.utc)
        kept = passed_on(headers)
        keys: dict[str, bytes] = {}
        outputs, shared = [], []
        for projector in self.book.projectors(self.library) if projectors is None else projectors:
            if change["version"] <= covered.get(projector.subscription_id, EMPTY).get(change["entity_id"], 0):
                continue
            made = self.deliver(projector, change, record, kept, delivered_at, keys)
            if made is not None:
                outputs.append(made[0])
                shared.append(made[1])
        if not shared:
            return outputs, head
        chain = audit.AuditChain(f"{self.library}/{partition}", head)
        outputs.append(self.sharing_record(chain, change, shared, delivered_at, offset))
        return outputs, chain.head

    def deliver(self, projector: Projector, change: dict[str, Any], record: dict[str, Any], kept: Headers,
                delivered_at: datetime, keys: dict[str, bytes] | None = None) -> tuple[Output, audit.Record] | None:
        """The delivery of `change` to one subscription, and its part of the sharing record.
        `kept`: the change's headers that deliveries pass on (``passed_on``); `keys`: entity
        keys already computed for this change (one HMAC for its several deliveries)."""
        delivered, masked = projector.project(change, delivered_at)
        if delivered is None:
            return None
        value = self.codec.encode(self.library, {
            "event_id": delivered["event_id"], "entity_id": delivered["entity_id"], "op": delivered["op"],
            "fields_set": delivered["fields_set"], "source_department": delivered["source_department"],
            "source_system": record["source_system"], "sequence": delivered["version"],
            "valid_from": delivered["valid_from"], "recorded_at": delivered["recorded_at"],
            "data": delivered["data"] or {}})
        key = self._key(delivered["entity_id"], {} if keys is None else keys)
        out_headers = [*kept, *self._headers_of(projector), ("ce_subject", key),
                       (MASKED, ",".join(masked).encode()),
                       (BACKFILL, b"true" if delivered["backfill"] else b"false"), (ROUTED_AT, now_millis())]
        self.deliveries += 1
        return (Output(self.names.deliver(projector.department, self.library), key, value, out_headers),
                audit.delivery_of(projector, delivered, masked))

    def _key(self, entity_id: str, keys: dict[str, bytes]) -> bytes:
        key = keys.get(entity_id)
        if key is None:
            key = keys[entity_id] = entity_key(self.secret, self.library, entity_id)
        return key

    def _headers_of(self, projector: Projector) -> Headers:
        found = self._static_headers.get(projector)
        if found is None:
            if len(self._static_headers) > 256:  # projectors of subscriptions since changed
                self._static_headers.clear()
            found = self._static_headers[projector] = [
                (SUBSCRIPTION, projector.subscription_id.encode()), (PURPOSE, projector.purpose.encode()),
                (IMAGE, projector.image_header.encode())]
        return found

    def sharing_record(self, chain: audit.AuditChain, change: dict[str, Any], deliveries: list[audit.Record],
                       delivered_at: datetime, offset: int | None) -> Output:
        """The one sharing record of a change's `deliveries`, next in `chain`."""
        record = chain.record_change(self.library, change, deliveries, delivered_at, offset)
        return Output(self.audit_topic, chain.chain.encode(), audit.encode(record), [])


ROUTER_HEADERS = frozenset({"ce_subject", SUBSCRIPTION, PURPOSE, MASKED, IMAGE, BACKFILL, ROUTED_AT})


def passed_on(headers: Headers | None) -> Headers:
    """The headers of a shared change that its deliveries carry on (the router sets the others)."""
    return [(name, value) for name, value in headers or () if name not in ROUTER_HEADERS]


def shared_change(record: dict[str, Any], backfill: bool) -> dict[str, Any]:
    """A decoded ``shared.<library>`` event as the change a projector reads."""
    return {"entity_id": record["entity_id"], "version": record["sequence"], "op": record["op"],
            "fields_set": record["fields_set"], "data": record["data"], "backfill": backfill,
            "source_department": record["source_department"], "event_id": record["event_id"],
            "valid_from": record["valid_from"], "recorded_at": record["recorded_at"]}
