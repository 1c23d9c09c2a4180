"""Input events are handled in offset order, none twice, none skipped, and only handled ones
are committed (``OffsetLedger`` and ``Inputs.admitted``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace

from govbus.processors.inputs import Inputs
from govbus.processors.offsets import OffsetLedger, Verdict
from govbus.settings import Settings

TOPIC = "ingest.population.civil_affairs"


class KnownLedger(OffsetLedger):
    """Starts each partition at a given committed offset, and knows which offsets the log
    holds (all, unless told), instead of asking the broker."""

    def __init__(self, committed: dict[tuple[str, int], int], log: list[int] | None = None) -> None:
        super().__init__(Settings(), "govbus-gate")
        self.committed = committed
        self.log = log

    def _load(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {partition: self.committed[partition] for partition in partitions}

    def first_offset(self, partition: tuple[str, int], offset: int, timeout: float = 10.0) -> int | None:
        return offset if self.log is None else min((o for o in self.log if o >= offset), default=None)


def assigned(ledger: OffsetLedger, *partitions: tuple[str, int]) -> OffsetLedger:
    asyncio.run(ledger.assign(partitions))
    return ledger


def test_the_next_offset_is_the_committed_one_then_each_handled_one_plus_one() -> None:
    ledger = assigned(KnownLedger({(TOPIC, 0): 40}), (TOPIC, 0))
    assert ledger.check((TOPIC, 0), 40) is Verdict.NEXT
    ledger.handled((TOPIC, 0), 40)
    assert [ledger.check((TOPIC, 0), offset) for offset in (40, 41, 43)] == [
        Verdict.HANDLED, Verdict.NEXT, Verdict.MISSING_BEFORE]


def test_only_handled_offsets_are_offered_for_commit_and_each_once() -> None:
    ledger = assigned(KnownLedger({(TOPIC, 0): 0, (TOPIC, 1): 7}), (TOPIC, 0), (TOPIC, 1))
    for offset in range(5):
        ledger.handled((TOPIC, 0), offset)
    assert ledger.to_commit() == {(TOPIC, 0): 5}, "partition 1 handled nothing: nothing to commit"
    assert ledger.to_commit() == {}


def test_a_failed_commit_is_offered_again_but_not_for_partitions_taken_away() -> None:
    ledger = assigned(KnownLedger({(TOPIC, 0): 0, (TOPIC, 1): 0}), (TOPIC, 0), (TOPIC, 1))
    ledger.handled((TOPIC, 0), 0)
    ledger.handled((TOPIC, 1), 0)
    offsets = ledger.to_commit()
    asyncio.run(ledger.assign([(TOPIC, 1)]))
    ledger.commit_failed(offsets)
    assert ledger.to_commit() == {(TOPIC, 1): 1}


# -- admitted: the agents' view of a stream ---------------------------------------------------
@dataclass
class FakeConsumer:
    seeks: list[tuple[tuple[str, int], int]] = field(default_factory=list)

    async def seek(self, partition: tuple[str, int], offset: int) -> None:
        self.seeks.append((tuple(partition), offset))


class FakeStream:
    def __init__(self, offsets: list[int]) -> None:
        self.offsets = offsets

    async def events(self):
        for offset in self.offsets:
            yield SimpleNamespace(message=SimpleNamespace(topic=TOPIC, partition=0, offset=offset))


def handled_through(offsets: list[int], committed: int = 10, log: list[int] | None = None) -> tuple[list[int], list, dict]:
    consumer = FakeConsumer()
    inputs = Inputs.__new__(Inputs)  # no faust App: only `admitted` is exercised
    inputs.app = SimpleNamespace(consumer=consumer)
    ledger = KnownLedger({(TOPIC, 0): committed}, log)

    async def scenario() -> list[int]:
        await ledger.assign([(TOPIC, 0)])
        return [event.message.offset async for event in inputs.admitted(FakeStream(offsets), ledger)]

    seen = asyncio.run(scenario())
    return seen, consumer.seeks, ledger.to_commit()


def test_events_already_handled_are_dropped_when_fetched_again() -> None:
    seen, seeks, commit = handled_through([10, 11, 12, 11, 12, 13])
    assert (seen, seeks, commit) == ([10, 11, 12, 13], [], {(TOPIC, 0): 14})


def test_events_after_missing_ones_are_not_handled_and_the_worker_reads_again_from_the_gap() -> None:
    seen, seeks, commit = handled_through([10, 11, 14, 15, 16, 12, 13, 14, 15, 16])
    assert seen == [10, 11, 12, 13, 14, 15, 16]
    assert seeks == [((TOPIC, 0), 12)], "one seek back per gap, not one per event queued after it"
    assert commit == {(TOPIC, 0): 17}


def test_nothing_past_a_gap_is_committed_while_the_missing_events_have_not_come_back() -> None:
    seen, seeks, commit = handled_through([10, 11, 20, 21])
    assert (seen, commit) == ([10, 11], {(TOPIC, 0): 12})


def test_offsets_compacted_away_are_not_waited_for() -> None:
    log = [10, 13, 14, 17]  # a compacted topic: 11, 12, 15 and 16 were removed
    seen, seeks, commit = handled_through(log, log=log)
    assert (seen, seeks, commit) == (log, [], {(TOPIC, 0): 18})


# -- send_after: an event's outputs follow its state write -----------------------------------
class FakeWorker:
    """An Inputs with a producer and a consumer that record what they were asked."""

    def __init__(self) -> None:
        self.commits: list[dict] = []
        self.inputs = Inputs.__new__(Inputs)
        self.inputs.app = SimpleNamespace(producer=SimpleNamespace(flush=self._flush),
                                          consumer=SimpleNamespace(_commit=self._commit))
        self.inputs._held, self.inputs._last_held, self.inputs.failed, self.inputs._loaders = set(), None, None, []
        self.inputs.ledgers = [KnownLedger({(TOPIC, 0): 0})]

    async def _flush(self) -> None:
        return None

    async def _commit(self, offsets: dict) -> bool:
        self.commits.append(dict(offsets))
        return True


def test_outputs_wait_for_the_state_write_and_a_commit_waits_for_the_outputs() -> None:
    worker, sent = FakeWorker(), []

    async def send(output) -> None:
        sent.append(output)

    async def scenario() -> tuple[list, list]:
        ledger = worker.inputs.ledgers[0]
        await ledger.assign([(TOPIC, 0)])
        stored = asyncio.get_running_loop().create_future()
        worker.inputs.send_after(stored, ["shared", "conflict"], send)
        ledger.handled((TOPIC, 0), 0)
        await asyncio.sleep(0.01)
        before = list(sent)
        asyncio.get_running_loop().call_later(0.05, stored.set_result, "acknowledged")
        await worker.inputs.commit()  # must not commit offset 1 before both outputs went out
        return before, list(sent)

    before, after = asyncio.run(scenario())
    assert before == [] and after == ["shared", "conflict"]
    assert worker.commits == [{(TOPIC, 0): 1}]


def test_an_events_outputs_never_overtake_those_of_the_events_before_it() -> None:
    worker, sent = FakeWorker(), []

    async def send(output) -> None:
        await asyncio.sleep(0)  # a producer may yield before it queues the message
        sent.append(output)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        worker.inputs.send_after(first, ["version 1", "conflict 1"], send)
        worker.inputs.send_after(second, ["version 2"], send)
        worker.inputs.send_after(None, ["dead letter 3"], send)  # no state write of its own
        second.set_result("acknowledged")
        await asyncio.sleep(0.01)
        assert sent == [], "version 2 waits for version 1, whose state write is not stored yet"
        first.set_result("acknowledged")
        await asyncio.gather(*worker.inputs._held)

    asyncio.run(scenario())
    assert sent == ["version 1", "conflict 1", "version 2", "dead letter 3"]


def test_a_failed_output_send_stops_commits_and_readiness() -> None:
    worker = FakeWorker()

    async def send(output) -> None:
        raise OSError("broker gone")

    async def scenario() -> None:
        ledger = worker.inputs.ledgers[0]
        await ledger.assign([(TOPIC, 0)])
        stored = asyncio.get_running_loop().create_future()
        stored.set_result("acknowledged")
        worker.inputs.send_after(stored, ["shared"], send)
        ledger.handled((TOPIC, 0), 0)
        await worker.inputs.commit()

    asyncio.run(scenario())
    assert worker.commits == [] and not worker.inputs.ready()
