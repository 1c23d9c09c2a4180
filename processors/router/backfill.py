"""An approval's initial load: the current state of every entity a new subscription may see,
delivered partition by partition by the router instance that owns the partition.

Why by the partition's owner, in line with its live changes: a change routed before the
router knew of the approval goes to no one, so the backfill must contain it. Its golden
record was committed with it, in the gate's transaction, so a backfill that reads the state
partition *after* every change routed without the subscription contains them all. One instance doing every partition's backfill cannot promise that: another instance,
whose subscription watcher is a moment behind, may still route a change to no one after the
backfill read the state — that change would then never reach the department. The owner
knows: it does the backfill before it routes the partition's next change, with the
projectors that change would be routed with, and marks the partition done in
``audit.heads.<library>`` (restored with the chain heads), so a new owner after a rebalance
knows what is still owed. A backfill cut off by a crash is done again: subscribers apply by
version, so what arrives twice changes nothing.

The state read may already hold changes the router has not routed yet (it reads ``shared``
behind the gate). Those would arrive twice, in the backfill and live, and a subscriber would
ignore the live one as not newer: its callbacks would never see that event, and the sharing
record would say it was delivered twice. So the owner remembers, per entity, the version the
backfill gave, and skips a live delivery to that subscription that is not newer — until it
has routed past the end ``shared`` had before the state was read, where every such change lies.

A backfill delivery is a CloudEvent like a live one (``RouterLogic.snapshot_headers``): its
``ce_id`` is the snapshot's event id, its ``ce_source`` the router
(``urn:govbus:department:govbus:system:govbus-router``), its ``ce_type`` the library's change
type, its ``ce_time`` when the newest value it holds was recorded. Before, it carried only the
bus's own headers, and a standard CloudEvents reader refused it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kafka import TopicPartition

from govbus import clients, compact_json
from govbus.processors.governance import audit
from govbus.processors.runtime.output import Output
from govbus.processors.gate.golden import Golden, GoldenFormat
from govbus.processors.runtime.partition_store import PartitionStore
from govbus.processors.router.projection import Projector
from govbus.processors.router.logic import RouterLogic, SubscriptionBook, shared_change
from govbus.reading import stream_topic
from govbus.settings import Settings
from govbus.topics.names import TopicNames

log = logging.getLogger("govbus.router")
NAMESPACE = uuid.UUID("7f3b0c52-1d7e-4c59-9e55-5a8f1f0f6a21")  # of a snapshot's event id
READ_TIMEOUT = 1800.0  # seconds to read one state partition before the attempt counts as failed
CHUNK = 2_000  # deliveries per transaction of a backfill
PROGRESS_EVERY = 10.0  # seconds between a long backfill's progress lines in the log
DONE = b"done"


def marker(subscription_id: str) -> bytes:
    """The key in ``audit.heads.<library>`` that says a partition's backfill was delivered."""
    return f"backfilled/{subscription_id}".encode()


@dataclass(slots=True)
class Delivered:
    """One partition's backfill for one subscription, as it is streamed."""

    shared_end: int  # the end of the shared partition before the state was read
    versions: dict[str, int] = field(default_factory=dict)  # entity id -> the version the backfill delivered
    records: int = 0  # state records read


class Backfill:
    """The snapshot deliveries of one state partition for one subscription."""

    def __init__(self, logic: RouterLogic, settings: Settings, golden_format: GoldenFormat) -> None:
        self.logic = logic
        self.settings = settings
        self.golden_format = golden_format
        names = TopicNames(settings.topic_prefix)
        self.state_topic = names.state(logic.library)
        self.shared_topic = names.shared(logic.library)
        self._consumer: Any = None  # the reads' one login, inside `reading`
        self._readings = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Every backfill run inside shares one consumer (made when the first one reads): a
        login per read, three per partition, was most of an empty partition's backfill
        (about 0.6 s; `govbus simulate` settled 57 of them in 35 s)."""
        self._readings += 1
        try:
            yield
        finally:
            self._readings -= 1
            if self._readings == 0 and self._consumer is not None:
                consumer, self._consumer = self._consumer, None
                consumer.close()

    def _reader(self) -> Any:
        if self._consumer is None:
            self._consumer = clients.consumer(self.settings)
        return self._consumer

    def run(self, projector: Projector, approved_at: datetime, partition: int) -> tuple[Delivered, Iterator[list[Output]]]:
        """What the run covers, and its deliveries in chunks of at most ``CHUNK`` as the state
        partition is read (the caller sends each chunk in a transaction of its own)."""
        delivered = Delivered(self._shared_end(partition))  # first: every change before it is in the state read next
        return delivered, self._chunks(projector, approved_at, partition, delivered)

    def _chunks(self, projector: Projector, approved_at: datetime, partition: int,
                delivered: Delivered) -> Iterator[list[Output]]:
        chain = audit.AuditChain(f"backfill/{projector.subscription_id}/{partition}/{uuid.uuid4().hex[:12]}")
        outputs: list[Output] = []
        for golden in self._current_state(partition):
            delivered.records += 1
            record = self._snapshot(golden)
            change = shared_change(record, backfill=True)
            made = self.logic.deliver(projector, change, record, self.logic.snapshot_headers(record), approved_at)
            if made is not None:
                outputs += [made[0], self.logic.sharing_record(chain, change, [made[1]], approved_at, None)]
                delivered.versions[golden.entity_id] = golden.version
            if len(outputs) >= CHUNK:
                yield outputs
                outputs = []
        if outputs:
            yield outputs

    def _shared_end(self, partition: int) -> int:
        shared = TopicPartition(self.shared_topic, partition)
        return self._reader().end_offsets([shared])[shared]

    def _current_state(self, partition: int) -> Iterator[Golden]:
        """Each entity's newest golden record in the partition (not the deleted ones). Two
        passes: the first keeps only each key's newest offset (no record), the second lets go
        of each key as its record is given, so memory stays a fraction of the partition's."""
        newest: dict[bytes, int] = {}
        for message in stream_topic(self.settings, self.state_topic, [partition], timeout=READ_TIMEOUT,
                                    consumer=self._reader()):
            newest[message.key] = message.offset
        end = max(newest.values(), default=-1)
        for message in stream_topic(self.settings, self.state_topic, [partition], timeout=READ_TIMEOUT,
                                    consumer=self._reader()):
            if message.offset > end:
                break  # written after the first pass: a later change, routed live
            if newest.get(message.key) == message.offset:
                del newest[message.key]
                if not message.value:
                    continue
                golden = self.golden_format.load(compact_json.loads(message.value))
                if not golden.deleted and golden.values:
                    yield golden

    def _snapshot(self, golden: Golden) -> dict[str, Any]:
        stamps = list(golden.stamps.values())
        data = dict.fromkeys(self.logic.codec.registry.policy(self.logic.library))
        data.update(golden.values)
        return {"event_id": str(uuid.uuid5(NAMESPACE, f"{golden.entity_id}/{golden.version}")),
                "entity_id": golden.entity_id, "op": "SNAPSHOT", "fields_set": sorted(golden.values),
                "source_department": "govbus", "source_system": "govbus-router", "sequence": golden.version,
                "valid_from": max((s.valid_from for s in stamps if s.valid_from), default=None),
                "recorded_at": max(s.recorded_at for s in stamps), "data": data}


class PartitionBackfills:
    """The backfills each owned shared partition still owes, and delivering them (in the
    router's loop thread, between two of its batches)."""

    def __init__(self, backfill: Backfill, book: SubscriptionBook, heads: PartitionStore) -> None:
        self.backfill = backfill
        self.book = book
        self.heads = heads
        self._covered: dict[int, dict[str, tuple[int, dict[str, int]]]] = {}  # see covered

    def covered(self, partition: int, offset: int) -> Mapping[str, Mapping[str, int]]:
        """For the change at `offset`: subscription id -> {entity id: version} of the backfills
        that may already hold it (see the module); forgotten once the router is past them."""
        entries = self._covered.get(partition)
        if not entries:
            return {}
        for subscription_id, (shared_end, _) in list(entries.items()):
            if offset >= shared_end:
                del entries[subscription_id]
        return {subscription_id: versions for subscription_id, (_, versions) in entries.items()}

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._covered.pop(partition, None)

    def owed(self, partition: int, projectors: Iterable[Projector]) -> list[Projector]:
        return [p for p in projectors if self.heads.get(partition, marker(p.subscription_id)) is None]

    def settle(self, partition: int, projectors: Iterable[Projector], loop: Any) -> None:
        """Deliver the partition's backfill for each of `projectors` that lacks one."""
        with self.backfill.reading():
            for projector in self.owed(partition, projectors):
                if partition not in self.heads.values:
                    return  # not ours: its owner delivers what is owed
                self._deliver(partition, projector, loop)

    def owed_count(self) -> int:
        """How many (subscription, owned partition) backfills are still to deliver: /health."""
        projectors = self.book.projectors(self.backfill.logic.library)
        return sum(len(self.owed(partition, projectors)) for partition in list(self.heads.values))

    def settle_owned(self, loop: Any, positions: Mapping[int, int]) -> None:
        """Backfill the owned partitions no change has come to since the approval; an idle
        partition forgets the versions it is past (`positions`: where the router is)."""
        if not self.book.ready.is_set():
            return
        projectors = self.book.projectors(self.backfill.logic.library)
        with self.backfill.reading():
            for partition in sorted(self.heads.values):
                self.settle(partition, projectors, loop)
                if partition in positions:
                    self.covered(partition, positions[partition])

    def _deliver(self, partition: int, projector: Projector, loop: Any) -> None:
        approved_at = self.book.subscriptions[projector.subscription_id].decision.at
        started = last_said = time.monotonic()
        delivered, chunks = self.backfill.run(projector, approved_at, partition)
        for chunk in chunks:
            with loop.checkpoint(consumed=False) as checkpoint:
                for output in chunk:
                    checkpoint.send(output)
            if time.monotonic() - last_said > PROGRESS_EVERY:
                last_said = time.monotonic()
                rate = delivered.records / (last_said - started)
                log.info("backfilling %s[%d] for %s: %d records read (%.0f/s)", self.backfill.state_topic,
                         partition, projector.subscription_id, delivered.records, rate)
        key = marker(projector.subscription_id)
        with loop.checkpoint(consumed=False) as checkpoint:  # after every chunk is stored
            checkpoint.send(Output(self.heads.topic, key, DONE, []), partition=partition)
        self.heads.put(partition, key, DONE)
        self._covered.setdefault(partition, {})[projector.subscription_id] = (delivered.shared_end, delivered.versions)
        log.info("backfilled %d deliveries of %s[%d] for %s in %.1f s", len(delivered.versions),
                 self.backfill.state_topic, partition, projector.subscription_id, time.monotonic() - started)
