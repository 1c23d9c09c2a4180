"""A new approval's backfill, per partition by its owner, without a broker: owed once, delivered
before the partition's next change, marked done only after its deliveries are stored."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone
from types import SimpleNamespace

from govbus.processors.backfill import DONE, Delivered, PartitionBackfills, marker
from govbus.processors.gate import Output
from govbus.processors.partition_store import PartitionStore

APPROVED = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
HEADS = "audit.heads.population"


class FakeBackfill:
    """Two deliveries per partition; remembers which (subscription, partition) it ran for."""

    def __init__(self) -> None:
        self.logic = SimpleNamespace(library="population")
        self.state_topic = "state.population"
        self.shared_topic = "shared.population"
        self.runs: list[tuple[str, int]] = []
        self.before_return = lambda: None

    def run(self, projector, approved_at: datetime, partition: int) -> Delivered:
        assert approved_at == APPROVED
        self.runs.append((projector.subscription_id, partition))
        self.before_return()
        output = Output(f"deliver.{projector.subscription_id}", b"k", f"p{partition}".encode(), [])
        return Delivered([output], {f"entity-{partition}": 2}, shared_end=10)


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
    routed = SimpleNamespace(values={})  # the router's ledger: the next offset per shared partition
    return PartitionBackfills(fake, book, heads, recorder.send, routed), fake, recorder, heads, projectors


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


def test_live_changes_a_backfill_already_delivered_are_named_until_the_router_is_past_them() -> None:
    partitions, _, _, _, projectors = backfills([1], ("s1", "s2"))
    assert partitions.covered(1, 0) == {}, "nothing backfilled yet"
    asyncio.run(partitions.settle(1, projectors))
    assert partitions.covered(1, 9) == {"s1": {"entity-1": 2}, "s2": {"entity-1": 2}}, "below the shared end read"
    assert partitions.covered(1, 10) == {} and partitions.covered(1, 3) == {}, "past it: forgotten for good"


def test_the_router_skips_a_live_version_its_backfill_gave_and_delivers_a_newer_one() -> None:
    from govbus.bench import workload
    from govbus.bench.subscriptions import approved_in_memory
    from govbus.processors.gate import GateLogic
    from govbus.processors.projection import Projector
    from govbus.processors.router import RouterLogic
    from govbus.schemas.codec import default_codec
    from govbus.settings import Settings
    from govbus.topics.catalog import load_catalog
    from govbus.topics.names import TopicNames

    settings = Settings(topic_prefix="t.", security_protocol="PLAINTEXT")
    catalog, codec, names = load_catalog(settings.catalog_dir), default_codec(), TopicNames("t.")
    (key, value, headers), = workload.encoded(workload.population_changes(1, seed=3), settings.key_secret.encode())
    gate = GateLogic("population", catalog, codec, names)
    shared = [output for output in gate.handle(names.ingest("population", workload.SOURCE), 0, 0, key, value, headers,
                                               None).outputs if output.topic == gate.shared_topic][0]
    _, record = codec.decode(shared.value)
    [subscription] = approved_in_memory(catalog, codec.registry, ("hr_social_security",))
    projector = Projector.for_subscription(subscription, codec.registry, settings.key_secret.encode())
    router = RouterLogic("population", settings, codec, SimpleNamespace(projectors=lambda library: (projector,)))

    def route(covered_version: int) -> list[Output]:
        covered = {subscription.id: {record["entity_id"]: covered_version}}
        return router.route(shared.value, shared.headers, 0, 5, 0, "0" * 64, covered)[0]

    assert route(record["sequence"]) == [], "the backfill gave this version: not delivered (nor recorded) twice"
    assert [output.topic for output in route(record["sequence"] - 1)] == ["t.deliver.hr_social_security.population",
                                                                           "t.audit.deliveries"]


def test_an_idle_partition_forgets_its_backfills_versions_once_the_router_is_past_them() -> None:
    partitions, _, _, _, _ = backfills([2])
    asyncio.run(partitions.settle_owned())
    assert partitions._covered[2], "remembered while live changes below the shared end may come"
    partitions.routed.values[("shared.population", 2)] = 10
    asyncio.run(partitions.settle_owned())
    assert partitions._covered[2] == {}, "no change of the partition came since: the memory is freed all the same"
