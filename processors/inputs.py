"""How a worker's agents read their input partitions: in order, with their state loaded, and
committed only once what they wrote is stored.

One ``Inputs`` per worker. Each agent asks it for an ``OffsetLedger`` of its input topics
(and, if it keeps state, a ``PartitionStore``); on every rebalance ``Inputs`` has each of
them load the partitions gained and forget those lost. ``admitted`` wraps an agent's stream:
it waits until the partition's start is known, drops events already handled, and seeks back
when events went missing on the way (see ``offsets`` for why faust's acks are off).
``start_committing`` commits the ledgers every ``interval`` seconds and when the worker
stops, always after flushing the producer, so a committed offset never runs ahead of what its
events wrote. A partition taken away between two commits is handled again from the last
commit by its new owner; the processors recognise what they did already.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import faust
from faust.types import TP

from govbus.processors import metrics
from govbus.processors.assigned import AssignedPartitions
from govbus.processors.gate import Output
from govbus.processors.offsets import OffsetLedger, Partition, Verdict
from govbus.processors.partition_store import PartitionStore
from govbus.settings import Settings

log = logging.getLogger("govbus.processors.inputs")

RECHECK_SECONDS = 30.0  # after a seek back, events past the gap are dropped this long before asking again
RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


class Inputs:
    """The ledgers and stores of one worker's agents, loaded on assignment and committed."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.ledgers: list[OffsetLedger] = []
        self._held: set[asyncio.Future[None]] = set()  # outputs waiting for their state write (send_after)
        self._last_held: asyncio.Future[None] | None = None
        self.failed: BaseException | None = None  # a held send failed: commit nothing more
        self._loaders: list[tuple[AssignedPartitions, Callable[[set[TP]], Iterable]]] = []

        @app.on_partitions_assigned.connect
        async def load(app: faust.App, assigned: set[TP], **kwargs: object) -> None:
            for loader, keys in self._loaders:
                loader.assign_soon(keys(assigned))  # the agents wait per partition

    def topic(self, *topics: str) -> faust.TopicT:
        """An input topic of raw bytes, with faust's acks off: the ledgers commit it."""
        return self.app.topic(*topics, acks=False, **RAW)

    def ledger(self, topics: Iterable[str]) -> OffsetLedger:
        chosen = frozenset(topics)
        ledger = OffsetLedger(self.settings, self.app.conf.id)
        self.ledgers.append(ledger)
        self._loaders.append((ledger, lambda assigned: {(tp.topic, tp.partition) for tp in assigned if tp.topic in chosen}))
        return ledger

    def store(self, topic: str, inputs: Iterable[str]) -> PartitionStore:
        """State in `topic`, co-partitioned with `inputs`: partition n of the one for those of the others."""
        chosen = frozenset(inputs)
        store = PartitionStore(self.settings, topic)
        self._loaders.append((store, lambda assigned: {tp.partition for tp in assigned if tp.topic in chosen}))
        return store

    def ready(self) -> bool:
        return self.failed is None and all(loader.ready() for loader, _ in self._loaders)

    def send_after(self, stored: Awaitable[object] | None, outputs: list[Output],
                   send: Callable[[Output], Awaitable[object]]) -> None:
        """Send an event's outputs once the broker has its state write (`stored`, if it made
        one) and the outputs of every event before it were handed to the producer.

        Why after the state write: if a worker dies with the outputs stored but not the state,
        the restarted gate decides the event again from the older state, and events of several
        topics may then come in another order: the same entity version would be published
        twice with different contents (seen in CI). With the state stored first, a redelivered
        event finds it and re-emits exactly the same outputs. Why in turn: an entity's
        versions must reach ``shared`` in order. The agent does not wait (that would cost a
        broker round trip per event); `commit` waits for every held send before it commits."""
        previous = self._last_held

        async def after() -> None:
            if stored is not None:
                await stored
            if previous is not None and not previous.done():
                await asyncio.wait([previous])  # its failure is its own task's to report
            for output in outputs:
                await send(output)

        task = self._last_held = asyncio.ensure_future(after())
        self._held.add(task)
        task.add_done_callback(self._release)

    def _release(self, task: asyncio.Future[None]) -> None:
        self._held.discard(task)
        if not task.cancelled() and task.exception() is not None and self.failed is None:
            self.failed = task.exception()
            log.error("sending outputs after their state write failed (%s): this worker commits nothing more and "
                      "reports not ready; restart it, and the events since the last commit are handled again",
                      self.failed)

    async def admitted(self, stream: faust.StreamT, ledger: OffsetLedger) -> AsyncIterator[faust.EventT]:
        """The stream's events, each input partition in offset order without gaps or repeats."""
        rewound: dict[Partition, tuple[int, float]] = {}  # partition -> the offset sought back to, when
        async for event in stream.events():
            message = event.message
            partition = (message.topic, message.partition)
            if not await ledger.wait(partition):
                continue  # taken away meanwhile: the new owner handles it
            verdict = ledger.check(partition, message.offset)
            if verdict is Verdict.HANDLED:
                continue
            if verdict is Verdict.MISSING_BEFORE:
                sought, when = rewound.get(partition, (None, 0.0))
                if sought == ledger.next_offset(partition) and time.monotonic() - when < RECHECK_SECONDS:
                    continue  # queued before the seek back; the missing events come first
                if await self._missing(ledger, partition, message.offset):
                    await self._rewind(ledger, partition, message.offset, rewound)
                    continue
                ledger.skip_to(partition, message.offset)
            rewound.pop(partition, None)
            yield event
            ledger.handled(partition, message.offset)

    @staticmethod
    async def _missing(ledger: OffsetLedger, partition: Partition, offset: int) -> bool:
        """Whether records before `offset` exist that this worker has not handled (else the
        offsets between were compacted away)."""
        expected = ledger.next_offset(partition)
        first = await asyncio.get_running_loop().run_in_executor(None, ledger.first_offset, partition, expected)
        return first is None or first < offset

    async def _rewind(self, ledger: OffsetLedger, partition: Partition, offset: int,
                      rewound: dict[Partition, tuple[int, float]]) -> None:
        expected = ledger.next_offset(partition)
        rewound[partition] = (expected, time.monotonic())
        metrics.rewinds.labels(partition[0]).inc()
        log.warning("%s[%d]: offsets %d to %d never reached the processor; reading again from %d",
                    partition[0], partition[1], expected, offset - 1, expected)
        await self.app.consumer.seek(TP(*partition), expected)

    def start_committing(self, interval: float) -> None:
        """Commit what the agents handled, every `interval` seconds and at shutdown."""

        @self.app.timer(interval)
        async def commit_handled() -> None:
            await self.commit()

        @self.app.on_before_shutdown.connect
        async def commit_before_shutdown(app: faust.App, **kwargs: object) -> None:
            await self.commit()

    async def commit(self) -> None:
        chosen = {ledger: ledger.to_commit() for ledger in self.ledgers}
        if not any(chosen.values()):
            return
        if self._held:
            await asyncio.gather(*self._held, return_exceptions=True)
        await self.app.producer.flush()  # what the handled events wrote is stored before we say so
        if self.failed is not None:
            return  # outputs of handled events may be missing: they must be handled again
        offsets = {TP(*partition): offset for each in chosen.values() for partition, offset in each.items()}
        try:
            committed = await self.app.consumer._commit(offsets)  # the driver's commit: acks are off for these topics
        except Exception as error:  # noqa: BLE001 - a failed commit is offered again, and said
            log.warning("committing offsets failed (%s); trying again", error)
            committed = False
        if not committed:
            for ledger, each in chosen.items():
                ledger.commit_failed(each)
