"""The gate on a real broker: validation, one number one source, conflicts, order, crashes."""

from __future__ import annotations

import json
import time
import urllib.request

from govbus.processors.gate import deadletters
from govbus.producers.generate import generate
from govbus.producers.publisher import Publisher
from govbus.schemas.codec import default_codec
from govbus.schemas.framing import header_map

from kafka_helpers import encoded_event, golden_records, golden_source, golden_values, read_topic, send_raw, wait_for


def _publish(bus, department: str, library: str, records: list[dict]) -> None:
    with Publisher(bus.settings, department, library, names=bus.names) as publisher:
        results = [publisher.publish(record) for record in records]
    assert all(result.accepted for result in results), [r.violations for r in results if not r.accepted]


def test_valid_events_reach_shared_and_state(bus, start_processors) -> None:
    bus.apply_catalog()
    start_processors("gate")
    records = list(generate("population", 30, seed=21, department="public_security"))
    _publish(bus, "public_security", "population", records)
    shared = wait_for(bus.settings, bus.names.shared("population"), 30)
    decoded = [default_codec().decode(message.value)[1] for message in shared]
    assert {event["entity_id"] for event in decoded} == {record["citizen_id"] for record in records}
    assert all(event["sequence"] == 1 for event in decoded), "the first version of each entity"
    assert all(header_map(m.headers)["govbus_backfill"] == b"false" for m in shared)
    golden = golden_records(bus.settings, bus.names.state("population"))
    assert len(golden) == 30
    first = records[0]
    assert golden_values(golden[first["citizen_id"]])["name"] == first["name"]
    assert golden_source(golden[first["citizen_id"]], "name") == "public_security"


def test_the_gate_reports_its_consumer_lag_per_partition_held_and_it_falls_to_zero(bus, start_processors) -> None:
    bus.apply_catalog()
    gate = start_processors("gate")
    _publish(bus, "public_security", "population", list(generate("population", 40, seed=22, department="public_security")))
    wait_for(bus.settings, bus.names.shared("population"), 40)
    ingest = bus.names.ingest("population", "public_security")
    deadline, lags, loop = time.monotonic() + 30, {}, {}
    while time.monotonic() < deadline:
        loop = (gate.health() or {}).get("loops", {}).get("gate", {})
        with urllib.request.urlopen(gate.health_url.replace("/health", "/metrics"), timeout=5) as answer:
            lags = {line.split()[0]: float(line.split()[1]) for line in answer.read().decode().splitlines()
                    if line.startswith("govbus_consumer_lag{") and f'topic="{ingest}"' in line}
        if loop.get("events", 0) >= 40 and loop.get("lag") == 0 and lags:
            break
        time.sleep(0.5)
    assert loop.get("events", 0) >= 40 and loop.get("lag") == 0, loop
    measured = {name.split('partition="')[1].split('"')[0] for name in lags}
    held = {entry[len(ingest) + 1:-1] for entry in gate.health()["assigned"] if entry.startswith(f"{ingest}[")}
    assert measured == held and held, (measured, held)
    assert all(value == 0 for value in lags.values()), lags


def test_each_kind_of_bad_event_lands_in_the_dead_letter_topic_with_its_reason(bus, start_processors) -> None:
    bus.apply_catalog()
    start_processors("gate")
    settings, names = bus.settings, bus.names
    civil_topic = names.ingest("population", "civil_affairs")
    send_raw(settings, civil_topic, b"this is not avro", headers=[("ce_id", b"x1")])
    send_raw(settings, civil_topic, b"\xc3\x01" + b"\x00" * 8 + b"\x02")
    good = next(generate("population", 1, seed=4, department="civil_affairs"))
    key, value, headers = encoded_event(settings, "population", "civil_affairs", good, claimed_department="public_security")
    send_raw(settings, civil_topic, value, key, headers)
    broken = {**good, "citizen_id": good["citizen_id"][:-1] + ("0" if good["citizen_id"][-1] != "0" else "1")}
    key, value, headers = encoded_event(settings, "population", "civil_affairs", broken)
    send_raw(settings, civil_topic, value, key, headers)
    delete = {"op": "delete", "sequence": 5, "citizen_id": good["citizen_id"]}
    key, value, headers = encoded_event(settings, "population", "civil_affairs", delete)
    send_raw(settings, civil_topic, value, key, headers)
    letters = wait_for(settings, names.dlq("population"), 5)
    reasons = [deadletters.describe(list(m.headers))["reason"] for m in letters]
    assert sorted(reasons) == sorted(["undecodable", "unknown_schema", "spoofed_source", "invalid", "not_authoritative_delete"])
    first = next(m for m in letters if deadletters.describe(list(m.headers))["reason"] == "undecodable")
    assert first.value == b"this is not avro", "the original bytes are kept untouched"
    assert ("ce_id", b"x1") in list(first.headers), "and the original headers"
    info = deadletters.describe(list(first.headers))
    assert info["processor"] == "gate" and info["topic"] == civil_topic and info["time"]
    invalid = next(m for m in letters if deadletters.describe(list(m.headers))["reason"] == "invalid")
    detail = json.loads(deadletters.describe(list(invalid.headers))["detail"])
    assert {"entity_id", "citizen_id"} & {violation["field"] for violation in detail}
    assert all(good["citizen_id"][:-1] not in value.decode(errors="ignore") for name, value in invalid.headers
               if name.startswith("govbus_dlq")), "the reason headers quote no personal data"
    assert read_topic(settings, names.shared("population")) == []


def test_a_non_authoritative_value_is_not_applied_and_a_disagreement_raises_one_conflict(bus, start_processors) -> None:
    bus.apply_catalog()
    start_processors("gate")
    person = next(generate("population", 1, seed=31, department="public_security"))
    citizen = person["citizen_id"]
    _publish(bus, "public_security", "population", [person])
    _publish(bus, "civil_affairs", "population", [{"citizen_id": citizen, "sequence": 1, "marital_status": "married"}])
    # Public security's copy of the marital status says otherwise, twice (a repeat is not a new conflict).
    _publish(bus, "public_security", "population", [
        {**person, "sequence": 2, "marital_status": "unmarried"},
        {**person, "sequence": 3, "marital_status": "unmarried"},
    ])
    conflicts = wait_for(bus.settings, bus.names.bus("control.conflicts"), 1)
    wait_for(bus.settings, bus.names.shared("population"), 2)
    conflicts = read_topic(bus.settings, bus.names.bus("control.conflicts"))
    assert len(conflicts) == 1
    conflict = json.loads(conflicts[0].value)
    assert conflict["entity_id"] == citizen and conflict["field"] == "marital_status"
    assert (conflict["authoritative_department"], conflict["authoritative_value"]) == ("civil_affairs", "married")
    assert (conflict["reported_department"], conflict["reported_value"]) == ("public_security", "unmarried")
    golden = golden_records(bus.settings, bus.names.state("population"))[citizen]
    assert golden_values(golden)["marital_status"] == "married"


def test_duplicates_and_late_older_versions_do_not_change_the_state(bus, start_processors) -> None:
    bus.apply_catalog()
    start_processors("gate")
    settings, names = bus.settings, bus.names
    person = next(generate("population", 1, seed=41, department="civil_affairs"))
    newer = {**person, "sequence": 5, "marital_status": "divorced", "event_id": "6b0f5f8e-6a8c-4b53-9b8f-0a9d8f1c0001"}
    older = {**person, "sequence": 4, "marital_status": "married"}
    topic = names.ingest("population", "civil_affairs")
    for flat in (newer, newer, older):
        key, value, headers = encoded_event(settings, "population", "civil_affairs", flat)
        send_raw(settings, topic, value, key, headers)
    marker = next(generate("population", 1, seed=42, department="civil_affairs"))
    _publish(bus, "civil_affairs", "population", [marker])  # processed after the three above
    wait_for(settings, names.state("population"), 1, where=lambda m: json.loads(m.value)["entity_id"] == marker["citizen_id"])
    golden = golden_records(settings, names.state("population"))[person["citizen_id"]]
    assert golden_values(golden)["marital_status"] == "divorced"
    assert golden["version"] == 1
    shared = [default_codec().decode(m.value)[1] for m in read_topic(settings, names.shared("population"))]
    about_person = [event for event in shared if event["entity_id"] == person["citizen_id"]]
    assert [event["sequence"] for event in about_person] == [1, 1], "a redelivery re-emits the same version"


def _applied(worker) -> int:
    health = worker.health() or {}
    return sum(health.get("counts", {}).get("gate", {}).get("population", {}).values())


def test_killed_mid_stream_the_gate_restarts_with_nothing_lost_and_nothing_applied_twice(bus, start_processors) -> None:
    import time

    bus.apply_catalog()
    people = list(generate("population", 500, seed=51, department="public_security"))
    statuses = ["married", "divorced", "married", "widowed"]
    marriages = [{"citizen_id": p["citizen_id"], "sequence": n + 1, "marital_status": status}
                 for n, status in enumerate(statuses) for p in people]
    _publish(bus, "public_security", "population", people)
    _publish(bus, "civil_affairs", "population", marriages)
    total = len(people) + len(marriages)
    worker = start_processors("gate", session_timeout=10.0)  # killed below: its partitions move after 10 s
    deadline = time.monotonic() + 120
    while _applied(worker) < total // 4:
        assert time.monotonic() < deadline, "the gate made no progress"
        time.sleep(0.05)
    worker.kill()
    assert _applied(worker) == 0, "the worker is gone"
    start_processors("gate")
    expected_versions = 1 + len(statuses)
    state_topic = bus.names.state("population")
    deadline = time.monotonic() + 180
    while True:
        golden = golden_records(bus.settings, state_topic)
        done = [g for g in golden.values() if g["version"] == expected_versions]
        if len(done) == len(people) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(golden) == len(people)
    for person in people:
        record = golden[person["citizen_id"]]
        assert record["version"] == expected_versions, "every change applied exactly once"
        assert golden_values(record)["marital_status"] == statuses[-1]
        assert golden_values(record)["name"] == person["name"]
        assert record["sources"]["civil_affairs"]["sequence"] == len(statuses)
    shared = [default_codec().decode(m.value)[1] for m in read_topic(bus.settings, bus.names.shared("population"))]
    versions: dict[str, dict[int, dict]] = {}
    for event in shared:
        seen = versions.setdefault(event["entity_id"], {})
        if event["sequence"] in seen:
            assert seen[event["sequence"]] == event, "a re-emitted version is identical to the first"
        seen[event["sequence"]] = event
    assert all(sorted(seen) == list(range(1, expected_versions + 1)) for seen in versions.values()), "no version lost"


def test_stopped_with_sigterm_the_gate_commits_every_event_it_handled(bus, start_processors) -> None:
    import time

    from kafka import TopicPartition

    from govbus import clients
    from govbus.processors.runtime.worker import group_id

    bus.apply_catalog()
    records = list(generate("population", 200, seed=61, department="public_security"))
    _publish(bus, "public_security", "population", records)
    worker = start_processors("gate")
    deadline = time.monotonic() + 120
    while _applied(worker) < len(records):
        assert time.monotonic() < deadline, "the gate did not handle every event"
        time.sleep(0.2)
    assert worker.stop() == 0, "a clean exit"
    topic = bus.names.ingest("population", "public_security")
    consumer = clients.consumer(bus.settings, group_id=group_id(bus.settings, "gate"))
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(partitions)
        committed = {tp: consumer.committed(tp) or 0 for tp in partitions}
    finally:
        consumer.close()
    assert committed == ends, "nothing handled is left uncommitted, nothing unhandled is committed"
