"""A processor's keyed state, per partition, restored from its compacted topic by the processor.

The gate keeps its golden records this way (``state.<library>``) and the router its audit
chain heads and backfill markers (``audit.heads.<library>``). When the consumer group gives a
batched loop new partitions, the loop restores them here before it reads their first event:
it reads that partition of the state topic to its end — committed data only, so exactly the
writes of every batch whose offsets were committed with them (``batches.Checkpoint``). Events
after the committed offset are handled again from that state, as the first time.

The state topic is co-partitioned with the input: a record is written to the partition of
the event that produced it.
"""

from __future__ import annotations

import logging
import time

from govbus.reading import read_topic
from govbus.settings import Settings

log = logging.getLogger("govbus.processors.partition_store")
RESTORE_TIMEOUT = 600.0  # seconds one attempt may take before it counts as failed (and is retried)
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)  # seconds between attempts to restore
ATTEMPTS = 8  # then the loop fails, and with it the worker: a supervisor restarts it

Records = dict[bytes, bytes]


class PartitionStore:
    """Keyed records of one topic, per partition, for the partitions this worker owns."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.values: dict[int, Records] = {}

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.values.get(partition, {}).get(key)

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self.values.setdefault(partition, {})[key] = value

    def load(self, partitions: list[int]) -> None:
        """Restore the partitions not held yet (kept ones are not read again); a failed read
        is said and tried again."""
        new = sorted(set(partitions) - set(self.values))
        if not new:
            return
        for attempt in range(ATTEMPTS):
            try:
                self.values.update(self._load(new))
                return
            except Exception as error:  # noqa: BLE001 - said, and tried again
                if attempt == ATTEMPTS - 1:
                    raise
                delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
                log.warning("restoring %s partitions %s failed (attempt %d: %s); trying again in %.1f s",
                            self.topic, new, attempt + 1, error, delay)
                time.sleep(delay)

    def forget(self, partitions: list[int]) -> None:
        for partition in partitions:
            self.values.pop(partition, None)

    def _load(self, partitions: list[int]) -> dict[int, Records]:
        restored: dict[int, Records] = {partition: {} for partition in partitions}
        for message in read_topic(self.settings, self.topic, partitions, timeout=RESTORE_TIMEOUT):
            if message.value is None:
                restored[message.partition].pop(message.key, None)
            else:
                restored[message.partition][message.key] = message.value
        return restored
