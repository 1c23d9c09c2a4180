"""A processor's per-partition state: restored on assignment, kept on disk past a small buffer,
released (memory and file) on revocation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from govbus.processors.runtime import partition_store
from govbus.processors.runtime.partition_store import PartitionStore, Record
from govbus.settings import Settings

Messages = dict[int, list[tuple[bytes, bytes | None]]]  # partition -> (key, value) in offset order


class FakeStore(PartitionStore):
    """Restores from lists of messages instead of a topic."""

    def __init__(self, state_dir: Path, topic_content: Messages) -> None:
        super().__init__(Settings(state_dir=state_dir), "state.population")
        self.topic_content = topic_content
        self.reads: list[list[int]] = []

    def _read(self, partitions: list[int]) -> Iterator[Record]:
        self.reads.append(partitions)
        for partition in partitions:
            for key, value in self.topic_content.get(partition, []):
                yield partition, key, value


class FlakyStore(FakeStore):
    """Fails its first `failures` reads half-way, as a broker going away would."""

    def __init__(self, state_dir: Path, topic_content: Messages, failures: int) -> None:
        super().__init__(state_dir, topic_content)
        self.failures = failures

    def _read(self, partitions: list[int]) -> Iterator[Record]:
        for number, record in enumerate(super()._read(partitions)):
            if self.failures and number == 6:  # after a flush (see small_buffer)
                self.failures -= 1
                raise OSError("metadata request timed out")
            yield record


@pytest.fixture
def small_buffer(monkeypatch) -> int:
    """A buffer of 4 records, so that a handful of records already goes to disk."""
    monkeypatch.setattr(partition_store, "BUFFERED", 4)
    return 4


def files(state_dir: Path) -> list[str]:
    return sorted(path.name for path in state_dir.rglob("*.sqlite"))


def test_restored_records_are_read_from_the_partitions_assigned(tmp_path) -> None:
    store = FakeStore(tmp_path, {1: [(b"k", b"golden")], 2: [(b"other", b"x")]})
    store.load([1])
    assert store.get(1, b"k") == b"golden" and store.get(2, b"other") is None


def test_the_newest_value_of_a_key_wins_after_a_restore(tmp_path, small_buffer) -> None:
    messages = [(b"k%d" % (n % 3), b"v%d" % n) for n in range(10)]  # spans two flushes
    store = FakeStore(tmp_path, {0: messages})
    store.load([0])
    assert [store.get(0, b"k%d" % n) for n in range(3)] == [b"v9", b"v7", b"v8"]


def test_a_none_value_deletes_the_key_whether_on_disk_or_buffered(tmp_path, small_buffer) -> None:
    messages = [(b"a", b"1"), (b"b", b"2"), (b"c", b"3"), (b"d", b"4"),  # flushed to disk
                (b"a", None), (b"e", b"5"), (b"e", None)]                   # buffered
    store = FakeStore(tmp_path, {0: messages})
    store.load([0])
    assert store.get(0, b"a") is None and store.get(0, b"e") is None and store.get(0, b"b") == b"2"
    store.put(0, b"f", b"6")  # the buffer fills and the deletes go to disk
    assert store.get(0, b"a") is None and store.get(0, b"e") is None and store.get(0, b"f") == b"6"


def test_a_restore_of_more_records_than_the_buffer_holds_keeps_them_all(tmp_path, small_buffer) -> None:
    messages = [(b"key-%d" % n, b"value-%d" % n) for n in range(25)]
    store = FakeStore(tmp_path, {3: messages})
    store.load([3])
    assert all(store.get(3, b"key-%d" % n) == b"value-%d" % n for n in range(25))
    assert files(tmp_path) == ["3.sqlite"]
    assert len(store.values[3]._buffer) < small_buffer, "the records are on disk, not in memory"


def test_values_put_survive_a_buffer_flush(tmp_path, small_buffer) -> None:
    store = FakeStore(tmp_path, {})
    store.load([0])
    for n in range(10):
        store.put(0, b"key-%d" % n, b"first-%d" % n)
    store.put(0, b"key-1", b"second")
    assert store.get(0, b"key-0") == b"first-0" and store.get(0, b"key-1") == b"second"
    assert store.get(0, b"key-9") == b"first-9" and store.get(0, b"never") is None


def test_a_partition_smaller_than_the_buffer_makes_no_file(tmp_path) -> None:
    store = FakeStore(tmp_path, {0: [(b"population/0", b"head")]})
    store.load([0])
    store.put(0, b"backfilled/s1", b"done")
    assert store.get(0, b"backfilled/s1") == b"done" and files(tmp_path) == []


def test_forget_frees_the_partition_and_its_file(tmp_path, small_buffer) -> None:
    content = {p: [(b"key-%d" % n, b"value") for n in range(10)] for p in (0, 1)}
    store = FakeStore(tmp_path, content)
    store.load([0, 1])
    assert files(tmp_path) == ["0.sqlite", "1.sqlite"]
    store.forget([0])
    assert 0 not in store.values and store.get(0, b"key-1") is None
    assert files(tmp_path) == ["1.sqlite"] and store.get(1, b"key-1") == b"value"


def test_a_forgotten_partition_loaded_again_is_read_again_from_the_topic(tmp_path, small_buffer) -> None:
    store = FakeStore(tmp_path, {0: [(b"key-%d" % n, b"committed") for n in range(10)]})
    store.load([0])
    store.put(0, b"key-1", b"of an aborted batch")
    store.forget([0])
    store.load([0])
    assert store.reads == [[0], [0]] and store.get(0, b"key-1") == b"committed"


def test_kept_partitions_are_not_read_again_and_forgotten_ones_are_gone(tmp_path) -> None:
    store = FakeStore(tmp_path, {0: [(b"a", b"1")], 1: [(b"b", b"2")]})
    store.load([0, 1])
    store.put(1, b"b", b"written since")
    store.load([1])
    store.forget([0])
    assert store.reads == [[0, 1]], "partition 1 was kept, not read again"
    assert store.get(1, b"b") == b"written since" and store.get(0, b"a") is None


def test_close_removes_the_stores_directory(tmp_path, small_buffer) -> None:
    store = FakeStore(tmp_path, {0: [(b"key-%d" % n, b"value") for n in range(10)]})
    store.load([0])
    assert len(list(tmp_path.iterdir())) == 1, "one directory of the store's own"
    store.close()
    assert list(tmp_path.iterdir()) == [] and store.values == {}


def test_two_stores_in_one_state_directory_keep_their_own_files(tmp_path, small_buffer) -> None:
    content = {0: [(b"key-%d" % n, b"value") for n in range(10)]}
    leaving, taking_over = FakeStore(tmp_path, content), FakeStore(tmp_path, content)
    leaving.load([0])
    taking_over.load([0])
    leaving.forget([0])
    assert taking_over.get(0, b"key-1") == b"value"


def test_a_failed_restore_is_said_and_tried_again(tmp_path, small_buffer, monkeypatch, caplog) -> None:
    monkeypatch.setattr(partition_store, "RETRY_DELAYS", (0.01,))
    store = FlakyStore(tmp_path, {4: [(b"key-%d" % n, b"golden") for n in range(10)]}, failures=2)
    store.load([4])
    assert all(store.get(4, b"key-%d" % n) == b"golden" for n in range(10))
    assert sum("metadata request timed out" in message for message in caplog.messages) == 2
    assert files(tmp_path) == ["4.sqlite"], "the failed attempts left no file behind"


def test_a_restore_that_keeps_failing_fails_the_loop(tmp_path, small_buffer, monkeypatch) -> None:
    monkeypatch.setattr(partition_store, "RETRY_DELAYS", (0.0,))
    store = FlakyStore(tmp_path, {3: [(b"key-%d" % n, b"golden") for n in range(10)]}, failures=100)
    with pytest.raises(OSError):
        store.load([3])
    assert 3 not in store.values and files(tmp_path) == []
