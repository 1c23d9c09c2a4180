"""The router on the batched runtime: every library's ``shared`` topic, one batch at a time.

Before a batch, each of its partitions gets the backfills it owes to new approvals (with the
subscriptions the batch will be routed with: see ``backfill``). Then every change is routed,
its deliveries and sharing records handed to the producer, and each chain's new head written
once per batch — all in the batch's transaction with the input offsets. A router killed
mid-batch therefore leaves no sharing record whose head or offset was not stored with it: its
successor continues the chain from the last committed head, and ``govbus audit verify`` finds
no fork.
"""

from __future__ import annotations

import time

from confluent_kafka import Message

from govbus.processors.governance.audit import GENESIS
from govbus.processors.router.backfill import Backfill, PartitionBackfills
from govbus.processors.runtime.batches import (BatchLoop, Checkpoint, Partition, by_library, by_partition,
                                       headers_of)
from govbus.processors.runtime.counting import Tally
from govbus.processors.runtime.output import Output
from govbus.processors.gate.golden import GoldenFormat
from govbus.processors.runtime.partition_store import PartitionStore
from govbus.processors.router.projection import Projector
from govbus.processors.router.logic import RouterLogic, SubscriptionBook
from govbus.schemas.codec import default_codec
from govbus.settings import Settings
from govbus.topics.catalog import Catalog
from govbus.topics.names import TopicNames

BOOK_WAIT = 0.1  # seconds between looks at whether the subscription book has caught up


class RouterBatches:
    """The router of every library in the catalog, as one ``BatchProcessor``."""

    name = "router"

    def __init__(self, settings: Settings, catalog: Catalog, book: SubscriptionBook) -> None:
        self.names = TopicNames(settings.topic_prefix)
        self.book = book
        codec = default_codec()
        self.logics: dict[str, RouterLogic] = {}
        self.heads: dict[str, PartitionStore] = {}
        self.backfills: dict[str, PartitionBackfills] = {}
        self.library_of: dict[str, str] = {}  # shared topic -> library
        self.positions: dict[str, dict[int, int]] = {}  # library -> partition -> next offset routed
        self._projectors: dict[str, tuple[Projector, ...]] = {}  # chosen in `before`, used in `handle`
        for library in catalog.libraries.values():
            name = library.library
            logic = self.logics[name] = RouterLogic(name, settings, codec, book)
            heads = self.heads[name] = PartitionStore(settings, self.names.audit_heads(name))
            backfill = Backfill(logic, settings, GoldenFormat(codec.registry.policy(name)))
            self.backfills[name] = PartitionBackfills(backfill, book, heads)
            self.library_of[self.names.shared(name)] = name
            self.positions[name] = {}
        self.topics = sorted(self.library_of)
        self.tally = Tally(self.name, self.names)

    def assigned(self, partitions: list[Partition]) -> None:
        """Restore the chain heads (and backfill markers) of the partitions gained."""
        for library, numbers in by_library(partitions, self.library_of).items():
            self.heads[library].load(numbers)

    def revoked(self, partitions: list[Partition]) -> None:
        for library, numbers in by_library(partitions, self.library_of).items():
            self.heads[library].forget(numbers)
            self.backfills[library].forget(numbers)
            for number in numbers:
                self.positions[library].pop(number, None)

    def before(self, messages: list[Message], loop: BatchLoop) -> None:
        """Wait for the subscription book; deliver what the batch's partitions owe."""
        while not self.book.ready.is_set():
            time.sleep(BOOK_WAIT)
        self._projectors = {library: self.book.projectors(library) for library in self.logics}
        for topic, partition in sorted({(m.topic(), m.partition()) for m in messages}):
            library = self.library_of[topic]
            self.backfills[library].settle(partition, self._projectors[library], loop)

    def handle(self, messages: list[Message], checkpoint: Checkpoint) -> None:
        grouped: dict[str, list[Message]] = {}
        for message in messages:
            grouped.setdefault(message.topic(), []).append(message)
        for topic, in_topic in grouped.items():
            library = self.library_of[topic]
            for partition, in_partition in by_partition(in_topic).items():
                self._route_partition(library, partition, in_partition, checkpoint)
        self.tally.flush()

    def _route_partition(self, library: str, partition: int, messages: list[Message], checkpoint: Checkpoint) -> None:
        logic, heads, backfills = self.logics[library], self.heads[library], self.backfills[library]
        projectors = self._projectors[library]
        chain_id = f"{library}/{partition}".encode()
        stored = heads.get(partition, chain_id)
        head = stored.decode() if stored else GENESIS
        moved = False
        for message in messages:
            timestamp_ms = message.timestamp()[1]
            outputs, head_after = logic.route(message.value(), headers_of(message), partition, message.offset(),
                                              timestamp_ms, head, backfills.covered(partition, message.offset()),
                                              projectors)
            self.tally.add(library, outputs)
            for output in outputs:
                checkpoint.send(output)
            moved = moved or head_after != head
            head = head_after
        self.positions[library][partition] = messages[-1].offset() + 1
        if moved:
            heads.put(partition, chain_id, head.encode())
            checkpoint.send(Output(heads.topic, chain_id, head.encode(), []), partition=partition)

    def idle(self, loop: BatchLoop) -> None:
        """Backfill the owned partitions that no change has come to since an approval."""
        for library, backfills in self.backfills.items():
            backfills.settle_owned(loop, self.positions[library])

    def stats(self) -> dict[str, object]:
        return {"deliveries": {name: logic.deliveries for name, logic in self.logics.items()},
                "subscriptions_active": sum(len(p) for p in self.book.by_library.values()),
                "backfills_owed": sum(each.owed_count() for each in self.backfills.values())}
