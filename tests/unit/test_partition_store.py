"""A processor's per-partition state: restored on assignment, released on revocation."""

from __future__ import annotations

from govbus.processors.partition_store import PartitionStore
from govbus.settings import Settings


class FakeStore(PartitionStore):
    """Restores from a dict instead of a topic."""

    def __init__(self, topic_content: dict[int, dict[bytes, bytes]]) -> None:
        super().__init__(Settings(), "state.population")
        self.topic_content = topic_content
        self.reads: list[list[int]] = []

    def _load(self, partitions: list[int]) -> dict[int, dict[bytes, bytes]]:
        self.reads.append(partitions)
        return {p: dict(self.topic_content.get(p, {})) for p in partitions}


def test_restored_records_are_read_from_the_partitions_assigned() -> None:
    store = FakeStore({1: {b"k": b"golden"}, 2: {b"other": b"x"}})
    store.load([1])
    assert store.get(1, b"k") == b"golden" and store.get(2, b"other") is None


def test_kept_partitions_are_not_read_again_and_forgotten_ones_are_gone() -> None:
    store = FakeStore({0: {b"a": b"1"}, 1: {b"b": b"2"}})
    store.load([0, 1])
    store.put(1, b"b", b"written since")
    store.load([1])
    store.forget([0])
    assert store.reads == [[0, 1]], "partition 1 was kept, not read again"
    assert store.get(1, b"b") == b"written since" and store.get(0, b"a") is None


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


def test_a_failed_restore_is_said_and_tried_again(monkeypatch, caplog) -> None:
    monkeypatch.setattr("govbus.processors.partition_store.RETRY_DELAYS", (0.01,))
    store = FlakyStore({4: {b"k": b"golden"}}, failures=2)
    store.load([4])
    assert store.get(4, b"k") == b"golden"
    assert sum("metadata request timed out" in message for message in caplog.messages) == 2


def test_a_restore_that_keeps_failing_fails_the_loop(monkeypatch) -> None:
    import pytest

    monkeypatch.setattr("govbus.processors.partition_store.RETRY_DELAYS", (0.0,))
    store = FlakyStore({}, failures=100)
    with pytest.raises(OSError):
        store.load([3])
    assert 4 not in store.values and 3 not in store.values
