"""Which input events a processor has handled, so that it commits nothing it has not.

Why the processors keep their own ledger instead of faust's acks: on a three-node cluster,
when one gate instance was killed and the other took over, faust committed a partition's
offsets to its end while about 1,700 of its events never reached the agent (the entities
stayed at version 2 of 5; reproduced about one run in four). faust's own tracker documents
ways to get there: events fetched before a rebalance are "skipped" and acknowledged
(faust-streaming #221/#223), and offsets missing from a fetch are taken for a gap and
committed over (#312, #606, still open). For a bus whose promise is that no change is lost,
faust's acks on our input topics are switched off (``acks=False``), and the worker commits
from this ledger instead:

- when a partition is assigned, the ledger reads where the previous owner stopped (the
  group's committed offset, else the start of the log) before the first event is handled;
- events are handled strictly in offset order: an offset already handled is dropped; an
  offset past the next one means either that the offsets between no longer exist (a
  compacted topic, such as ``control.subscriptions``: the broker is asked, and the event is
  handled) or that events went missing on the way, and then the worker seeks back to the
  next one (faust fetches them again) instead of handling it;
- only the next offset after handled events is committed, after the producer has flushed
  what they wrote.

So faust can still delay an event, but never make the bus lose one.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Mapping

from kafka import TopicPartition

from govbus import clients
from govbus.processors.assigned import AssignedPartitions
from govbus.settings import Settings

log = logging.getLogger("govbus.processors.offsets")

Partition = tuple[str, int]  # (topic, partition)


class Verdict(enum.Enum):
    NEXT = "next"  # the event to handle now
    HANDLED = "handled"  # already handled (fetched again after a seek): drop it
    MISSING_BEFORE = "missing_before"  # events before it never arrived: seek back, do not handle


class OffsetLedger(AssignedPartitions[Partition, int]):
    """The next offset to handle of every input partition this worker owns."""

    def __init__(self, settings: Settings, group_id: str) -> None:
        super().__init__()
        self.settings = settings
        self.group_id = group_id
        self.what = "committed offsets of"
        self._uncommitted: set[Partition] = set()

    def check(self, partition: Partition, offset: int) -> Verdict:
        expected = self.values[partition]
        if offset == expected:
            return Verdict.NEXT
        return Verdict.HANDLED if offset < expected else Verdict.MISSING_BEFORE

    def next_offset(self, partition: Partition) -> int:
        return self.values[partition]

    def skip_to(self, partition: Partition, offset: int) -> None:
        """The offsets before `offset` do not exist (compacted away): it is the next one."""
        self.values[partition] = offset

    def first_offset(self, partition: Partition, offset: int, timeout: float = 10.0) -> int | None:
        """The offset of the first record at or after `offset` in the log, None if there is none
        (within `timeout` seconds). Runs in a thread: it asks the broker."""
        consumer = clients.consumer(self.settings)
        try:
            wanted = TopicPartition(*partition)
            consumer.assign([wanted])
            consumer.seek(wanted, offset)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500, max_records=1).values():
                    return records[0].offset
            return None
        finally:
            consumer.close()

    def handled(self, partition: Partition, offset: int) -> None:
        if partition in self.values:  # not taken away while the event was handled
            self.values[partition] = offset + 1
            self._uncommitted.add(partition)

    def to_commit(self) -> dict[Partition, int]:
        """The offsets to commit now (each partition's next offset), once each."""
        offsets = {partition: self.values[partition] for partition in self._uncommitted if partition in self.values}
        self._uncommitted.clear()
        return offsets

    def commit_failed(self, offsets: Mapping[Partition, int]) -> None:
        """Offer these again next time (those still ours)."""
        self._uncommitted.update(partition for partition in offsets if partition in self.values)

    def _empty(self) -> int:
        return 0

    def _load(self, partitions: list[Partition]) -> dict[Partition, int]:
        consumer = clients.consumer(self.settings, group_id=self.group_id)
        try:
            wanted = [TopicPartition(topic, number) for topic, number in partitions]
            starts = consumer.beginning_offsets(wanted)
            loaded: dict[Partition, int] = {}
            for partition in wanted:
                committed = consumer.committed(partition)
                # Below the log's start (retention removed them): faust starts at the start.
                loaded[(partition.topic, partition.partition)] = max(committed or 0, starts[partition])
            return loaded
        finally:
            consumer.close()
