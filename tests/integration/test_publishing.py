"""Publishing on a real broker: what lands in the ingest topics is right, readable by others."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone

import avro.io
import avro.schema
import pytest
from cloudevents.v1.kafka import KafkaMessage, from_binary

from govbus import clients
from govbus.producers.generate import generate
from govbus.producers.publisher import Publisher
from govbus.schemas.registry import default_registry
from kafka_helpers import until_allowed

SOURCES = {"population": "public_security", "legal_entity": "market_regulation",
           "credit": "development_reform", "certificate": "data_bureau"}


def _read_all(settings, topic: str, expected: int) -> list:
    consumer = clients.consumer(settings, topic, consumer_timeout_ms=10000)
    messages = []
    for message in consumer:
        messages.append(message)
        if len(messages) >= expected:
            break
    consumer.close()
    return messages


def _apache_decode(payload: bytes, library: str) -> dict:
    """Decode with the Apache avro package, independently of fastavro and of our codec."""
    registry = default_registry()
    assert payload[:2] == b"\xc3\x01", "not Avro single-object encoding"
    writer = registry.by_fingerprint(payload[2:10])
    assert writer is not None and writer.library == library
    schema = avro.schema.parse(json.dumps(writer.schema))
    return avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(payload[10:])))


@pytest.mark.parametrize("library", sorted(SOURCES))
def test_generated_records_publish_and_read_back_with_apache_avro_and_cloudevents(bus, library: str) -> None:
    bus.apply_catalog()
    department = SOURCES[library]
    records = list(generate(library, 25, seed=11, department=department))
    with Publisher(bus.settings, department, library, names=bus.names, source_system="test-system") as publisher:
        results = [publisher.publish(record) for record in records]
        report = publisher.flush()
    assert all(result.accepted for result in results), [r.violations for r in results if not r.accepted]
    assert report.delivered == 25 and not report.failures
    messages = _read_all(bus.settings, bus.names.ingest(library, department), 25)
    assert len(messages) == 25
    key_field = default_registry().entity_key(library)
    by_entity = {record[key_field]: record for record in records}
    for message in messages:
        decoded = _apache_decode(message.value, library)
        assert decoded["entity_id"] in by_entity
        assert decoded["source_department"] == department
        assert decoded["entity_id"].encode() not in message.key, "the key must be a pseudonym, not the id"
        headers = {name: value for name, value in message.headers}
        event = from_binary(KafkaMessage(headers=headers, key=message.key, value=message.value),
                            data_unmarshaller=lambda value: value)
        assert event["specversion"] == "1.0"
        assert event["id"] == decoded["event_id"]
        assert event["source"] == f"urn:govbus:department:{department}:system:test-system"
        assert event["type"] == f"cn.gov.govbus.{library}.change.v1"
        assert event["subject"] == message.key.decode()
        assert event.get_data() == message.value
        for value in headers.values():
            assert decoded["entity_id"].encode() not in value, "no personal data in headers"


def test_the_same_entity_always_gets_the_same_key(bus) -> None:
    bus.apply_catalog()
    record = next(generate("population", 1, seed=3, department="public_security"))
    later = {**record, "sequence": 2, "name": "王小明"}
    with Publisher(bus.settings, "public_security", "population", names=bus.names) as publisher:
        publisher.publish(record)
        publisher.publish(later)
    first, second = _read_all(bus.settings, bus.names.ingest("population", "public_security"), 2)
    assert first.key == second.key and first.partition == second.partition


def test_a_tenth_bad_records_publishes_the_rest_and_reports_each_with_its_reason(bus) -> None:
    bus.apply_catalog()
    records = list(generate("population", 200, seed=5, invalid_share=0.1, department="public_security"))
    with Publisher(bus.settings, "public_security", "population", names=bus.names) as publisher:
        results = [publisher.publish(record) for record in records]
    rejected = [result for result in results if not result.accepted]
    accepted = [result for result in results if result.accepted]
    assert 5 <= len(rejected) <= 40
    for result in rejected:
        assert result.violations and all(v.rule and v.message and v.field for v in result.violations)
    messages = _read_all(bus.settings, bus.names.ingest("population", "public_security"), len(accepted))
    assert len(messages) == len(accepted)


def test_publisher_refuses_an_event_claiming_another_department(bus) -> None:
    bus.apply_catalog()
    record = next(generate("population", 1, seed=8, department="civil_affairs"))
    with Publisher(bus.settings, "civil_affairs", "population", names=bus.names) as publisher:
        from govbus.producers.records import to_event

        event = to_event("population", "public_security", record, "spoofer", now=datetime.now(timezone.utc))
        result = publisher.publish(event)
    assert not result.accepted
    assert any(v.rule == "own_department" for v in result.violations)


class _QueueWatch:
    """The publisher's own librdkafka producer, counting the sends it refused for a full queue."""

    def __init__(self, producer) -> None:
        self.producer = producer
        self.refused = 0

    def produce(self, *arguments, **options) -> None:
        try:
            self.producer.produce(*arguments, **options)
        except BufferError:
            self.refused += 1
            raise

    def __getattr__(self, name: str):
        return getattr(self.producer, name)


def test_a_bulk_publish_into_a_full_local_queue_waits_for_room_and_loses_nothing(bus) -> None:
    """A snapshot far larger than librdkafka's local queue: a send into the full queue waits
    for the broker (back-pressure) instead of failing, and every record arrives once."""
    bus.apply_catalog()
    records = list(generate("population", 3000, seed=21, department="public_security", op="snapshot"))
    with Publisher(bus.settings, "public_security", "population", names=bus.names, queued_records=20) as publisher:
        watch = publisher._producer = _QueueWatch(publisher._producer)
        results = [publisher.publish(record) for record in records]
        report = publisher.flush()
    assert all(result.accepted for result in results)
    assert watch.refused > 0, "the queue of 20 records never filled: back-pressure was not exercised"
    assert report.delivered == len(records) and not report.failures
    messages = _read_all(bus.settings, bus.names.ingest("population", "public_security"), len(records))
    event_ids = [dict(message.headers)["ce_id"].decode() for message in messages]
    assert sorted(event_ids) == sorted(result.event_id for result in results)


def test_a_send_the_broker_refuses_is_reported_with_its_event_id_not_dropped(bus) -> None:
    """Writing without the right to write: each failure is in the report, none counted delivered."""
    assert bus.secured, "the tests run against a secured broker by default"
    bus.apply_catalog()
    records = list(generate("population", 3, seed=4, department="public_security"))
    with Publisher(bus.as_principal("civil_affairs"), "public_security", "population", names=bus.names) as publisher:
        results = [publisher.publish(record) for record in records]
        report = publisher.flush()
    assert report.delivered == 0
    assert sorted(event_id for event_id, _ in report.failures) == sorted(result.event_id for result in results)
    assert all("AUTHORIZATION" in error for _, error in report.failures), report.failures


def test_connect_says_before_any_record_that_the_principal_may_not_publish(bus) -> None:
    """A source that starts learns of a missing right at once, with its cause."""
    from govbus.producers.publisher import PublisherError

    bus.apply_catalog()

    def connected() -> None:  # its own ingest topic, once the broker applies the ACLs just made
        with Publisher(bus.as_principal("public_security"), "public_security", "population", names=bus.names) as own:
            own.connect(timeout=30)

    until_allowed(connected)
    with Publisher(bus.as_principal("civil_affairs"), "public_security", "population", names=bus.names) as publisher:
        with pytest.raises(PublisherError, match="may not publish to .*acl apply"):
            publisher.connect(timeout=30, patience=1)


def test_connect_says_when_the_ingest_topic_is_missing(bus) -> None:
    from govbus.producers.publisher import PublisherError

    with Publisher(bus.settings, "public_security", "population", names=bus.names) as publisher:
        with pytest.raises(PublisherError, match="no ingest topic .*topics apply"):
            publisher.connect(timeout=30, patience=1)
