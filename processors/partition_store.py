"""A processor's keyed state, per partition, restored from its compacted topic by the processor.

The gate keeps its golden records this way (``state.<library>``) and the router its audit
chain heads (``audit.heads.<library>``). Why not faust tables: when one instance is killed and
another takes over its partitions, faust's table recovery restored some partitions from a
stale point (tested on a three-node cluster: entities ended a version short). So the
processor does what a changelog restore should do, and nothing more: when a partition is
assigned, it reads that partition of the topic to its end — every write the previous owner
flushed, which is every write of every event whose offset it committed (faust flushes the
producer before it commits) — before the partition's first event is handled. Events after
the committed offset are handled again and recognised (redelivered, stale, or an identical
sharing record), so nothing is lost and nothing is applied twice.

The state topic is co-partitioned with the input: a record is written to the partition of
the event that produced it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from govbus.reading import read_topic
from govbus.settings import Settings


class PartitionStore:
    """Keyed records of one topic, per partition, for the partitions this worker owns."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.records: dict[int, dict[bytes, bytes]] = {}
        self._ready: dict[int, asyncio.Event] = {}
        self._assigning: asyncio.Lock | None = None  # made on the worker's loop, on first use

    def _event(self, partition: int) -> asyncio.Event:
        if partition not in self._ready:
            self._ready[partition] = asyncio.Event()
        return self._ready[partition]

    async def wait(self, partition: int) -> bool:
        """Until the partition's records are restored (at once when they already are); False
        when the partition was taken away meanwhile: its event belongs to the new owner."""
        await self._event(partition).wait()
        return partition in self.records

    def ready(self) -> bool:
        return all(event.is_set() for event in self._ready.values())

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.records.get(partition, {}).get(key)

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self.records.setdefault(partition, {})[key] = value

    async def assign(self, partitions: Iterable[int]) -> None:
        """Keep what is still ours, forget what is not, restore what is new.

        One assignment at a time: a restore finishing after a later one must not overwrite
        records the agent has written since."""
        if self._assigning is None:
            self._assigning = asyncio.Lock()
        async with self._assigning:
            await self._assign(set(partitions))

    async def _assign(self, wanted: set[int]) -> None:
        for partition in set(self.records) | set(self._ready):
            if partition not in wanted:
                self.records.pop(partition, None)
                self._ready.pop(partition, asyncio.Event()).set()  # wake waiters: not ours any more
        new = sorted(p for p in wanted if not self._event(p).is_set())
        if not new:
            return
        restored = await asyncio.get_running_loop().run_in_executor(None, self._read, new)
        for partition in new:
            self.records[partition] = restored.get(partition, {})
            self._event(partition).set()

    def _read(self, partitions: list[int]) -> dict[int, dict[bytes, bytes]]:
        restored: dict[int, dict[bytes, bytes]] = {partition: {} for partition in partitions}
        for message in read_topic(self.settings, self.topic, partitions):
            if message.value is None:
                restored[message.partition].pop(message.key, None)
            else:
                restored[message.partition][message.key] = message.value
        return restored
