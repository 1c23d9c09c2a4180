"""Where a subscriber starts reading each partition: the store's own position, or a replay.

Every start is kept within what the partition holds now: an offset below the log's start
(expired by retention) starts at the log's start, with a warning, since those deliveries can
no longer be applied; one beyond the end starts at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from govbus.consumers.deliveries import Replay

log = logging.getLogger("govbus.subscriber")


def start_offsets(consumer: KafkaConsumer, partitions: list[TopicPartition], replay: Replay | None,
                  stored: Mapping[tuple[str, int], int]) -> dict[TopicPartition, int]:
    """The first offset to read per partition."""
    first, last = consumer.beginning_offsets(partitions), consumer.end_offsets(partitions)
    if replay is None:
        starts = {tp: stored.get((tp.topic, tp.partition), first[tp]) for tp in partitions}
        for tp, offset in starts.items():
            if offset < first[tp]:
                log.warning("%s[%d]: deliveries %d to %d expired before they were applied; replay from the "
                            "beginning into a new store to rebuild", tp.topic, tp.partition, offset, first[tp] - 1)
    elif replay.kind == "beginning":
        starts = dict(first)
    elif replay.kind == "offset":
        starts = {tp: int(replay.offset or 0) for tp in partitions}
    else:
        moment = int(replay.at.timestamp() * 1000)  # type: ignore[union-attr]
        found = consumer.offsets_for_times({tp: moment for tp in partitions})
        starts = {tp: last[tp] if found.get(tp) is None else found[tp].offset for tp in partitions}
    return {tp: min(max(offset, first[tp]), last[tp]) for tp, offset in starts.items()}


def commit_group(consumer: KafkaConsumer, group: str, offsets: Mapping[TopicPartition, int], sync: bool) -> None:
    committed = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()}
    try:
        if sync:
            consumer.commit(committed)
        else:
            consumer.commit_async(committed, callback=_commit_done)
    except KafkaError as error:
        log.warning("cannot commit to consumer group %s (only lag tools use it): %s", group, error)


def _commit_done(offsets: object, result: object) -> None:
    if isinstance(result, Exception):
        log.warning("committing to the subscriber's consumer group failed (only lag tools use it): %s", result)
