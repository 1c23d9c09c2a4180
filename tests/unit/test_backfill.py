"""A new approval's backfill, per partition by its owner, without a broker: owed once, delivered
before the partition's next change, marked done only in a transaction after its deliveries'."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from govbus.processors.router.backfill import DONE, Delivered, PartitionBackfills, marker
from govbus.processors.runtime.output import Output
from govbus.processors.runtime.partition_store import PartitionStore

APPROVED = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
HEADS = "audit.heads.population"


class FakeBackfill:
    """Two chunks of one delivery per partition; remembers which (subscription, partition) it ran for."""

    def __init__(self) -> None:
        self.logic = SimpleNamespace(library="population")
        self.state_topic = "state.population"
        self.shared_topic = "shared.population"
        self.runs: list[tuple[str, int]] = []

    def run(self, projector, approved_at: datetime, partition: int):
        assert approved_at == APPROVED
        self.runs.append((projector.subscription_id, partition))
        delivered = Delivered(shared_end=10, versions={f"entity-{partition}": 2})
        chunks = ([Output(f"deliver.{projector.subscription_id}", b"k", f"p{partition}-{n}".encode(), [])]
                  for n in range(2))
        return delivered, chunks

    @contextmanager
    def reading(self):
        yield


class FakeLoop:
    """The batched loop's transactions: what each committed one held; `fail_at` aborts one."""

    def __init__(self) -> None:
        self.committed: list[list[tuple[str, bytes | None, int | None]]] = []
        self.fail_at: int | None = None

    @contextmanager
    def checkpoint(self, consumed: bool = True):
        sent: list[tuple[str, bytes | None, int | None]] = []
        checkpoint = SimpleNamespace(send=lambda output, partition=None: sent.append((output.topic, output.value, partition)))
        yield checkpoint
        if self.fail_at == len(self.committed):
            raise RuntimeError("the transaction was aborted")
        self.committed.append(sent)


def backfills(owned: list[int], subscriptions: tuple[str, ...] = ("s1",)):
    heads = PartitionStore(SimpleNamespace(), HEADS)
    heads.values = {partition: {} for partition in owned}
    ready = threading.Event()
    ready.set()
    projectors = tuple(SimpleNamespace(subscription_id=s) for s in subscriptions)
    book = SimpleNamespace(ready=ready, projectors=lambda library: projectors,
                           subscriptions={s: SimpleNamespace(decision=SimpleNamespace(at=APPROVED)) for s in subscriptions})
    fake = FakeBackfill()
    return PartitionBackfills(fake, book, heads), fake, FakeLoop(), heads, projectors


def test_a_partition_owes_each_new_subscription_one_backfill_then_is_marked_done() -> None:
    partitions, fake, loop, heads, projectors = backfills([0, 1], ("s1", "s2"))
    partitions.settle(1, projectors, loop)
    partitions.settle(1, projectors, loop)
    assert fake.runs == [("s1", 1), ("s2", 1)], "once per subscription, and only for the partition asked"
    assert loop.committed == [[("deliver.s1", b"p1-0", None)], [("deliver.s1", b"p1-1", None)], [(HEADS, DONE, 1)],
                              [("deliver.s2", b"p1-0", None)], [("deliver.s2", b"p1-1", None)], [(HEADS, DONE, 1)]]
    assert heads.get(1, marker("s1")) == DONE and heads.get(0, marker("s1")) is None


def test_owned_partitions_without_new_changes_are_backfilled_when_the_loop_is_idle() -> None:
    partitions, fake, loop, heads, projectors = backfills([2, 0, 5])
    partitions.settle_owned(loop, {})
    assert fake.runs == [("s1", 0), ("s1", 2), ("s1", 5)]
    assert all(partitions.owed(partition, projectors) == [] for partition in (0, 2, 5))


def test_a_backfill_whose_chunk_was_aborted_is_not_marked_done_and_is_owed_again() -> None:
    partitions, fake, loop, heads, projectors = backfills([0])
    loop.fail_at = 1  # the second chunk's transaction
    with pytest.raises(RuntimeError):
        partitions.settle(0, projectors, loop)
    assert heads.get(0, marker("s1")) is None and partitions.owed(0, projectors) == list(projectors)
    assert all(topic != HEADS for sent in loop.committed for topic, _, _ in sent), "no marker was committed"
    loop.fail_at = None
    partitions.settle(0, projectors, loop)
    assert loop.committed[-1] == [(HEADS, DONE, 0)] and heads.get(0, marker("s1")) == DONE


def test_a_partition_not_owned_is_left_to_its_owner() -> None:
    partitions, fake, loop, heads, projectors = backfills([3])
    partitions.settle(4, projectors, loop)
    assert fake.runs == [] and loop.committed == []


def test_live_changes_a_backfill_already_delivered_are_named_until_the_router_is_past_them() -> None:
    partitions, _, loop, _, projectors = backfills([1], ("s1", "s2"))
    assert partitions.covered(1, 0) == {}, "nothing backfilled yet"
    partitions.settle(1, projectors, loop)
    assert partitions.covered(1, 9) == {"s1": {"entity-1": 2}, "s2": {"entity-1": 2}}, "below the shared end read"
    assert partitions.covered(1, 10) == {} and partitions.covered(1, 3) == {}, "past it: forgotten for good"


def test_the_router_skips_a_live_version_its_backfill_gave_and_delivers_a_newer_one() -> None:
    from govbus.bench import workload
    from govbus.bench.subscriptions import approved_in_memory
    from govbus.processors.gate.logic import GateLogic
    from govbus.processors.router.projection import Projector
    from govbus.processors.router.logic import RouterLogic
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
    partitions, _, loop, _, _ = backfills([2])
    partitions.settle_owned(loop, {})
    assert partitions._covered[2], "remembered while live changes below the shared end may come"
    partitions.settle_owned(loop, {2: 10})
    assert partitions._covered[2] == {}, "no change of the partition came since: the memory is freed all the same"


def test_a_backfill_delivery_is_a_cloudevent_a_standard_reader_accepts() -> None:
    from cloudevents.v1.kafka import KafkaMessage, from_binary

    from govbus import compact_json
    from govbus.bench import workload
    from govbus.bench.subscriptions import approved_in_memory
    from govbus.processors.router.backfill import Backfill
    from govbus.processors.gate.logic import GateLogic
    from govbus.processors.gate.golden import GoldenFormat
    from govbus.processors.router.projection import Projector
    from govbus.processors.router.logic import RouterLogic, shared_change
    from govbus.schemas.codec import default_codec
    from govbus.settings import Settings
    from govbus.topics.catalog import load_catalog
    from govbus.topics.names import TopicNames

    settings = Settings(topic_prefix="t.", security_protocol="PLAINTEXT")
    catalog, codec, names = load_catalog(settings.catalog_dir), default_codec(), TopicNames("t.")
    (key, value, headers), = workload.encoded(workload.population_changes(1, seed=4), settings.key_secret.encode())
    gate = GateLogic("population", catalog, codec, names)
    golden = gate.handle(names.ingest("population", workload.SOURCE), 0, 0, key, value, headers, None).golden
    golden_format = GoldenFormat(codec.registry.policy("population"))
    [subscription] = approved_in_memory(catalog, codec.registry, ("hr_social_security",))
    projector = Projector.for_subscription(subscription, codec.registry, settings.key_secret.encode())
    router = RouterLogic("population", settings, codec, SimpleNamespace(projectors=lambda library: (projector,)))
    snapshot = Backfill(router, settings, golden_format)._snapshot(golden_format.load(compact_json.loads(golden)))
    delivery, _ = router.deliver(projector, shared_change(snapshot, backfill=True), snapshot,
                                 router.snapshot_headers(snapshot), APPROVED)
    found = dict(delivery.headers)
    event = from_binary(KafkaMessage(headers=found, key=delivery.key, value=delivery.value),
                        data_unmarshaller=lambda data: data)
    assert found["govbus_backfill"] == b"true" and event["id"] == snapshot["event_id"]
    assert (event["source"], event["type"]) == ("urn:govbus:department:govbus:system:govbus-router",
                                                "cn.gov.govbus.population.change.v1")
    assert event["subject"] == delivery.key.decode() and event["dataschema"] == "urn:govbus:schema:population:v2"
    assert [name for name, _ in delivery.headers].count("ce_subject") == 1
