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
                 timeout: float | None = None, settle: float = 0.0, consumer: Any = None) -> Iterator[Any]:
    """The messages now in `topic`, as they are read (each partition in offset order, the
    partitions interleaved): memory does not grow with the topic. Errors as `read_topic`;
    committed data only (the processors write in transactions). With `settle`, the end is
    taken once no transaction is open in the partitions, waiting up to that many seconds
    (see `settled_ends`). A `consumer` given is used (and left open): a reader of many
    partitions one after another logs in once."""
    own = consumer is None
    if own:
        consumer = clients.consumer(settings)
    try:
        known = consumer.partitions_for_topic(topic)
        if not known:
            raise GovbusError(f"topic {topic} does not exist (or this principal may not see it); "
                              "`govbus topics apply` makes the bus's topics")
        assigned = [TopicPartition(topic, p) for p in sorted(known if partitions is None else partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning()
        ends = settled_ends(settings, consumer, assigned, settle)
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
        if own:
            consumer.close()


def settled_ends(settings: Settings, consumer: Any, partitions: list[TopicPartition], settle: float) -> dict[Any, int]:
    """The committed end of each partition (its last stable offset), taken once no transaction
    is open there (the stable end has reached the high watermark), waiting up to `settle`
    seconds; after that, the stable end as it is.

    Why: a transaction's commit returns once the coordinator has logged it, and its markers
    reach the partitions it wrote a moment later, one partition after another. A reader right
    after a commit can find the commit visible in one topic (the shared change, the input
    offsets) and not yet in another (the golden record that went with it): restoring a state
    partition then would miss a committed write whose input is never read again. A transaction
    still open after `settle` seconds is one its writer will not finish (a killed worker's,
    aborted by the broker), so reading to the stable end is then right."""
    ends = consumer.end_offsets(partitions)
    if settle <= 0 or not partitions:
        return ends
    peek = clients.consumer(settings, isolation_level="read_uncommitted")  # sees the high watermark
    try:
        deadline = time.monotonic() + settle
        while True:
            highs = peek.end_offsets(partitions)
            if all(ends[each] >= highs[each] for each in partitions) or time.monotonic() >= deadline:
                return ends
            time.sleep(0.05)
            ends = consumer.end_offsets(partitions)
    finally:
        peek.close()
