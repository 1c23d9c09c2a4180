"""Reading a whole topic (or some of its partitions) once, up to its end as it is now."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from kafka import TopicPartition

from govbus import clients
from govbus.errors import GovbusError
from govbus.settings import Settings


def read_topic(settings: Settings, topic: str, partitions: Iterable[int] | None = None,
               timeout: float | None = None) -> list[Any]:
    """Every message now in `topic` (kafka-python ConsumerRecords), partition by partition in
    offset order. A missing topic is an error that says how to make it; with a `timeout`, so
    is a topic that cannot be read to its end in that many seconds (a partition without a
    leader would otherwise keep the caller waiting without a word)."""
    by_partition: dict[int, list[Any]] = {}
    for message in stream_topic(settings, topic, partitions, timeout):
        by_partition.setdefault(message.partition, []).append(message)
    return [message for partition in sorted(by_partition) for message in by_partition[partition]]


def stream_topic(settings: Settings, topic: str, partitions: Iterable[int] | None = None,
                 timeout: float | None = None) -> Iterator[Any]:
    """The messages now in `topic`, as they are read (each partition in offset order, the
    partitions interleaved): memory does not grow with the topic. Errors as `read_topic`;
    committed data only (the processors write in transactions)."""
    consumer = clients.consumer(settings)
    try:
        known = consumer.partitions_for_topic(topic)
        if not known:
            raise GovbusError(f"topic {topic} does not exist (or this principal may not see it); "
                              "`govbus topics apply` makes the bus's topics")
        assigned = [TopicPartition(topic, p) for p in sorted(known if partitions is None else partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(assigned)
        deadline = None if timeout is None else time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in assigned):
            if deadline is not None and time.monotonic() > deadline:
                behind = {tp.partition: f"{consumer.position(tp)}/{ends[tp]}" for tp in assigned
                          if consumer.position(tp) < ends[tp]}
                raise GovbusError(f"could not read {topic} to its end within {timeout:.0f} s "
                                  f"(partition: offset/end {behind})")
            for tp, records in consumer.poll(timeout_ms=1000).items():
                for record in records:
                    if record.offset < ends[tp]:
                        yield record
    finally:
        consumer.close()
