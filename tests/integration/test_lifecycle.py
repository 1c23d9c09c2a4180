"""A subscription's end and a source's rejections, on the real secured broker: an expiry closes
the department's read on the broker and stops its deliveries and its store's watermark; a
source reads what the gate refused of its own events, and the broker refuses it anyone else's."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta


from govbus import clients
from govbus.consumers.subscriber import Subscriber
from govbus.processors.governance import control
from govbus.processors.governance import subscriptions as rules
from govbus.processors.governance.subscriptions import SubscriptionRequest
from govbus.producers.generate import generate
from govbus.producers.publisher import Publisher
from govbus.schemas.rules import CHINA_TIME
from govbus.topics.names import SUBSCRIPTIONS

from govbus.processors.gate.golden import GoldenFormat
from govbus.processors.router.projection import Projector
from govbus.schemas.registry import default_registry

from kafka_helpers import cli, encoded_event, golden_records, read_topic, send_raw, wait_for

LIBRARY = "population"


def read_refused(settings, topic: str) -> bool:
    """Whether the broker refuses this principal the topic (its metadata says so)."""
    admin = clients.admin(settings)
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    return described["error_code"] == 29  # TOPIC_AUTHORIZATION_FAILED


def publish(bus, people: list[dict]) -> None:
    with Publisher(bus.as_principal("public_security"), "public_security", LIBRARY, names=bus.names) as publisher:
        assert all(publisher.publish(person).accepted for person in people)


def eventually(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_an_expiry_closes_the_read_stops_deliveries_and_stops_the_stores_watermark(bus, start_processors, tmp_path) -> None:
    bus.apply_catalog()
    start_processors("authority")
    start_processors("gate", "router")
    health = bus.as_principal("health")
    today = datetime.now(CHINA_TIME).date()
    subscription = control.request(health, SubscriptionRequest(department="health", library=LIBRARY, until=today,
                                                               fields=("citizen_id", "name"), purpose="administrative_basis"))
    assert subscription.state == "approved", subscription.decision
    deliver = bus.names.deliver("health", LIBRARY)
    people = list(generate(LIBRARY, 8, seed=17, department="public_security"))
    publish(bus, people[:5])
    with Subscriber(health, "health", [LIBRARY], f"sqlite:///{tmp_path}/health.db") as subscriber:
        eventually(lambda: subscriber.catch_up(timeout=10) >= 0 and subscriber.store.count(LIBRARY) == 5, "5 rows")
        assert not read_refused(health, deliver)

        # What the broker holds once the clock passes its `until`: the same approval, its day behind.
        passed = subscription.model_copy(update={"until": today - timedelta(days=1)})
        send_raw(bus.settings, bus.names.bus(SUBSCRIPTIONS), rules.to_json(passed), rules.key(passed))
        eventually(lambda: control.read_all(bus.settings)[subscription.id].state == "expired",
                   "the authority processor records the expiry")
        expired = control.read_all(bus.settings)[subscription.id]
        assert (expired.decision.by, expired.decision.at) == (rules.BUS, passed.expires_at)
        listed = cli(health, "subscriptions", "list", "--json")
        assert listed.exit_code == 0 and json.loads(listed.output.splitlines()[0])["state"] == "expired", listed.output
        eventually(lambda: read_refused(health, deliver), "the broker refuses the department's read")

        delivered = len(read_topic(bus.settings, deliver))
        publish(bus, people[5:])
        wait_for(bus.settings, bus.names.shared(LIBRARY), 8)
        time.sleep(3)  # the router has had the changes; none may be delivered
        assert len(read_topic(bus.settings, deliver)) == delivered, "no delivery after the expiry"

        for _ in range(4):
            subscriber.poll_once(timeout_ms=500)
        (status,) = subscriber.status()
        assert status.ended_at == passed.expires_at
        stopped = subscriber.store.watermark(LIBRARY)
        time.sleep(2)
        for _ in range(4):
            subscriber.poll_once(timeout_ms=500)
        assert subscriber.store.watermark(LIBRARY) == stopped, "the view is current no longer: its watermark stops"
        assert subscriber.store.count(LIBRARY) == 5


def test_a_source_reads_the_gates_rejections_of_its_own_events_and_nobody_elses(bus, start_processors) -> None:
    bus.apply_catalog()
    start_processors("gate")
    civil = bus.as_principal("civil_affairs")
    person = next(generate(LIBRARY, 1, seed=23, department="civil_affairs"))
    delete = {"op": "delete", "sequence": 5, "citizen_id": person["citizen_id"]}
    key, value, headers = encoded_event(civil, LIBRARY, "civil_affairs", delete)
    send_raw(civil, bus.names.ingest(LIBRARY, "civil_affairs"), value, key, headers)
    letters = wait_for(bus.settings, bus.names.dlq(LIBRARY), 1)
    (copy,) = wait_for(bus.settings, bus.names.rejections_of("civil_affairs"), 1)
    assert (copy.key, copy.value, list(copy.headers)) == (letters[0].key, letters[0].value, list(letters[0].headers))

    own = cli(civil, "rejections", "--json")
    assert own.exit_code == 0, own.output
    (found,) = [json.loads(line) for line in own.output.splitlines()]
    assert found["reason"] == "not_authoritative_delete" and found["library"] == LIBRARY
    assert found["event_id"] == dict(headers)["ce_id"].decode() and found["origin"].startswith(
        bus.names.ingest(LIBRARY, "civil_affairs"))
    assert cli(civil, "rejections", "--reason", "duplicate_sequence").output.startswith("0 rejection(s)")

    snooping = cli(bus.as_principal("tax"), "rejections", "-d", "civil_affairs")
    assert snooping.exit_code != 0 and "cannot read civil_affairs's rejections" in snooping.output
    assert read_refused(bus.as_principal("tax"), bus.names.rejections_of("civil_affairs"))
    assert cli(bus.as_principal("public_security"), "rejections").output.startswith("0 rejection(s)"), \
        "another source's rejections are not in its own"


def projected(bus, subscription) -> dict[str, dict]:
    """Each golden record as the subscription's projection delivers it: entity → fields."""
    registry = default_registry()
    golden_format = GoldenFormat(registry.policy(LIBRARY))
    projector = Projector.for_subscription(subscription, registry, bus.settings.key_secret.encode())
    expected = {}
    for plain in golden_records(bus.settings, bus.names.state(LIBRARY)).values():
        golden = golden_format.load(plain)
        data = {**dict.fromkeys(registry.policy(LIBRARY)), **golden.values}
        delivered, _ = projector.project({"entity_id": golden.entity_id, "version": golden.version, "op": "SNAPSHOT",
                                          "backfill": True, "fields_set": sorted(golden.values), "data": data,
                                          "source_department": "x", "event_id": "e", "valid_from": None,
                                          "recorded_at": None})
        if delivered is not None:
            expected[delivered["entity_id"]] = {**delivered["data"], "version": golden.version}
    return expected


def test_two_subscriptions_of_one_department_to_one_library_each_keep_their_own_fields(bus, start_processors,
                                                                                        tmp_path) -> None:
    bus.apply_catalog()
    start_processors("gate", "router")
    people = list(generate(LIBRARY, 30, seed=29, department="public_security"))
    publish(bus, people)
    names = control.request(bus.settings, SubscriptionRequest(
        department="health", library=LIBRARY, fields=("citizen_id", "name"), purpose="work_reference"))
    regions = control.request(bus.settings, SubscriptionRequest(
        department="health", library=LIBRARY, fields=("citizen_id", "household_region", "date_of_birth"),
        purpose="administrative_basis", filters=("household_region=61..",)))
    assert names.state == regions.state == "approved"
    moved = [{"citizen_id": p["citizen_id"], "sequence": 2, "name": p["name"] + "新", "household_region": "610102"}
             for p in people[::3]]
    publish(bus, moved)
    wait_for(bus.settings, bus.names.shared(LIBRARY), 40)

    with Subscriber(bus.as_principal("health"), "health", [LIBRARY], f"sqlite:///{tmp_path}/health.db") as subscriber:
        def converged() -> bool:
            subscriber.catch_up(timeout=10)
            return all({row["entity_id"]: row["version"] for row in subscriber.store.rows(LIBRARY, each.id)} ==
                       {entity: want["version"] for entity, want in projected(bus, each).items()}
                       for each in (names, regions))
        eventually(converged, "both subscriptions' rows at their golden versions", timeout=90)
        for subscription in (names, regions):
            expected = projected(bus, subscription)
            rows = {row["entity_id"]: row for row in subscriber.store.rows(LIBRARY, subscription.id)}
            assert rows and len(rows) == len(expected), subscription.id
            for entity, want in expected.items():
                assert {name: rows[entity][name] for name in want} == want, (subscription.id, entity)
                assert rows[entity]["purpose"] == subscription.purpose
        assert {identifier: held["purpose"] for identifier, held in subscriber.store.subscriptions().items()} == {
            names.id: "work_reference", regions.id: "administrative_basis"}, "each field's purpose is in the store"
        assert all(row["household_region"] is None for row in subscriber.store.rows(LIBRARY, names.id)), \
            "no field of the other subscription leaks into a row"
