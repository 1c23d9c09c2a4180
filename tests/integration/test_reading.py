"""Reading a topic to its end on a real broker, when transactions are still on their way."""

from __future__ import annotations

import threading
import time
import uuid

from kafka.admin import NewTopic

from govbus import clients
from govbus.reading import stream_topic


def _topic(bus) -> str:
    topic = bus.settings.topic_prefix + "reading"
    admin = clients.admin(bus.settings)
    admin.create_topics([NewTopic(topic, 2, 1)])
    admin.close()
    return topic


def _open_transaction(bus, topic: str, count: int):
    producer = clients.fast_producer(bus.settings, **{"transactional.id": f"reading-{uuid.uuid4().hex}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for number in range(count):
        producer.produce(topic, key=f"k{number}".encode(), value=b"v", partition=number % 2)
    producer.flush(30)
    return producer


def test_a_settled_read_waits_for_a_transaction_committed_while_it_waits(bus) -> None:
    topic = _topic(bus)
    producer = _open_transaction(bus, topic, 6)
    assert list(stream_topic(bus.settings, topic)) == [], "an open transaction is not committed data"
    committer = threading.Timer(1.0, lambda: producer.commit_transaction(30))
    committer.start()
    try:
        keys = {message.key for message in stream_topic(bus.settings, topic, settle=20.0)}
    finally:
        committer.join()
    assert keys == {f"k{number}".encode() for number in range(6)}


def test_a_settled_read_of_a_transaction_nobody_finishes_ends_after_its_patience(bus) -> None:
    topic = _topic(bus)
    producer = _open_transaction(bus, topic, 4)
    started = time.monotonic()
    try:
        assert list(stream_topic(bus.settings, topic, settle=1.5)) == []
        waited = time.monotonic() - started
        assert 1.5 <= waited < 15, waited
    finally:
        producer.abort_transaction(30)
