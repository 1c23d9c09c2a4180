"""A transactional call that never returns (librdkafka does not always honour its timeout)
costs the loop a bounded wait and a new producer, never the worker (no broker)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from govbus.processors.runtime import batches
from govbus.settings import Settings


class FakeProducer:
    """Records the transactional calls; `blocked` makes commit wait for good."""

    def __init__(self, blocked: bool = False) -> None:
        self.calls: list[str] = []
        self.blocked = blocked
        self.released = threading.Event()

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def send_offsets_to_transaction(self, offsets, group, timeout) -> None:
        self.calls.append("offsets")

    def commit_transaction(self, timeout) -> None:
        self.calls.append("commit")
        if self.blocked:
            self.released.wait()  # as librdkafka was seen to: past its timeout, for good

    def abort_transaction(self, timeout) -> None:
        self.calls.append("abort")

    def flush(self, timeout) -> int:
        return 0


def test_a_bounded_call_gives_its_result_its_error_or_says_it_is_stuck() -> None:
    assert batches.bounded("adding", lambda: 1 + 1, 1.0) == 2
    with pytest.raises(ZeroDivisionError):
        batches.bounded("dividing", lambda: 1 / 0, 1.0)
    never = threading.Event()
    with pytest.raises(batches.ProducerStuck, match="waiting did not return within"):
        batches.bounded("waiting", never.wait, 0.2)
    never.set()


def test_a_commit_stuck_past_its_bound_replaces_the_producer_and_the_next_batch_commits(monkeypatch) -> None:
    monkeypatch.setattr(batches, "STUCK_AFTER", 0.2)
    processor = SimpleNamespace(name="gate", topics=["t"])
    loop = batches.BatchLoop(Settings(), "group", processor)  # type: ignore[arg-type]
    stuck, fresh = FakeProducer(blocked=True), FakeProducer()
    loop._producer = stuck
    loop._consumer = SimpleNamespace(consumer_group_metadata=lambda: "group-metadata")
    monkeypatch.setattr(loop, "_transactional_producer", lambda: fresh)

    with pytest.raises(batches.ProducerStuck):
        with loop.checkpoint() as checkpoint:
            checkpoint.advance("t", 0, 7)
    assert loop._producer is fresh, "the stuck producer was replaced"
    assert stuck.calls == ["begin", "offsets", "commit"], "the stuck one is not asked to abort"

    with loop.checkpoint() as checkpoint:
        checkpoint.advance("t", 0, 8)
    assert fresh.calls == ["begin", "offsets", "commit"]
    stuck.released.set()


def _fenced() -> Exception:
    from confluent_kafka import KafkaError, KafkaException

    return KafkaException(KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True))


def test_a_fenced_producer_is_replaced_a_few_times_then_the_error_stands(monkeypatch) -> None:
    """Seen after a broker that coordinated the transactions died: both loops fenced though no
    other instance lived. A new producer carries on; a real newer instance would fence it
    again at once, so only a few replacements are made before the worker stops as before."""
    processor = SimpleNamespace(name="router", topics=["t"])
    loop = batches.BatchLoop(Settings(), "group", processor)  # type: ignore[arg-type]
    made: list[FakeProducer] = []

    def new_producer() -> FakeProducer:
        made.append(FakeProducer())
        return made[-1]

    monkeypatch.setattr(loop, "_transactional_producer", new_producer)
    loop._producer = FakeProducer()

    def fenced() -> None:
        raise _fenced()

    for attempt in range(batches.FENCED_REPLACEMENTS):
        assert loop._retrying("idle work", fenced) is False
    assert len(made) == batches.FENCED_REPLACEMENTS and loop._producer is made[-1]
    with pytest.raises(Exception, match="fenced"):
        loop._retrying("idle work", fenced)
