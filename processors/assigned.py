"""What a worker must load for each partition it is given, before it handles that partition.

When the consumer group gives a worker new partitions, the worker must load something for
each before it handles their first event — the processor's state (``PartitionStore``), and
where the previous owner stopped (``OffsetLedger``). faust tells us of the new assignment in
a callback that must return at once, so the loading runs as a task and the agents wait per
partition. This module is that machinery, once: one assignment at a time (a load finishing
after a later assignment must not overwrite what the agent has written since), partitions
taken away are forgotten and their waiters released, and a load that fails is logged and
tried again until it succeeds or its partitions are no longer ours — an agent waiting for a
load that died unnoticed would hold its partitions unprocessed for ever.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Hashable, Iterable, Mapping
from typing import Generic, TypeVar

log = logging.getLogger("govbus.processors.assigned")
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)  # seconds between attempts to load; the last repeats

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class AssignedPartitions(Generic[Key, Value]):
    """Per-partition values loaded on assignment; subclasses say how to load (`_load`)."""

    what = "partitions"  # for the log

    def __init__(self) -> None:
        self.values: dict[Key, Value] = {}
        self._ready: dict[Key, asyncio.Event] = {}
        self._assigning: asyncio.Lock | None = None  # made on the worker's loop, on first use
        self._latest: set[Key] | None = None  # the newest assignment, to stop retrying an old one
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    def _load(self, keys: list[Key]) -> Mapping[Key, Value]:
        """Load the values of newly assigned partitions (runs in a thread; may raise)."""
        raise NotImplementedError

    def _empty(self) -> Value:
        raise NotImplementedError

    def _event(self, key: Key) -> asyncio.Event:
        if key not in self._ready:
            self._ready[key] = asyncio.Event()
        return self._ready[key]

    async def wait(self, key: Key) -> bool:
        """Until the partition's value is loaded (at once when it already is); False when the
        partition was taken away meanwhile: its event belongs to the new owner."""
        await self._event(key).wait()
        return key in self.values

    def ready(self) -> bool:
        return all(event.is_set() for event in self._ready.values())

    def assign_soon(self, keys: Iterable[Key]) -> None:
        """Start `assign` without waiting for it: called from faust's rebalance callback, which
        must return before the consumer resumes (the agents wait per partition instead)."""
        task = asyncio.ensure_future(self.assign(keys))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def assign(self, keys: Iterable[Key]) -> None:
        """Keep what is still ours, forget what is not, load what is new."""
        wanted = set(keys)
        self._latest = wanted
        if self._assigning is None:
            self._assigning = asyncio.Lock()
        async with self._assigning:
            await self._assign(wanted)

    async def _assign(self, wanted: set[Key]) -> None:
        for key in set(self.values) | set(self._ready):
            if key not in wanted:
                self.values.pop(key, None)
                self._ready.pop(key, asyncio.Event()).set()  # wake waiters: not ours any more
        new = sorted((key for key in wanted if not self._event(key).is_set()), key=str)
        if not new:
            return
        loaded = await self._load_until_done(new)
        if loaded is None:
            return  # a newer assignment took over; it loads what is still ours
        for key in new:
            self.values[key] = loaded.get(key, self._empty())
            self._event(key).set()

    async def _load_until_done(self, keys: list[Key]) -> Mapping[Key, Value] | None:
        for attempt in itertools.count():
            started = time.monotonic()
            try:
                loaded = await asyncio.get_running_loop().run_in_executor(None, self._load, keys)
            except Exception as error:  # noqa: BLE001 - any failure is retried, and said
                delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
                log.warning("loading %s %s failed (attempt %d: %s); trying again in %.1f s",
                            self.what, keys, attempt + 1, error, delay)
                await asyncio.sleep(delay)
                if self._latest is not None and not set(keys) <= self._latest:
                    return None
                continue
            log.info("loaded %s %s in %.1f s", self.what, keys, time.monotonic() - started)
            return loaded
        return None  # unreachable: itertools.count never ends
