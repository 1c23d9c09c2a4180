"""Publish → gate → router → subscriber: each store equals the projection of the golden records."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

import pg
from govbus.consumers.subscriber import Subscriber
from govbus.processors.governance import control
from govbus.processors.gate.golden import GoldenFormat
from govbus.processors.router.projection import Projector
from govbus.processors.governance.subscriptions import SubscriptionRequest
from govbus.producers.generate import generate
from govbus.producers.publisher import Publisher
from govbus.schemas.registry import default_registry

from kafka_helpers import golden_records

FIELDS = ("citizen_id", "name", "sex", "date_of_birth", "household_region", "marital_status")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/health.db"
    return pg.fresh_database(request.getfixturevalue("postgres_dsn"))


def _expected(bus, subscription) -> dict[str, dict]:
    """What the subscription's projection of every golden record says the store must hold."""
    registry = default_registry()
    golden_format = GoldenFormat(registry.policy("population"))
    projector = Projector.for_subscription(subscription, registry, bus.settings.key_secret.encode())
    expected = {}
    for plain in golden_records(bus.settings, bus.names.state("population")).values():
        golden = golden_format.load(plain)
        data = dict.fromkeys(registry.policy("population"))
        data.update(golden.values)
        change = {"entity_id": golden.entity_id, "version": golden.version, "op": "SNAPSHOT", "backfill": True,
                  "fields_set": sorted(golden.values), "data": data, "source_department": "x", "event_id": "e",
                  "valid_from": None, "recorded_at": None}
        delivered, _ = projector.project(change)
        expected[delivered["entity_id"]] = {**{name: delivered["data"][name] for name in FIELDS}, "version": golden.version}
    return expected


def _store_converges(bus, subscription, store_url: str, count: int) -> dict[str, dict]:
    """Subscribe until the store holds every entity at its golden version; then assert that
    every row equals the projection of its golden record. The rows, by entity."""
    deadline, expected, rows = time.monotonic() + 120, {}, {}
    with Subscriber(bus.as_principal("health"), "health", ["population"], store_url) as subscriber:
        while time.monotonic() < deadline:
            subscriber.catch_up(timeout=5)
            expected = _expected(bus, subscription)
            rows = {row["entity_id"]: row for row in subscriber.store.rows("population")}
            if len(expected) == count and all(rows.get(e, {}).get("version") == v["version"] for e, v in expected.items()):
                break
            time.sleep(1)
    assert len(expected) == count and len(rows) == count
    for entity_id, want in expected.items():
        got = rows[entity_id]
        assert {name: got[name] for name in (*FIELDS, "version")} == want, entity_id
    return rows


def test_each_store_equals_the_projection_of_the_golden_records(bus, start_processors, store_url: str) -> None:
    bus.apply_catalog()
    start_processors("gate", "router")
    subscription = control.request(bus.settings, SubscriptionRequest(
        department="health", library="population", fields=FIELDS, purpose="administrative_basis"))
    subscription = control.approve(bus.settings, subscription.id, "civil_affairs")
    people = list(generate("population", 60, seed=91, department="public_security"))
    renamed = [{"citizen_id": p["citizen_id"], "sequence": 2, "name": p["name"] + "新"} for p in people[::3]]
    marriages = [{"citizen_id": p["citizen_id"], "sequence": 1, "marital_status": "married"} for p in people[::2]]
    for department, records in (("public_security", people + renamed), ("civil_affairs", marriages)):
        with Publisher(bus.as_principal(department), department, "population", names=bus.names) as publisher:
            assert all(publisher.publish(record).accepted for record in records)

    rows = _store_converges(bus, subscription, store_url, count=60)
    assert sum(1 for row in rows.values() if row["name"].endswith("新")) == 20
    assert sum(1 for row in rows.values() if row["marital_status"] == "married") == 30


def test_an_approval_while_changes_flow_through_two_routers_reaches_every_entity(bus, start_processors, tmp_path) -> None:
    """Each router instance learns of the approval on its own, a moment apart. Whichever owns a
    partition backfills it before routing its next change, so no change routed to no one is
    missing from the backfill (before, one instance backfilled every partition, and a change
    the other routed just after that could reach the department never)."""
    bus.apply_catalog()
    start_processors("gate")
    start_processors("router")
    start_processors("router")
    subscription = control.request(bus.settings, SubscriptionRequest(
        department="health", library="population", fields=FIELDS, purpose="administrative_basis"))
    people = list(generate("population", 300, seed=93, department="public_security"))
    renamed = [{"citizen_id": p["citizen_id"], "sequence": 2, "name": p["name"] + "新"} for p in people[::4]]
    records = people + renamed
    approved = []
    _publish_in_chunks(bus, records, 25, pause=0.2, at=150,
                       then=lambda: approved.append(control.approve(bus.settings, subscription.id, "civil_affairs")))
    rows = _store_converges(bus, approved[0], f"sqlite:///{tmp_path}/health.db", count=300)
    assert sum(1 for row in rows.values() if row["name"].endswith("新")) == 75


def test_a_router_killed_mid_stream_loses_nothing_and_leaves_the_audit_chain_whole(bus, start_processors, tmp_path) -> None:
    """SIGKILL mid-stream: the batch in hand is an open transaction that the broker aborts;
    the restarted router continues every chain from the last committed head (before batches,
    the head, the records and the offset were written apart, and a replay forked the chain)."""
    from govbus.processors.governance import audit
    from govbus.processors.governance.control_commands import read_audit

    bus.apply_catalog()
    start_processors("gate")
    router = start_processors("router", session_timeout=10.0)  # killed below: its partitions move after 10 s
    subscription = control.request(bus.settings, SubscriptionRequest(
        department="health", library="population", fields=FIELDS, purpose="administrative_basis"))
    subscription = control.approve(bus.settings, subscription.id, "civil_affairs")
    people = list(generate("population", 2000, seed=97, department="public_security"))
    renamed = [{"citizen_id": p["citizen_id"], "sequence": 2, "name": p["name"] + "新"} for p in people[::2]]
    records = people + renamed
    routers = [router]

    def kill_and_restart_the_router() -> None:
        deadline = time.monotonic() + 60
        while not (routed := _routed(routers[-1])) and time.monotonic() < deadline:
            time.sleep(0.05)
        routers[-1].kill()
        assert 0 < routed < len(records), "killed while it was routing"
        routers.append(start_processors("router", session_timeout=10.0))

    _publish_in_chunks(bus, records, 100, at=1500, then=kill_and_restart_the_router)
    rows = _store_converges(bus, subscription, f"sqlite:///{tmp_path}/health.db", count=2000)
    assert sum(1 for row in rows.values() if row["name"].endswith("新")) == 1000
    result = audit.verify(read_audit(bus.settings))
    assert result.ok, result.first_break
    recorded = {(record["entity_id"], record["version"]) for record in map(audit.decode, read_audit(bus.settings))}
    assert all((entity, row["version"]) in recorded for entity, row in rows.items()), \
        "every version a store holds has its sharing record"


def _publish_in_chunks(bus, records: list[dict], size: int, pause: float = 0.0, *, at: int,
                       then: Callable[[], object]) -> None:
    """Publish as public security, `size` records at a time, each chunk flushed; `then()` runs
    once the chunk that starts at record `at` is acknowledged."""
    with Publisher(bus.as_principal("public_security"), "public_security", "population", names=bus.names) as publisher:
        for start in range(0, len(records), size):
            assert all(publisher.publish(record).accepted for record in records[start:start + size])
            publisher.flush()
            if start == at:
                then()
            time.sleep(pause)


def _routed(router) -> int:
    """How many deliveries the router's /health counts so far."""
    return sum((router.health() or {}).get("counts", {}).get("router", {}).get("deliveries", {}).values())
