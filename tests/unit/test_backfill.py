"""A new approval's backfill, per partition by its owner, without a broker: owed once, delivered
before the partition's next change, marked done only after its deliveries are stored."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone
from types import SimpleNamespace

from govbus.processors.backfill import DONE, PartitionBackfills, marker
from govbus.processors.gate import Output
from govbus.processors.partition_store import PartitionStore

APPROVED = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
HEADS = "audit.heads.population"


class FakeBackfill:
    """Two deliveries per partition; remembers which (subscription, partition) it ran for."""

    def __init__(self) -> None:
        self.logic = SimpleNamespace(library="population")
        self.state_topic = "state.population"
        self.runs: list[tuple[str, int]] = []
        self.before_return = lambda: None

    def run(self, projector, approved_at: datetime, partition: int) -> list[Output]:
        assert approved_at == APPROVED
        self.runs.append((projector.subscription_id, partition))
        self.before_return()
        return [Output(f"deliver.{projector.subscription_id}", b"k", f"p{partition}".encode(), [])]


class Recorder:
    """A producer: records sends in order; the broker acknowledges each at once, unless held."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, int | None]] = []
        self.held: list[asyncio.Future] | None = None  # a list: acknowledge nothing until told

    async def send(self, output: Output, partition: int | None = None) -> asyncio.Future:
        self.sent.append((output.topic, output.value, partition))
        future = asyncio.get_running_loop().create_future()
        if self.held is None:
            future.set_result(None)
        else:
            self.held.append(future)
        return future


def backfills(owned: list[int], subscriptions: tuple[str, ...] = ("s1",)):
    heads = PartitionStore(SimpleNamespace(), HEADS)
    heads.values = {partition: {} for partition in owned}
    ready = threading.Event()
    ready.set()
    projectors = tuple(SimpleNamespace(subscription_id=s) for s in subscriptions)
    book = SimpleNamespace(ready=ready, projectors=lambda library: projectors,
                           subscriptions={s: SimpleNamespace(decision=SimpleNamespace(at=APPROVED)) for s in subscriptions})
    recorder, fake = Recorder(), FakeBackfill()
    return PartitionBackfills(fake, book, heads, recorder.send), fake, recorder, heads, projectors


def test_a_partition_owes_each_new_subscription_one_backfill_then_is_marked_done() -> None:
    partitions, fake, recorder, heads, projectors = backfills([0, 1], ("s1", "s2"))

    async def scenario() -> None:
        await partitions.settle(1, projectors)
        await partitions.settle(1, projectors)

    asyncio.run(scenario())
    assert fake.runs == [("s1", 1), ("s2", 1)], "once per subscription, and only for the partition asked"
    assert recorder.sent == [("deliver.s1", b"p1", None), (HEADS, DONE, 1), ("deliver.s2", b"p1", None), (HEADS, DONE, 1)]
    assert heads.get(1, marker("s1")) == DONE and heads.get(0, marker("s1")) is None


def test_owned_partitions_without_new_changes_are_backfilled_by_the_timer() -> None:
    partitions, fake, recorder, heads, projectors = backfills([2, 0, 5])
    asyncio.run(partitions.settle_owned())
    assert fake.runs == [("s1", 0), ("s1", 2), ("s1", 5)]
    assert all(partitions.owed(partition, projectors) == [] for partition in (0, 2, 5))


def test_a_partition_taken_away_during_its_backfill_is_not_marked_for_the_new_owner() -> None:
    partitions, fake, recorder, heads, projectors = backfills([3])
    fake.before_return = lambda: heads.values.pop(3)  # revoked while the state was being read
    asyncio.run(partitions.settle(3, projectors))
    assert heads.get(3, marker("s1")) is None and 3 not in heads.values
    assert [topic for topic, _, _ in recorder.sent] == ["deliver.s1"], "no marker: the new owner backfills again"


def test_the_agent_waits_for_a_backfill_the_timer_started_and_does_not_repeat_it() -> None:
    partitions, fake, _, _, projectors = backfills([4])

    async def scenario() -> None:
        timer = asyncio.ensure_future(partitions.settle_owned())
        await asyncio.sleep(0)
        await partitions.settle(4, projectors)  # the agent, with a change for partition 4
        assert timer.done(), "the change is routed only after the backfill was delivered"

    asyncio.run(scenario())
    assert fake.runs == [("s1", 4)]


def test_the_done_marker_is_written_only_once_the_deliveries_are_stored() -> None:
    partitions, _, recorder, heads, projectors = backfills([0])
    recorder.held = []

    async def scenario() -> None:
        settling = asyncio.ensure_future(partitions.settle(0, projectors))
        await asyncio.sleep(0.05)
        assert [topic for topic, _, _ in recorder.sent] == ["deliver.s1"] and heads.get(0, marker("s1")) is None
        held, recorder.held = recorder.held, None
        for future in held:
            future.set_result(None)
        await settling

    asyncio.run(scenario())
    assert [topic for topic, _, _ in recorder.sent] == ["deliver.s1", HEADS] and heads.get(0, marker("s1")) == DONE
