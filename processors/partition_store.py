"""A processor's keyed state, per partition, restored from its compacted topic by the processor.

The gate keeps its golden records this way (``state.<library>``) and the router its audit
chain heads (``audit.heads.<library>``). Why not faust tables: when one instance is killed and
another takes over its partitions, faust's table recovery restored some partitions from a
stale point (tested on a three-node cluster: entities ended a version short). So the
processor does what a changelog restore should do, and nothing more: when a partition is
assigned, it reads that partition of the topic to its end — every write the previous owner
flushed, which is every write of every event whose offset it committed (the worker flushes
the producer before it commits, see ``OffsetLedger``) — before the partition's first event
is handled. Events after the committed offset are handled again and recognised
(redelivered, stale, or an identical sharing record), so nothing is lost and nothing is
applied twice.

The state topic is co-partitioned with the input: a record is written to the partition of
the event that produced it.
"""

from __future__ import annotations

from govbus.processors.assigned import AssignedPartitions
from govbus.reading import read_topic
from govbus.settings import Settings

RESTORE_TIMEOUT = 120.0  # seconds one attempt may take before it counts as failed (and is retried)

Records = dict[bytes, bytes]


class PartitionStore(AssignedPartitions[int, Records]):
    """Keyed records of one topic, per partition, for the partitions this worker owns."""

    def __init__(self, settings: Settings, topic: str) -> None:
        super().__init__()
        self.settings = settings
        self.topic = topic
        self.what = f"{topic} partitions"

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.values.get(partition, {}).get(key)

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self.values.setdefault(partition, {})[key] = value

    def load(self, partitions: list[int]) -> None:
        """Restore these partitions now (the batched processors call it on assignment)."""
        self.values.update(self._load(sorted(set(partitions) - set(self.values))))

    def forget(self, partitions: list[int]) -> None:
        for partition in partitions:
            self.values.pop(partition, None)

    def _empty(self) -> Records:
        return {}

    def _load(self, partitions: list[int]) -> dict[int, Records]:
        restored: dict[int, Records] = {partition: {} for partition in partitions}
        for message in read_topic(self.settings, self.topic, partitions, timeout=RESTORE_TIMEOUT):
            if message.value is None:
                restored[message.partition].pop(message.key, None)
            else:
                restored[message.partition][message.key] = message.value
        return restored
