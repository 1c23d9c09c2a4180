"""A processor's per-partition state: restored on assignment, released on revocation."""

from __future__ import annotations

import asyncio

from govbus.processors.partition_store import PartitionStore
from govbus.settings import Settings


class FakeStore(PartitionStore):
    """Restores from a dict instead of a topic, slowly, to expose races."""

    def __init__(self, topic_content: dict[int, dict[bytes, bytes]]) -> None:
        super().__init__(Settings(), "state.population")
        self.topic_content = topic_content
        self.reads: list[list[int]] = []

    def _load(self, partitions: list[int]) -> dict[int, dict[bytes, bytes]]:
        import time

        self.reads.append(partitions)
        time.sleep(0.05)
        return {p: dict(self.topic_content.get(p, {})) for p in partitions}


def test_a_waiting_event_sees_the_restored_records() -> None:
    async def scenario() -> bytes | None:
        store = FakeStore({1: {b"k": b"golden"}})
        waiting = asyncio.ensure_future(store.wait(1))
        await store.assign([1])
        assert await waiting is True
        return store.get(1, b"k")

    assert asyncio.run(scenario()) == b"golden"


def test_a_partition_taken_away_while_restoring_releases_its_waiters_with_false() -> None:
    async def scenario() -> bool:
        store = FakeStore({})
        waiting = asyncio.ensure_future(store.wait(2))
        await asyncio.sleep(0)
        await store.assign([0])  # partition 2 is not ours (any more)
        return await asyncio.wait_for(waiting, 1)

    assert asyncio.run(scenario()) is False


def test_a_later_assignment_never_overwrites_what_the_agent_wrote_since() -> None:
    async def scenario() -> tuple[bytes | None, list[list[int]]]:
        store = FakeStore({3: {b"k": b"old"}})
        first = asyncio.ensure_future(store.assign([3]))
        second = asyncio.ensure_future(store.assign([3]))
        await first
        store.put(3, b"k", b"new")  # the agent applies an event
        await second
        return store.get(3, b"k"), store.reads

    value, reads = asyncio.run(scenario())
    assert value == b"new" and reads == [[3]], "the second assignment found partition 3 restored and left it"


def test_kept_partitions_are_not_read_again_and_revoked_ones_are_forgotten() -> None:
    async def scenario() -> tuple[list[list[int]], bool]:
        store = FakeStore({0: {b"a": b"1"}, 1: {b"b": b"2"}})
        await store.assign([0, 1])
        await store.assign([1])
        return store.reads, store.get(0, b"a") is None

    reads, forgotten = asyncio.run(scenario())
    assert reads == [[0, 1]] and forgotten


class FlakyStore(FakeStore):
    """Fails its first `failures` reads, as a broker slow to answer would."""

    def __init__(self, topic_content: dict[int, dict[bytes, bytes]], failures: int) -> None:
        super().__init__(topic_content)
        self.failures = failures

    def _load(self, partitions: list[int]) -> dict[int, dict[bytes, bytes]]:
        if self.failures:
            self.failures -= 1
            self.reads.append(partitions)
            raise OSError("metadata request timed out")
        return super()._load(partitions)


def test_a_failed_restore_is_tried_again_until_the_waiting_event_can_go_on(monkeypatch, caplog) -> None:
    monkeypatch.setattr("govbus.processors.assigned.RETRY_DELAYS", (0.01,))

    async def scenario() -> tuple[bool, bytes | None]:
        store = FlakyStore({4: {b"k": b"golden"}}, failures=2)
        waiting = asyncio.ensure_future(store.wait(4))
        store.assign_soon([4])
        return await asyncio.wait_for(waiting, 5), store.get(4, b"k")

    assert asyncio.run(scenario()) == (True, b"golden")
    assert sum("metadata request timed out" in message for message in caplog.messages) == 2


def test_a_restore_failing_for_a_partition_no_longer_ours_gives_way_to_the_new_assignment(monkeypatch) -> None:
    monkeypatch.setattr("govbus.processors.assigned.RETRY_DELAYS", (0.05,))

    async def scenario() -> tuple[bool, bool, list[list[int]]]:
        store = FlakyStore({5: {b"k": b"v"}}, failures=1)
        revoked = asyncio.ensure_future(store.wait(4))
        kept = asyncio.ensure_future(store.wait(5))
        store.assign_soon([4, 5])
        await asyncio.sleep(0.01)  # the first read has failed; the retry waits
        store.assign_soon([5])
        return await asyncio.wait_for(revoked, 5), await asyncio.wait_for(kept, 5), store.reads

    revoked, kept, reads = asyncio.run(scenario())
    assert (revoked, kept) == (False, True) and reads == [[4, 5], [5]]
