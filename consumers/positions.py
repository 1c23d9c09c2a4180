"""Where a subscriber starts reading each partition, and its positions told to the consumer group.

Every start is kept within what the partition holds now: an offset below the log's start
(expired by retention) starts at the log's start, with a warning, since those deliveries can
no longer be applied; one beyond the end starts at the end.

The partitions' ends are asked of the broker (never librdkafka's cached figures, which are as
old as the last fetch): the time a subscriber is "current as of" rests on them. The consumer
reads committed data only, so an end is the last stable offset, not past an open transaction.

The consumer group ``<prefix><department>.subscriber`` is told the positions only so that
operators' lag tools see the subscriber; the store holds the positions that count, so a
commit that fails is logged, never raised.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, KafkaException, TopicPartition

from govbus.consumers.deliveries import Replay
from govbus.consumers.progress import Partition

log = logging.getLogger("govbus.subscriber")
ASK_TIMEOUT_S = 10.0  # for one answer of the broker: log start and end, offsets for a time, a sync commit


def watermarks(consumer: Any, partitions: Iterable[Partition]) -> dict[Partition, tuple[int, int]]:
    """(log start, end) per partition, asked of the broker now; raises `KafkaException`."""
    wanted = list(partitions)
    first, last = listed(consumer, wanted, OFFSET_BEGINNING), listed(consumer, wanted, OFFSET_END)
    return {partition: (first[partition], last[partition]) for partition in wanted}


def listed(consumer: Any, partitions: Iterable[Partition], which: int) -> dict[Partition, int]:
    """Each partition's start (`which` OFFSET_BEGINNING) or end (OFFSET_END), asked of the broker
    now in one request per broker: the broker takes these two as "earliest" and "latest" where
    it would take a time. (``get_watermark_offsets`` asks two requests per partition, each
    queued behind a waiting fetch on the connection: seconds for a few partitions.) Raises
    `KafkaException` when one cannot be had."""
    asked = [TopicPartition(tp.topic, tp.partition, which) for tp in partitions]
    found: dict[Partition, int] = {}
    for answer in consumer.offsets_for_times(asked, ASK_TIMEOUT_S):
        if answer.error is not None or answer.offset < 0:
            raise KafkaException(answer.error or KafkaError(KafkaError._TIMED_OUT, f"no offset for {answer}"))
        found[Partition(answer.topic, answer.partition)] = answer.offset
    return found


def start_offsets(consumer: Any, partitions: list[Partition], replay: Replay | None,
                  stored: Mapping[tuple[str, int], int]) -> dict[Partition, int]:
    """The first offset to read per partition (a librdkafka consumer); raises `KafkaException`."""
    bounds = watermarks(consumer, partitions)
    first = {partition: start for partition, (start, _) in bounds.items()}
    last = {partition: end for partition, (_, end) in bounds.items()}
    if replay is None:
        starts = {tp: stored.get(tp, first[tp]) for tp in partitions}
        for tp, offset in starts.items():
            if offset < first[tp]:
                log.warning("%s[%d]: deliveries %d to %d expired before they were applied; replay from the "
                            "beginning into a new store to rebuild", tp.topic, tp.partition, offset, first[tp] - 1)
    elif replay.kind == "beginning":
        starts = dict(first)
    elif replay.kind == "offset":
        starts = {tp: int(replay.offset or 0) for tp in partitions}
    else:
        starts = _offsets_at(consumer, partitions, int(replay.at.timestamp() * 1000), last)  # type: ignore[union-attr]
    return {tp: min(max(offset, first[tp]), last[tp]) for tp, offset in starts.items()}


def _offsets_at(consumer: Any, partitions: list[Partition], moment_ms: int,
                last: Mapping[Partition, int]) -> dict[Partition, int]:
    """Per partition, the first offset written at or after `moment_ms`; the end when none was."""
    asked = [TopicPartition(tp.topic, tp.partition, moment_ms) for tp in partitions]
    found = {Partition(tp.topic, tp.partition): tp.offset for tp in consumer.offsets_for_times(asked, ASK_TIMEOUT_S)}
    return {tp: last[tp] if found.get(tp, -1) < 0 else found[tp] for tp in partitions}


def commit_group(consumer: Any, group: str, offsets: Mapping[Partition, int], sync: bool) -> None:
    """Tell the group the positions; asynchronously, `committed` hears the answer."""
    if not offsets:
        return
    listed = [TopicPartition(tp.topic, tp.partition, offset) for tp, offset in offsets.items()]
    try:
        if sync:
            committed(None, consumer.commit(offsets=listed, asynchronous=False))
        else:
            consumer.commit(offsets=listed, asynchronous=True)
    except KafkaException as error:
        log.warning("cannot commit to consumer group %s (only lag tools use it): %s", group, error)


def committed(error: KafkaError | None, partitions: list[TopicPartition] | None) -> None:
    """librdkafka's ``on_commit``: a failure is said, nothing else (see the module)."""
    failures = [f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in partitions or () if tp.error is not None]
    if error is not None and error.code() != KafkaError._NO_OFFSET:
        failures.insert(0, str(error))
    if failures:
        log.warning("committing to the subscriber's consumer group failed (only lag tools use it): %s",
                    "; ".join(failures))
