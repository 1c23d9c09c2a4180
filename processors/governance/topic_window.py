"""Reading what topics held between two moments, with a plain consumer and no consumer group.

The broker indexes every partition by time, so ``offsets_for_times`` turns "from" and "to"
into offsets: a report over last month reads last month's messages, not the whole topic.
Nothing is committed; the reader leaves no trace on the bus.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import datetime

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from govbus import clients
from govbus.settings import Settings


def millis(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


class TopicWindow:
    """Messages of topics with a timestamp in [start, end); either bound may be open."""

    def __init__(self, settings: Settings, start: datetime | None = None, end: datetime | None = None,
                 timeout: float = 120.0) -> None:
        self.settings = settings
        self.start_ms, self.end_ms = millis(start), millis(end)
        self.timeout = timeout
        self._consumer = clients.consumer(settings, consumer_timeout_ms=1000)

    def topics(self) -> set[str]:
        """Every topic the reader may see (to find delivery topics)."""
        return set(self._consumer.topics())

    def read(self, topics: Iterable[str]) -> Iterator[ConsumerRecord]:
        consumer = self._consumer
        partitions = [TopicPartition(topic, number) for topic in topics
                      for number in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        first = self._offsets(partitions, self.start_ms, consumer.beginning_offsets(partitions))
        stop = self._offsets(partitions, self.end_ms, ends)
        for partition in partitions:
            consumer.seek(partition, first[partition])
        pending = {tp for tp in partitions if first[tp] < stop[tp]}
        deadline = time.monotonic() + self.timeout
        while pending and time.monotonic() < deadline:
            for partition, records in consumer.poll(timeout_ms=500, max_records=2000).items():
                for record in records:
                    if record.offset < stop[partition]:
                        yield record
                if consumer.position(partition) >= stop[partition]:
                    pending.discard(partition)
            pending = {tp for tp in pending if consumer.position(tp) < stop[tp]}

    def _offsets(self, partitions: list[TopicPartition], moment_ms: int | None,
                 default: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """The first offset at or after ``moment_ms`` (the end offset when none), or ``default``."""
        if moment_ms is None:
            return dict(default)
        found = self._consumer.offsets_for_times({tp: moment_ms for tp in partitions})
        ends = self._consumer.end_offsets(partitions)
        return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in partitions}

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> TopicWindow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
