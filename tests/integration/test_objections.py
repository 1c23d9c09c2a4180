"""Objections on a real broker: raised by a subscriber, answered by the field's authoritative
department — a correction through the normal publishing path, or a reasoned rejection —
and the raiser sees the outcome; each logged in as itself, folded by the authority processor."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import pytest
from kafka.errors import KafkaError

from govbus.consumers import objections
from govbus.consumers.corrections import pseudonym
from govbus.consumers.objections import ObjectionError
from govbus.errors import GovbusError
from govbus.processors.governance import audit
from govbus.processors.gate.decide import CORRECTIONS_SYSTEM
from govbus.producers.generate import generate
from govbus.producers.publisher import Publisher
from govbus.schemas.codec import default_codec
from govbus.topics.names import AUDIT

from kafka_helpers import cli, golden_records, golden_values, read_topic, send_raw

LIBRARY = "population"


def publish(bus, department: str, records: list[dict]) -> None:
    with Publisher(bus.settings, department, LIBRARY, names=bus.names) as publisher:
        assert all(publisher.publish(record).accepted for record in records)


def wait_for_golden(bus, entity_id: str, field: str, value: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        golden = golden_records(bus.settings, bus.names.state(LIBRARY)).get(entity_id)
        if golden and golden_values(golden).get(field) == value:
            return golden
        assert time.monotonic() < deadline, f"{entity_id}.{field} never became {value!r}: {golden}"
        time.sleep(0.5)


def test_a_pseudonymous_objection_is_resolved_by_a_published_correction(bus, start_processors) -> None:
    bus.apply_catalog()
    people = list(generate(LIBRARY, 4, seed=31, department="public_security"))
    publish(bus, "public_security", people)
    publish(bus, "civil_affairs", [{"citizen_id": p["citizen_id"], "sequence": 1, "marital_status": "married"}
                                   for p in people])
    start_processors("gate")
    start_processors("authority")
    wrong = people[2]["citizen_id"]
    wait_for_golden(bus, wrong, "marital_status", "married")

    # health sees people by pseudonym under a work-reference subscription; the router
    # left sharing records of its deliveries (one of them a decoy for another person).
    for person, event_id in ((people[1], "ev-decoy"), (people[2], "ev-wrong")):
        to_health = audit.delivery(department="health", subscription="sub-h", purpose="work_reference",
                                   fields=["citizen_id", "marital_status"], masked=["citizen_id"])
        record = audit.build_record(chain="population/0", previous=audit.GENESIS, delivered_at=datetime.now(timezone.utc),
                                    library=LIBRARY, entity_id=person["citizen_id"], event_id=event_id,
                                    version=2, op="UPSERT", backfill=False, deliveries=[to_health])
        send_raw(bus.settings, bus.names.bus(AUDIT), audit.encode(record), key=b"population/0")
    seen_as = pseudonym(bus.settings.key_secret.encode(), "sub-h", wrong)

    health = bus.as_principal("health")
    wait_for_acls(health)
    raised = cli(health, "objections", "raise", "-l", LIBRARY, "-e", seen_as, "-f", "marital_status",
                 "--reason", "divorced in 2023 per our records", "--subscription", "sub-h")
    assert raised.exit_code == 0, raised.output
    objection_id = re.search(r"obj-[0-9a-f]+", raised.output).group(0)
    assert "health → civil_affairs" in raised.output, "the owner is the field's authority, civil affairs"
    listed = cli(bus.as_principal("civil_affairs"), "objections", "list", "--owner", "civil_affairs", "--state", "open")
    assert objection_id in listed.output and "1 objection(s)." in listed.output

    civil = bus.as_principal("civil_affairs")
    resolved = objections.resolve(civil, objection_id, "divorced")
    assert resolved.state == "resolved" and resolved.correction_event_id
    assert resolved.real_entity_id == wrong, "the owner's copy names the entity behind the pseudonym"

    ingest = [default_codec().decode(m.value)[1] for m in read_topic(bus.settings, bus.names.ingest(LIBRARY, "civil_affairs"))]
    (correction,) = [event for event in ingest if event["event_id"] == resolved.correction_event_id]
    assert (correction["entity_id"], correction["fields_set"]) == (wrong, ["marital_status"])
    assert correction["source_system"] == CORRECTIONS_SYSTEM and correction["sequence"] > 10**15, "its own order"
    assert correction["data"]["marital_status"] == "divorced" and correction["source_department"] == "civil_affairs"
    wait_for_golden(bus, wrong, "marital_status", "divorced")  # the gate accepted it as the next change

    outcome = cli(health, "objections", "list", "--raised-by", "health")
    assert f"resolved by civil_affairs: correction {resolved.correction_event_id} published" in outcome.output
    assert wrong not in outcome.output, "the raiser never learns the identity behind the pseudonym"
    with pytest.raises(ObjectionError, match="already resolved"):
        objections.resolve(civil, objection_id, "single")


def wait_for_acls(settings, timeout: float = 60) -> None:
    """Until the broker applies the ACLs just made, a department cannot see its objections topic."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            objections.list_objections(settings)
            return
        except (GovbusError, KafkaError):
            assert time.monotonic() < deadline, "the department never got access to its objections topic"
            time.sleep(0.5)


def test_an_objection_is_rejected_with_a_reason_the_raiser_sees(bus, start_processors) -> None:
    bus.apply_catalog()
    start_processors("authority")
    health, civil = bus.as_principal("health"), bus.as_principal("civil_affairs")
    wait_for_acls(health)
    citizen = next(generate(LIBRARY, 1, seed=41))["citizen_id"]
    for field, message in (("biometric_digest", "not shared"), ("shoe_size", "has no field")):
        with pytest.raises(ObjectionError, match=message):
            objections.raise_objection(health, LIBRARY, citizen, field, "wrong")
    with pytest.raises(ObjectionError, match="pseudonym"):
        objections.raise_objection(health, LIBRARY, "p-" + "0" * 32, "marital_status", "wrong")
    with pytest.raises(ObjectionError, match="no objection"):
        objections.reject(civil, "obj-missing", "no such thing")

    raised = objections.raise_objection(health, LIBRARY, citizen, "marital_status", "says married; is single")
    with pytest.raises(ObjectionError, match="only civil_affairs may answer"):
        objections.reject(health, raised.id, "the raiser cannot answer its own objection")
    refused = cli(civil, "objections", "reject", raised.id,
                  "--reason", "marriage registered 2021-05-01, certificate 2021-0042")
    assert refused.exit_code == 0, refused.output

    outcome = cli(health, "objections", "list", "--raised-by", "health", "--state", "rejected")
    assert "rejected by civil_affairs: marriage registered 2021-05-01, certificate 2021-0042" in outcome.output
    (folded,) = objections.list_objections(health, raised_by="health")
    assert [step["step"] for step in folded.steps] == ["raised", "rejected"], "every step is on the record"
    again = cli(civil, "objections", "resolve", raised.id, "--correction", "single")
    assert again.exit_code == 1 and "already rejected" in again.output
