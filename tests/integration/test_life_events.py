"""Life events on the real secured broker: a generated population where some die, some move out
of a region and some marry; a department subscribed to deaths in one region receives exactly
those deaths, once each, with only the declared payload — across a gate killed mid-stream and
restarted and the same events sent again — and a department without approval receives none.
The same for companies deregistered, approved automatically (their fields are unconditional)."""

from __future__ import annotations

import time
import uuid
from datetime import date

from govbus.consumers.subscriber import Subscriber
from govbus.processors.governance import control
from govbus.processors.governance.subscriptions import SubscriptionRequest
from govbus.producers.generate import generate
from govbus.producers.publisher import Publisher
from govbus.schemas.codec import default_codec
from govbus.schemas.framing import EVENT_DATE, LIFE_EVENT, header_map

from kafka_helpers import read_topic, topic_names, wait_for

DIED = date(2026, 11, 30)


def publish(bus, department: str, library: str, records: list[dict]) -> None:
    with Publisher(bus.as_principal(department), department, library, names=bus.names) as publisher:
        results = [publisher.publish(record) for record in records]
    assert all(result.accepted for result in results), [r.violations for r in results if not r.accepted]


def life_events(bus, department: str, library: str) -> list[tuple[str, str, dict, dict]]:
    """(event, entity id, payload, headers) of each life event in the department's delivery topic."""
    topic = bus.names.deliver(department, library)
    if topic not in topic_names(bus.settings):
        return []
    found = []
    for message in read_topic(bus.settings, topic):
        headers = header_map(message.headers)
        if LIFE_EVENT in headers:
            _, record = default_codec().decode(message.value)
            payload = {name: value for name, value in record["data"].items() if value is not None}
            found.append((headers[LIFE_EVENT].decode(), record["entity_id"], payload, headers))
    return found


def settle(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_deaths_in_one_region_reach_its_subscriber_once_each_with_only_the_death_date(bus, start_processors,
                                                                                     tmp_path) -> None:
    bus.apply_catalog()
    gate = start_processors("gate", session_timeout=10.0)  # killed below: its partitions move after 10 s
    start_processors("router")
    people = list(generate("population", 24, seed=61, department="public_security"))
    publish(bus, "public_security", "population", people)
    wait_for(bus.settings, bus.names.shared("population"), len(people))
    region = people[0]["household_region"][:4]  # the filter: the first person's city
    deaths = control.request(bus.settings, SubscriptionRequest(
        department="education", library="population", events=("death",), purpose="administrative_basis",
        filters=(f"region={region}..",)))
    assert deaths.state == "requested" and deaths.awaiting == ("health",), "the death date's authority decides"
    deaths = control.approve(bus.settings, deaths.id, by="health")
    assert deaths.state == "approved"
    unapproved = control.request(bus.settings, SubscriptionRequest(
        department="tax", library="population", events=("death",), purpose="administrative_basis"))
    assert unapproved.state == "requested"

    dying = people[:8]
    death_events = [{"citizen_id": p["citizen_id"], "sequence": 1, "date_of_death": DIED.isoformat(),
                     "event_id": str(uuid.uuid4()), "valid_from": DIED.isoformat()} for p in dying]
    movers = [{"citizen_id": p["citizen_id"], "sequence": 2, "household_region": "650102"} for p in people[8:12]]
    marrying = [{"citizen_id": p["citizen_id"], "sequence": 1, "marital_status": "married",
                 "marriage_registration_date": "2026-10-01"} for p in people[12:16]]
    publish(bus, "health", "population", death_events[:4])
    publish(bus, "public_security", "population", movers)
    publish(bus, "civil_affairs", "population", marrying)
    wait_for(bus.settings, bus.names.shared("population"), len(people) + 4 + len(movers) + len(marrying))
    publish(bus, "health", "population", death_events[4:])
    gate.kill()  # mid-stream: an open transaction is aborted, its successor handles the batch again
    start_processors("gate")
    publish(bus, "health", "population", death_events[:4])  # the same events again: redelivered, no new event

    expected = {p["citizen_id"] for p in dying if p["household_region"].startswith(region)}
    assert expected and len(expected) < len(dying), "the population spans regions in and out of the filter"
    settle(lambda: len(life_events(bus, "education", "population")) >= len(expected), "the deaths are delivered")
    wait_for(bus.settings, bus.names.shared("population"), len(people) + len(movers) + len(marrying) + len(dying))
    time.sleep(2)  # the router has had every change; nothing more may come
    received = life_events(bus, "education", "population")
    assert sorted(entity for _, entity, _, _ in received) == sorted(expected), "each death of the region, once"
    for event, _, payload, headers in received:
        assert event == "death" and payload == {"date_of_death": DIED}, "only the declared payload"
        assert headers[EVENT_DATE] == DIED.isoformat().encode()
        assert headers["ce_type"] == b"cn.gov.govbus.population.death.v1"
        assert headers["govbus_subscription"] == deaths.id.encode()
    assert life_events(bus, "tax", "population") == [], "no approval, no event"

    store = f"sqlite:///{tmp_path}/education.db"
    announced: list[dict] = []
    with Subscriber(bus.as_principal("education"), "education", ["population"], store,
                    on_event=lambda library, event: announced.append(event)) as subscriber:
        settle(lambda: subscriber.catch_up(timeout=10) >= 0 and len(subscriber.store.events("population")) == len(expected),
               "the department's event log holds the deaths")
        logged = subscriber.store.events("population", event="death")
        assert subscriber.store.count("population") == 0, "an event subscription keeps no copy of the records"
    assert sorted(row["entity_id"] for row in logged) == sorted(expected)
    assert all(row["payload"] == {"date_of_death": DIED} and row["event_date"] == DIED for row in logged)
    assert sorted(event["event_id"] for event in announced) == sorted(row["event_id"] for row in logged)
    with Subscriber(bus.as_principal("education"), "education", ["population"], store,
                    replay_from="beginning") as replayed:
        replayed.catch_up(timeout=20)
        assert len(replayed.store.events("population")) == len(expected), "a replay logs each event once"


def test_a_deregistration_reaches_the_subscribed_department_approved_automatically(bus, start_processors) -> None:
    bus.apply_catalog()
    start_processors("gate", "router")
    companies = list(generate("legal_entity", 20, seed=62, department="market_regulation"))
    for company in companies:
        company.update(status="in_business", deregistration_date=None)
    publish(bus, "market_regulation", "legal_entity", companies)
    wait_for(bus.settings, bus.names.shared("legal_entity"), 20)
    closing = control.request(bus.settings, SubscriptionRequest(
        department="tax", library="legal_entity", events=("deregistered",), purpose="administrative_basis"))
    assert closing.state == "approved", closing.decision  # status and its date are unconditional fields

    gone = companies[:5]
    publish(bus, "market_regulation", "legal_entity", [
        {"credit_code": c["credit_code"], "sequence": 2, "status": "deregistered", "deregistration_date": "2026-11-28"}
        for c in gone])
    publish(bus, "market_regulation", "legal_entity", [
        {"credit_code": c["credit_code"], "sequence": 2, "business_scope": "软件开发"} for c in companies[5:10]])
    wait_for(bus.settings, bus.names.shared("legal_entity"), 30)
    settle(lambda: len(life_events(bus, "tax", "legal_entity")) >= 5, "the deregistrations are delivered")
    time.sleep(2)
    received = life_events(bus, "tax", "legal_entity")
    assert sorted(entity for _, entity, _, _ in received) == sorted(c["credit_code"] for c in gone)
    assert all(payload == {"status": "deregistered", "deregistration_date": date(2026, 11, 28)}
               for _, _, payload, _ in received)
