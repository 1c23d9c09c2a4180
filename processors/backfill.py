"""An approval's initial load: the current state of every entity a new subscription may see,
delivered partition by partition by the router instance that owns the partition.

Why by the partition's owner, in line with its live changes: a change routed before the
router knew of the approval goes to no one, so the backfill must contain it. Its state was
stored before the change was sent to ``shared`` (the gate's ``send_after``), so a backfill that
reads the state partition *after* every change routed without the subscription contains
them all. One instance doing every partition's backfill cannot promise that: another instance,
whose subscription watcher is a moment behind, may still route a change to no one after the
backfill read the state — that change would then never reach the department. The owner
knows: it does the backfill before it routes the partition's next change, with the
projectors that change would be routed with, and marks the partition done in
``audit.heads.<library>`` (restored with the chain heads), so a new owner after a rebalance
knows what is still owed. A backfill cut off by a crash is done again: subscribers apply by
version, so what arrives twice changes nothing.

The state read may already hold changes the router has not routed yet (the gate writes state
before ``shared``). Those would arrive twice, in the backfill and live, and a subscriber would
ignore the live one as not newer: its callbacks would never see that event, and the sharing
record would say it was delivered twice. So the owner remembers, per entity, the version the
backfill gave, and skips a live delivery to that subscription that is not newer — until it
has routed past the end ``shared`` had before the state was read, where every such change lies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kafka import TopicPartition

from govbus import clients

from govbus.processors import audit
from govbus.processors.gate import Output
from govbus.processors.offsets import OffsetLedger
from govbus.processors.golden import Golden, GoldenFormat
from govbus.processors.partition_store import PartitionStore
from govbus.processors.projection import Projector
from govbus.processors.router import RouterLogic, SubscriptionBook, shared_change
from govbus.reading import read_topic
from govbus.settings import Settings
from govbus.topics.names import TopicNames

log = logging.getLogger("govbus.router")
NAMESPACE = uuid.UUID("7f3b0c52-1d7e-4c59-9e55-5a8f1f0f6a21")  # of a snapshot's event id
READ_TIMEOUT = 120.0  # seconds to read one state partition before the attempt counts as failed
DONE = b"done"

Send = Callable[..., Awaitable[Any]]


def marker(subscription_id: str) -> bytes:
    """The key in ``audit.heads.<library>`` that says a partition's backfill was delivered."""
    return f"backfilled/{subscription_id}".encode()


@dataclass(frozen=True, slots=True)
class Delivered:
    """One partition's backfill for one subscription."""

    outputs: list[Output]
    versions: dict[str, int]  # entity id -> the version the backfill delivered
    shared_end: int  # the end of the shared partition before the state was read


class Backfill:
    """The snapshot deliveries of one state partition for one subscription."""

    def __init__(self, logic: RouterLogic, settings: Settings, golden_format: GoldenFormat) -> None:
        self.logic = logic
        self.settings = settings
        self.golden_format = golden_format
        names = TopicNames(settings.topic_prefix)
        self.state_topic = names.state(logic.library)
        self.shared_topic = names.shared(logic.library)

    def run(self, projector: Projector, approved_at: datetime, partition: int) -> Delivered:
        shared_end = self._shared_end(partition)  # first: every change before it is in the state read next
        chain = audit.AuditChain(f"backfill/{projector.subscription_id}/{partition}")
        outputs: list[Output] = []
        versions: dict[str, int] = {}
        for golden in self._current_state(partition):
            record = self._snapshot(golden)
            change = shared_change(record, backfill=True)
            delivered = self.logic.deliver(projector, change, record, [], chain, approved_at, None)
            if delivered:
                outputs += delivered
                versions[golden.entity_id] = golden.version
        return Delivered(outputs, versions, shared_end)

    def _shared_end(self, partition: int) -> int:
        consumer = clients.consumer(self.settings)
        try:
            shared = TopicPartition(self.shared_topic, partition)
            return consumer.end_offsets([shared])[shared]
        finally:
            consumer.close()

    def _current_state(self, partition: int) -> list[Golden]:
        latest = {message.key: message.value for message in
                  read_topic(self.settings, self.state_topic, [partition], timeout=READ_TIMEOUT)}
        goldens = (self.golden_format.load(json.loads(value)) for value in latest.values() if value)
        return sorted((g for g in goldens if not g.deleted and g.values), key=lambda g: g.entity_id)

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
    """The backfills each owned shared partition still owes, and delivering them."""

    def __init__(self, backfill: Backfill, book: SubscriptionBook, heads: PartitionStore, send: Send,
                 routed: OffsetLedger) -> None:
        self.backfill = backfill
        self.book = book
        self.heads = heads
        self.send = send
        self.routed = routed  # where the router is in each shared partition
        self._lock: asyncio.Lock | None = None  # made on the worker's loop, on first use
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

    def owed(self, partition: int, projectors: Iterable[Projector]) -> list[Projector]:
        return [p for p in projectors if self.heads.get(partition, marker(p.subscription_id)) is None]

    async def settle(self, partition: int, projectors: Iterable[Projector]) -> None:
        """Deliver the partition's backfill for each of `projectors` that lacks one."""
        if not self.owed(partition, projectors):
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # the agent and the idle timer never backfill at the same time
            for projector in self.owed(partition, projectors):
                if partition not in self.heads.values:
                    return  # taken away: its new owner delivers what is owed
                await self._deliver(partition, projector)

    def owed_count(self) -> int:
        """How many (subscription, owned partition) backfills are still to deliver: /health."""
        projectors = self.book.projectors(self.backfill.logic.library)
        return sum(len(self.owed(partition, projectors)) for partition in list(self.heads.values))

    async def settle_owned(self) -> None:
        """Backfill the owned partitions no change has come to since the approval."""
        if not self.book.ready.is_set():
            return
        projectors = self.book.projectors(self.backfill.logic.library)
        for partition in sorted(self.heads.values):
            await self.settle(partition, projectors)
            position = self.routed.values.get((self.backfill.shared_topic, partition))
            if position is not None:
                self.covered(partition, position)  # an idle partition forgets what it is past

    async def _deliver(self, partition: int, projector: Projector) -> None:
        approved_at = self.book.subscriptions[projector.subscription_id].decision.at
        loop = asyncio.get_running_loop()
        delivered = await loop.run_in_executor(None, self.backfill.run, projector, approved_at, partition)
        acknowledged = [await self.send(output) for output in delivered.outputs]
        await asyncio.gather(*acknowledged)  # stored before the marker says so
        if partition not in self.heads.values:
            return  # taken away meanwhile: the new owner does it again, which versions make harmless
        self._covered.setdefault(partition, {})[projector.subscription_id] = (delivered.shared_end, delivered.versions)
        key = marker(projector.subscription_id)
        self.heads.put(partition, key, DONE)
        await self.send(Output(self.heads.topic, key, DONE, []), partition=partition)
        log.info("backfilled %d deliveries of %s[%d] for %s", len(delivered.versions), self.backfill.state_topic,
                 partition, projector.subscription_id)
