"""Reading and writing topics in integration tests, the plain kafka-python way."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from kafka import TopicPartition

from govbus import clients
from govbus.producers.records import to_event
from govbus.reading import settled_ends
from govbus.schemas.codec import default_codec
from govbus.schemas.framing import cloudevent_headers, entity_key
from govbus.settings import Settings


def read_topic(settings: Settings, topic: str) -> list[Any]:
    """Every message now in the topic, in partition order."""
    consumer = clients.consumer(settings)
    partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or [])]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    ends = settled_ends(settings, consumer, partitions, settle=2.0)  # a commit's markers reach topics one by one
    messages: list[Any] = []
    deadline = time.monotonic() + 30
    while any(consumer.position(tp) < ends[tp] for tp in partitions) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            messages += records
    consumer.close()
    return messages


def wait_for(settings: Settings, topic: str, count: int, timeout: float = 60,
             where: Callable[[Any], bool] = lambda message: True) -> list[Any]:
    """Poll until ``count`` matching messages are in the topic (fail with what was found)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in read_topic(settings, topic) if where(m)]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, f"{topic}: {len(found)} of {count} expected messages after {timeout} s"
            return found
        time.sleep(0.5)


def latest_by_key(messages: list[Any]) -> dict[bytes, Any]:
    latest: dict[bytes, Any] = {}
    for message in messages:
        latest[message.key] = message
    return latest


def golden_records(settings: Settings, topic: str) -> dict[str, dict]:
    """entity id → the golden record (JSON) now in a state topic."""
    records = {}
    for message in latest_by_key(read_topic(settings, topic)).values():
        if message.value is not None:
            golden = json.loads(message.value)
            records[golden["entity_id"]] = golden
    return records


def golden_values(golden: dict) -> dict[str, Any]:
    """field → authoritative value of a golden record (see processors/gate/golden.py)."""
    return {name: entry[0] for name, entry in golden["fields"].items()}


def golden_source(golden: dict, field: str) -> str:
    """The department whose event set a field of a golden record."""
    event_id = golden["fields"][field][1]
    return golden["events"][event_id][0]


def send_raw(settings: Settings, topic: str, value: bytes, key: bytes = b"k", headers: list | None = None) -> None:
    producer = clients.producer(settings)
    producer.send(topic, key=key, value=value, headers=headers or []).get(timeout=30)
    producer.close()


def encoded_event(settings: Settings, library: str, department: str, flat: dict, *,
                  claimed_department: str | None = None) -> tuple[bytes, bytes, list]:
    """(key, value, headers) of an event as a publisher would send it, without validating."""
    event = to_event(library, claimed_department or department, flat, "test-system")
    key = entity_key(settings.key_secret.encode(), library, event["entity_id"])
    return key, default_codec().encode(library, event), cloudevent_headers(event, library, 1, key)


def topic_names(settings: Settings) -> set[str]:
    """The topics the broker has (that this principal may see)."""
    admin = clients.admin(settings)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def cli(settings: Settings, *arguments: str) -> Any:
    """`govbus <arguments>` run in-process as the principal of `settings` (a click Result);
    the settings cache is cleared around it so the command reads these settings, not a test's earlier ones."""
    from click.testing import CliRunner

    from govbus import settings as settings_module
    from govbus.cli import main
    from govbus.processes import settings_environment

    settings_module.get_settings.cache_clear()
    try:
        return CliRunner().invoke(main, list(arguments), env=settings_environment(settings))
    finally:
        settings_module.get_settings.cache_clear()


def until_allowed(act: Callable[[], Any], timeout: float = 60.0) -> Any:
    """`act()` once the broker applies the ACLs just made (a principal's acts topic, say)."""
    from kafka.errors import KafkaError

    from govbus.errors import GovbusError

    deadline = time.monotonic() + timeout
    while True:
        try:
            return act()
        except (GovbusError, KafkaError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
