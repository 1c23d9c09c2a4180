"""The subscriber on a real broker: the store equals the projection of what was delivered, in
SQLite and PostgreSQL, after a crash and a restart, and after a replay; schema evolution.

Deliveries are written here in the router's format (the library's Avro schema, pseudonymous
key, ROUTED_AT / BACKFILL / SUBSCRIPTION headers), so these tests hold the subscriber to the
format rather than to the router's behaviour.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pg
from govbus import clients
from govbus.consumers import subscriber as subscriber_module
from govbus.consumers.stores import open_store
from govbus.consumers.subscriber import Subscriber
from govbus.processors.governance import control
from govbus.processors.governance.subscriptions import SubscriptionRequest
from govbus.processes import settings_environment
from govbus.producers.generate import generate
from govbus.producers.records import to_event
from govbus.schemas.codec import default_codec
from govbus.schemas.framing import (ACCEPTED_AT, BACKFILL, IMAGE, MASKED, PURPOSE, ROUTED_AT, SUBSCRIPTION,
                                    cloudevent_headers, entity_key, now_millis)
from govbus.schemas.registry import default_registry
from govbus.topics import apply as topic_apply

from kafka_helpers import send_raw

LIBRARY, DEPARTMENT = "population", "health"
DELIVERED = ("citizen_id", "name", "sex", "date_of_birth", "household_region", "marital_status")
REGISTRY = default_registry()


def make_delivery_topic(bus, department: str = DEPARTMENT, library: str = LIBRARY) -> str:
    admin = clients.admin(bus.settings)
    try:
        brokers = len(admin.describe_cluster()["brokers"])
        spec = bus.catalog.delivery_topic(bus.names, department, library)
        topic_apply.ensure_topic(admin, spec, brokers, bus.catalog.bus.min_insync_replicas)
    finally:
        admin.close()
    return spec.name


def changes(count: int, seed: int) -> list[dict[str, Any]]:
    """Delivery records of `count` people: a first image, a rename of every second one, a delete
    of every fifth; each entity's versions in order."""
    fields = REGISTRY.policy(LIBRARY)
    records = []
    for index, person in enumerate(generate(LIBRARY, count, seed=seed, department="public_security")):
        event = to_event(LIBRARY, "public_security", {**person, "marital_status": "married"}, "test")
        image = {name: event["data"].get(name) for name in DELIVERED}
        base = {**event, "source_system": "router", "data": {**dict.fromkeys(fields), **image}}
        records.append({**base, "event_id": f"{event['entity_id']}-1", "sequence": 1, "fields_set": list(DELIVERED)})
        if index % 2 == 0:
            renamed = {**base["data"], "name": f"{image['name']}改"}
            records.append({**base, "event_id": f"{event['entity_id']}-2", "sequence": 2, "fields_set": ["name"], "data": renamed})
        if index % 5 == 0:
            records.append({**base, "event_id": f"{event['entity_id']}-3", "sequence": 3, "op": "DELETE",
                            "fields_set": [], "data": dict.fromkeys(fields)})
    return records


def framed(bus, records: list[dict[str, Any]], version: int | None = None,
           image: tuple[str, ...] = DELIVERED) -> Iterator[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """(key, value, headers) of each delivery, as the router frames them."""
    secret, codec = bus.settings.key_secret.encode(), default_codec()
    for record in records:
        key = entity_key(secret, LIBRARY, record["entity_id"])
        headers = cloudevent_headers(record, LIBRARY, version or 2, key) + [
            (ACCEPTED_AT, now_millis()), (ROUTED_AT, now_millis()), (BACKFILL, b"false"),
            (SUBSCRIPTION, b"sub-test"), (PURPOSE, b"administrative_basis"), (MASKED, b""),
            (IMAGE, ",".join(image).encode())]
        yield key, codec.encode(LIBRARY, record, version), headers


def deliver(bus, records: list[dict[str, Any]], *, department: str = DEPARTMENT, version: int | None = None,
            image: tuple[str, ...] = DELIVERED) -> None:
    """Write deliveries as the router does."""
    producer = clients.producer(bus.settings, linger_ms=20)
    for key, value, headers in framed(bus, records, version, image):
        producer.send(bus.names.deliver(department, LIBRARY), key=key, value=value, headers=headers)
    producer.flush()
    producer.close()


def deliver_in_transactions(bus, committed: list[dict[str, Any]], aborted: list[dict[str, Any]], size: int = 7) -> None:
    """Write deliveries in Kafka transactions, as the router does: `committed` in several that
    commit, `aborted` in one that is aborted half-way through the others."""
    producer = clients.fast_producer(bus.settings, **{"transactional.id": f"{bus.names.prefix}test-router"})
    producer.init_transactions(60)
    topic = bus.names.deliver(DEPARTMENT, LIBRARY)
    batches = [committed[start:start + size] for start in range(0, len(committed), size)]
    for number, batch in enumerate(batches):
        if number == len(batches) // 2:
            _transaction(producer, topic, framed(bus, aborted), producer.abort_transaction)
        _transaction(producer, topic, framed(bus, batch), producer.commit_transaction)
    producer.flush(60)


def _transaction(producer: Any, topic: str, messages: Iterator[tuple[bytes, bytes, list]], end: Any) -> None:
    producer.begin_transaction()
    for key, value, headers in messages:
        producer.produce(topic, key=key, value=value, headers=headers)
    producer.flush(60)  # every partition added to the transaction before it ends (librdkafka #4849)
    end(60)


def projection(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What the store must hold: per live entity, the image of its highest version."""
    expected: dict[str, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: r["sequence"]):
        current = expected.get(record["entity_id"])
        if current is not None and current["version"] >= record["sequence"]:
            continue
        if record["op"] == "DELETE":
            expected[record["entity_id"]] = {"version": record["sequence"], "deleted": True}
            continue
        expected[record["entity_id"]] = {"version": record["sequence"], **{name: record["data"][name] for name in DELIVERED}}
    return {entity: row for entity, row in expected.items() if not row.get("deleted")}


def store_view(url: str) -> dict[str, dict[str, Any]]:
    with open_store(url) as store:
        return {row["entity_id"]: {"version": row["version"], **{name: row[name] for name in DELIVERED}}
                for row in store.rows(LIBRARY)}


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/health.db"
    return pg.fresh_database(request.getfixturevalue("postgres_dsn"))


def test_the_store_equals_the_projection_of_the_deliveries(bus, store_url: str) -> None:
    bus.apply_catalog()
    make_delivery_topic(bus)
    records = changes(60, seed=5)
    stale = [r for r in records if r["sequence"] == 1][:10]  # a redelivery after the fact: must be ignored
    deliver(bus, records + stale)
    seen: list[tuple[str, int]] = []
    with Subscriber(bus.settings, DEPARTMENT, [LIBRARY], store_url,
                    on_change=lambda library, d: seen.append((d["entity_id"], d["version"]))) as subscriber:
        assert subscriber.catch_up(timeout=120) == len(records) + len(stale)
        (status,) = subscriber.status()
        watermark = subscriber.store.watermark(LIBRARY)
    assert store_view(store_url) == projection(records)
    assert (status.lag, status.rejected, status.ignored) == (0, 0, len(stale))
    assert status.applied == len(records) and len(seen) == len(records) + len(stale)
    assert watermark is not None and status.as_of == watermark
    committed = _group_offsets(bus, f"{bus.names.prefix}{DEPARTMENT}.subscriber")
    assert sum(committed.values()) == len(records) + len(stale), "lag tools see the subscriber's progress"


def test_transaction_markers_are_stepped_over_and_aborted_deliveries_never_applied(bus, tmp_path: Path) -> None:
    """Each transaction ends with a marker that takes an offset and is never returned: the
    subscriber still reaches the end (lag 0), and an aborted transaction's deliveries are not applied."""
    bus.apply_catalog()
    make_delivery_topic(bus)
    committed, aborted = changes(30, seed=29), changes(5, seed=31)
    deliver_in_transactions(bus, committed, aborted)
    url = f"sqlite:///{tmp_path}/health.db"
    with Subscriber(bus.settings, DEPARTMENT, [LIBRARY], url) as subscriber:
        assert subscriber.catch_up(timeout=120) == len(committed)
        (status,) = subscriber.status()
        ends = dict(subscriber.progress.ends)
        assert subscriber.progress.positions == ends, "every partition read past its last marker"
    assert (status.lag, status.applied, status.rejected) == (0, len(committed), 0)
    assert sum(ends.values()) > len(committed) + len(aborted), "the markers took offsets"
    assert store_view(url) == projection(committed)
    with Subscriber(bus.settings, DEPARTMENT, [LIBRARY], url) as subscriber:
        assert subscriber.catch_up(timeout=60) == 0, "resumed from the store's positions: nothing read again"


def test_a_subscriber_started_before_its_delivery_topic_exists_picks_it_up(bus, tmp_path: Path, monkeypatch) -> None:
    """Started before its subscription is approved (no delivery topic yet), beside a library whose
    topic exists: it looks again, and reads the new topic from its start once the router made it."""
    monkeypatch.setattr(subscriber_module, "_RECHECK_TOPICS_S", 0.5)
    bus.apply_catalog()
    make_delivery_topic(bus, library="legal_entity")
    records = changes(20, seed=23)
    url = f"sqlite:///{tmp_path}/health.db"
    with Subscriber(bus.settings, DEPARTMENT, [LIBRARY, "legal_entity"], url) as subscriber:
        assert [status.waiting for status in subscriber.status()] == [True, False]
        assert subscriber.poll_once(timeout_ms=200) == 0
        make_delivery_topic(bus)
        deliver(bus, records)
        deadline = time.monotonic() + 60
        while subscriber.status()[0].waiting and time.monotonic() < deadline:
            subscriber.poll_once(timeout_ms=200)
        subscriber.catch_up(timeout=60)
        population, legal_entity = subscriber.status()
    assert not population.waiting and (population.lag, population.applied) == (0, len(records))
    assert (legal_entity.lag, legal_entity.applied) == (0, 0)
    assert store_view(url) == projection(records)


def _group_offsets(bus, group: str) -> dict:
    admin = clients.admin(bus.settings)
    try:
        return {tp: meta.offset for tp, meta in admin.list_group_offsets(group)[group].items()}
    finally:
        admin.close()


def _subscribe(bus, store: str, log: Path, *extra: str, settings=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "govbus.cli", "subscribe", "-d", DEPARTMENT, "-l", LIBRARY,
                             "--store", store, "--every", "1", *extra], stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=settings_environment(settings or bus.settings))


def _applied(path: Path) -> int:
    try:
        with sqlite3.connect(path, timeout=5) as connection:
            return connection.execute(f"SELECT count(*) FROM {LIBRARY}").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_a_killed_subscriber_restarts_and_a_replay_rebuilds_to_the_same_result(bus, tmp_path: Path) -> None:
    bus.apply_catalog()
    make_delivery_topic(bus)
    records = changes(2500, seed=9)
    deliver(bus, records)
    expected, path, log = projection(records), tmp_path / "health.db", tmp_path / "subscribe.log"
    entities = len({r["entity_id"] for r in records})

    child = _subscribe(bus, f"sqlite:///{path}", log)
    deadline = time.monotonic() + 120
    while _applied(path) == 0 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed_at = _applied(path)
    assert 0 < killed_at < entities, f"killed after {killed_at} of {entities}: not mid-stream\n{log.read_text()}"
    print(f"killed with {killed_at} of {entities} entities applied")

    again = subprocess.run([sys.executable, "-m", "govbus.cli", "subscribe", "-d", DEPARTMENT, "-l", LIBRARY,
                            "--store", f"sqlite:///{path}", "--once"], capture_output=True, text=True, timeout=300,
                           env=settings_environment(bus.settings))
    assert again.returncode == 0, again.stderr
    assert "lag 0" in again.stdout and "current as of" in again.stdout
    assert store_view(f"sqlite:///{path}") == expected

    # From the beginning: into an empty store, and over the used one (emptied first).
    for url in (f"sqlite:///{tmp_path}/fresh.db", f"sqlite:///{path}"):
        started = time.monotonic()
        with Subscriber(bus.settings, DEPARTMENT, [LIBRARY], url, replay_from="beginning") as subscriber:
            assert subscriber.catch_up(timeout=300) == len(records)
        print(f"replayed {len(records)} deliveries into SQLite at {len(records) / (time.monotonic() - started):,.0f}/s")
        assert store_view(url) == expected

    # From an offset or a time: re-reads into the store as it is; versions make that harmless.
    with Subscriber(bus.settings, DEPARTMENT, [LIBRARY], f"sqlite:///{path}", replay_from=0) as subscriber:
        subscriber.catch_up(timeout=300)
        (status,) = subscriber.status()
    assert (status.applied, status.ignored) == (0, len(records))
    with Subscriber(bus.settings, DEPARTMENT, [LIBRARY], f"sqlite:///{path}",
                    replay_from="2999-01-01T00:00:00Z") as subscriber:
        assert subscriber.catch_up(timeout=60) == 0
    assert store_view(f"sqlite:///{path}") == expected


def test_a_department_follows_its_deliveries_under_its_own_login_until_sigterm(bus, tmp_path: Path) -> None:
    bus.apply_catalog()
    make_delivery_topic(bus)
    approved = control.request(bus.settings, SubscriptionRequest(department=DEPARTMENT, library=LIBRARY,
                                                                 fields=DELIVERED[:2], purpose="data_verification"))
    assert approved.state == "approved", "unconditional fields: the broker now lets health read its topic"
    records = changes(20, seed=13)
    deliver(bus, records)
    path, log = tmp_path / "health.db", tmp_path / "subscribe.log"
    child = _subscribe(bus, f"sqlite:///{path}", log, settings=bus.as_principal(DEPARTMENT))
    deadline = time.monotonic() + 120
    while _applied(path) < len({r["entity_id"] for r in records}) and time.monotonic() < deadline:
        time.sleep(0.2)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=60) == 0, log.read_text()
    assert store_view(f"sqlite:///{path}") == projection(records)
    assert "population: " in log.read_text() and "lag 0" in log.read_text()
    committed = _group_offsets(bus, f"{bus.names.prefix}{DEPARTMENT}.subscriber")
    assert sum(committed.values()) == len(records), "committed to its group under its own prefix on the way out"


def test_a_subscriber_pinned_to_v1_reads_events_written_with_v2(bus, tmp_path: Path) -> None:
    bus.apply_catalog()
    make_delivery_topic(bus)
    records = changes(10, seed=17)
    for record in records:
        if record["op"] != "DELETE":  # every version's image has the v2 field; the first sets it
            record["data"] = {**record["data"], "residence_region": "610113"}
            record["fields_set"] = [*record["fields_set"], *(["residence_region"] if record["sequence"] == 1 else [])]
    deliver(bus, records, version=2, image=(*DELIVERED, "residence_region"))
    pinned, latest = f"sqlite:///{tmp_path}/v1.db", f"sqlite:///{tmp_path}/v2.db"
    with Subscriber(bus.settings, DEPARTMENT, [LIBRARY], pinned, reader_versions={LIBRARY: 1}) as subscriber:
        subscriber.catch_up(timeout=120)
        assert subscriber.status()[0].rejected == 0
    with Subscriber(bus.settings, DEPARTMENT, [LIBRARY], latest) as subscriber:
        subscriber.catch_up(timeout=120)
    assert store_view(pinned) == store_view(latest) == projection(records)
    with open_store(pinned) as store:
        assert all("residence_region" not in row for row in store.rows(LIBRARY))
    with open_store(latest) as store:
        assert {row["residence_region"] for row in store.rows(LIBRARY)} == {"610113"}


def test_undecodable_deliveries_are_kept_aside_and_do_not_stop_the_subscriber(bus, tmp_path: Path) -> None:
    bus.apply_catalog()
    topic = make_delivery_topic(bus)
    records = changes(3, seed=21)
    send_raw(bus.settings, topic, b"\x00\x00\x00\x00\x07not avro at all", key=b"x")
    send_raw(bus.settings, topic, default_codec().encode("legal_entity", next(_legal_entity_events())), key=b"y")
    deliver(bus, records)
    url = f"sqlite:///{tmp_path}/health.db"
    with Subscriber(bus.settings, DEPARTMENT, [LIBRARY], url) as subscriber:
        subscriber.catch_up(timeout=120)
        (status,) = subscriber.status()
    assert status.rejected == 2 and status.lag == 0
    assert store_view(url) == projection(records)
    kept = [json.loads(line) for line in Path(f"{tmp_path}/health.db.rejected.jsonl").read_text().splitlines()]
    assert {entry["topic"] for entry in kept} == {topic} and len({(e["partition"], e["offset"]) for e in kept}) == 2
    assert any("Confluent" in entry["reason"] for entry in kept)
    assert any("legal_entity record in the population" in entry["reason"] for entry in kept)


def _legal_entity_events():
    for flat in generate("legal_entity", 1, seed=3):
        yield to_event("legal_entity", REGISTRY.departments("legal_entity")[0], flat, "test")
