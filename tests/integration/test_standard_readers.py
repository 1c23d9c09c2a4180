"""A new user's reader, on a real broker: every message departments read (``shared.*`` and
``deliver.*``, backfills included) read with tools govbus does not use for its own reading —
a hand-configured confluent-kafka Consumer, the Apache `avro` package resolving each writer
schema from the committed files by fingerprint, and the CNCF CloudEvents SDK's Kafka binding."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections import Counter

import avro.io
import avro.schema
from cloudevents.v1.kafka import KafkaMessage, from_binary
from confluent_kafka import Consumer

from govbus import clients
from govbus.processors.governance import control
from govbus.processors.governance.subscriptions import SubscriptionRequest
from govbus.producers.generate import generate
from govbus.producers.publisher import Publisher
from govbus.schemas.writers import WRITERS_DIRECTORY

from kafka_helpers import wait_for

INDEX = json.loads((WRITERS_DIRECTORY / "index.json").read_text("utf-8"))
SCHEMAS = {name: avro.schema.parse((WRITERS_DIRECTORY / name).read_text("utf-8"))
           for name in INDEX["fingerprints"].values()}


def _publish(bus, department: str, library: str, records: list[dict]) -> None:
    with Publisher(bus.settings, department, library, names=bus.names) as publisher:
        results = [publisher.publish(record) for record in records]
    assert all(result.accepted for result in results), [r.violations for r in results if not r.accepted]


def _standard_consumer(bus) -> Consumer:
    """librdkafka configured by hand, as any Kafka user would, reading committed data only."""
    login = clients.sasl_credentials(bus.settings)
    return Consumer({"bootstrap.servers": bus.settings.bootstrap_servers, "group.id": f"reader-{uuid.uuid4().hex}",
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "isolation.level": "read_committed", "topic.metadata.refresh.interval.ms": 1000,
                     "security.protocol": bus.settings.security_protocol, "sasl.mechanisms": "SCRAM-SHA-512",
                     "sasl.username": login.username, "sasl.password": login.password})


def _read_everything(bus, expected: int, timeout: float = 60) -> list:
    """Every message on the test's shared.* and deliver.* topics (subscribed by pattern)."""
    prefix = bus.names.prefix.replace(".", r"\.")
    consumer = _standard_consumer(bus)
    consumer.subscribe([f"^{prefix}(shared|deliver)\\..*"])
    messages, deadline = [], time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
    finally:
        consumer.close()
    return messages


def _decode(value: bytes) -> tuple[str, dict]:
    """(the writer schema's file, the record), from the committed files by fingerprint."""
    assert value[:2] == b"\xc3\x01", "not Avro single-object encoding"
    name = INDEX["fingerprints"][value[2:10].hex()]
    return name, avro.io.DatumReader(SCHEMAS[name]).read(avro.io.BinaryDecoder(io.BytesIO(value[10:])))


def test_every_shared_and_delivered_message_reads_with_standard_avro_and_cloudevents(bus, start_processors) -> None:
    bus.apply_catalog()
    people = list(generate("population", 8, seed=181, department="public_security"))
    _publish(bus, "public_security", "population", people)
    _publish(bus, "market_regulation", "legal_entity", list(generate("legal_entity", 4, seed=182,
                                                                       department="market_regulation")))
    start_processors("gate", "router")
    wait_for(bus.settings, bus.names.shared("population"), 8, timeout=60)
    hr = control.request(bus.settings, SubscriptionRequest(
        department="hr_social_security", library="population", purpose="data_verification",
        fields=("citizen_id", "name", "sex")))
    civil = control.request(bus.settings, SubscriptionRequest(
        department="civil_affairs", library="population", purpose="work_reference",
        fields=("citizen_id", "name", "date_of_birth", "household_address")))
    control.approve(bus.settings, civil.id, "public_security")
    for department in ("hr_social_security", "civil_affairs"):
        wait_for(bus.settings, bus.names.deliver(department, "population"), 8, timeout=60)  # the backfills
    _publish(bus, "public_security", "population", list(generate("population", 3, seed=183, department="public_security")))
    for department in ("hr_social_security", "civil_affairs"):
        wait_for(bus.settings, bus.names.deliver(department, "population"), 11, timeout=60)  # and live changes

    messages = _read_everything(bus, expected=11 + 4 + 11 + 11)
    assert len(messages) == 37, Counter(message.topic() for message in messages)
    kinds = Counter()
    for message in messages:
        file_name, record = _decode(message.value())
        headers = {name: value for name, value in message.headers()}
        event = from_binary(KafkaMessage(headers=headers, key=message.key(), value=message.value()),
                            data_unmarshaller=lambda data: data)
        library = file_name.rsplit("-v", 1)[0]
        assert INDEX["dataschemas"][event["dataschema"]] == file_name, "ce_dataschema names the writer schema"
        assert (event["specversion"], event["id"]) == ("1.0", record["event_id"])
        assert event["type"] == f"cn.gov.govbus.{library}.change.v1" and event["source"].startswith("urn:govbus:")
        assert event["subject"] == message.key().decode() and event.get_data() == message.value()
        kinds[(message.topic().split(".")[1], headers["govbus_backfill"].decode())] += 1
    assert kinds == {("shared", "false"): 15, ("deliver", "true"): 16, ("deliver", "false"): 6}
