"""The gate on a real broker admits only what it verified itself: one test per finding.

Each bad message is written straight to an ingest topic (as a misbehaving or hostile client
with write access could), into the partition where a good event follows it. It must land in
``dlq.population`` with its reason, the good event after it must still reach
``shared.population`` (the partition is not stalled) and the gate must still be running.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from govbus import clients
from govbus.processors.governance import control
from govbus.processors.gate import deadletters
from govbus.processors.gate.logic import key_partition
from govbus.processors.governance.subscriptions import SubscriptionRequest
from govbus.producers.generate import generate
from govbus.schemas.framing import (HEARTBEAT_TYPE, header_map, heartbeat_headers, iso_seconds, source_lateness,
                                    source_urn)
from govbus.settings import Settings

from kafka_helpers import encoded_event, read_topic, send_raw, wait_for

LIBRARY = "population"
DEPARTMENT = "public_security"
Message = tuple[bytes | None, bytes | None, list]


def _send(settings: Settings, topic: str, message: Message, partition: int) -> None:
    """Write one message to an explicit partition (kafka_helpers.send_raw lets the key choose)."""
    key, value, headers = message
    producer = clients.producer(settings)
    try:
        producer.send(topic, key=key, value=value, headers=headers, partition=partition).get(timeout=30)
    finally:
        producer.close()


def _partition_count(settings: Settings, topic: str) -> int:
    producer = clients.producer(settings)
    try:
        return len(producer.partitions_for(topic))
    finally:
        producer.close()


def _event(bus: Any, seed: int, **changes: Any) -> Message:
    record = {**next(generate(LIBRARY, 1, seed=seed, department=DEPARTMENT)), **changes}
    return encoded_event(bus.settings, LIBRARY, DEPARTMENT, record)


def _good_event_on(bus: Any, partition: int, count: int) -> Message:
    """A valid event whose key maps to `partition`."""
    for seed in range(1000, 2000):
        message = _event(bus, seed)
        if key_partition(message[0], count) == partition:
            return message
    raise AssertionError(f"no generated person maps to partition {partition}")


def _rejected_then_admitted(bus: Any, start_processors: Callable[..., Any], bad: Message, reason: str,
                            partition: Callable[[int], int] | None = None) -> Any:
    """Send `bad`, then a good event to the same partition; the dead letter of `bad`.

    `partition` chooses the bad message's partition from the partition count (default: the
    one its key maps to, or 0 without a key)."""
    bus.apply_catalog()
    gate = start_processors("gate")
    settings, names = bus.settings, bus.names
    topic = names.ingest(LIBRARY, DEPARTMENT)
    count = _partition_count(settings, topic)
    where = partition(count) if partition else (key_partition(bad[0], count) if bad[0] else 0)
    good = _good_event_on(bus, where, count)
    _send(settings, topic, bad, where)
    _send(settings, topic, good, where)
    wait_for(settings, names.shared(LIBRARY), 1, timeout=45, where=lambda message: message.key == good[0])
    letters = read_topic(settings, names.dlq(LIBRARY))
    assert [deadletters.describe(list(letter.headers))["reason"] for letter in letters] == [reason]
    assert gate.process is not None and gate.process.poll() is None, "the gate is still running"
    assert (gate.health() or {}).get("status") == "ready", gate.health()
    return letters[0]


def test_a_null_value_is_a_dead_letter_and_the_partition_goes_on(bus, start_processors) -> None:
    key, _, headers = _event(bus, 1)
    letter = _rejected_then_admitted(bus, start_processors, (key, None, headers), "empty_value")
    assert letter.value is None and letter.key == key


def test_a_null_key_is_a_dead_letter_and_the_partition_goes_on(bus, start_processors) -> None:
    key, value, headers = _event(bus, 2)
    letter = _rejected_then_admitted(bus, start_processors, (None, value, headers), "wrong_key",
                                     partition=lambda count: key_partition(key, count))
    assert letter.value == value


def test_another_entitys_key_is_a_dead_letter_and_the_partition_goes_on(bus, start_processors) -> None:
    _, value, headers = _event(bus, 3)
    other_key = _event(bus, 4)[0]
    letter = _rejected_then_admitted(bus, start_processors, (other_key, value, headers), "wrong_key")
    detail = deadletters.describe(list(letter.headers))["detail"]
    person = next(generate(LIBRARY, 1, seed=3, department=DEPARTMENT))["citizen_id"]
    assert person not in detail and "pseudonymous key" in detail


def test_an_event_on_another_partition_than_its_key_is_a_dead_letter_and_the_partition_goes_on(
        bus, start_processors) -> None:
    message = _event(bus, 5)
    _rejected_then_admitted(bus, start_processors, message, "wrong_partition",
                            partition=lambda count: (key_partition(message[0], count) + 1) % count)


def test_garbage_with_a_heartbeat_type_is_a_dead_letter_and_the_partition_goes_on(bus, start_processors) -> None:
    garbage = (b"heartbeat:public_security", b"not a heartbeat", [("ce_type", HEARTBEAT_TYPE)])
    letter = _rejected_then_admitted(bus, start_processors, garbage, "bad_heartbeat")
    assert letter.value == b"not a heartbeat"


def test_a_publishers_heartbeat_is_still_skipped(bus, start_processors) -> None:
    """A guard for the test above: the real thing is no dead letter."""
    bus.apply_catalog()
    start_processors("gate")
    topic = bus.names.ingest(LIBRARY, DEPARTMENT)
    count = _partition_count(bus.settings, topic)
    key = f"heartbeat:{DEPARTMENT}".encode()
    _send(bus.settings, topic, (key, b"", heartbeat_headers(DEPARTMENT, "hukou")), key_partition(key, count))
    good = _good_event_on(bus, key_partition(key, count), count)
    _send(bus.settings, topic, good, key_partition(key, count))
    wait_for(bus.settings, bus.names.shared(LIBRARY), 1, timeout=45, where=lambda message: message.key == good[0])
    assert read_topic(bus.settings, bus.names.dlq(LIBRARY)) == []


def test_an_event_whose_golden_record_would_be_too_large_is_a_dead_letter_and_the_partition_goes_on(
        bus, start_processors) -> None:
    # 630 KB of address: the event fits the topic, the golden record (value and change image) would not.
    message = _event(bus, 6, household_address="长安路" * 70_000)
    letter = _rejected_then_admitted(bus, start_processors, message, "golden_too_large")
    assert letter.value == message[1], "the event is kept whole"
    assert "bytes" in deadletters.describe(list(letter.headers))["detail"]


def _with_headers(message: Message, replaced: dict[str, bytes | None]) -> Message:
    """`message` with the named headers replaced or added (None: removed)."""
    key, value, headers = message
    kept = [(name, content) for name, content in headers if name not in replaced]
    return key, value, kept + [(name, content) for name, content in replaced.items() if content is not None]


def _wait_until_routing(worker: Any, timeout: float = 60.0) -> None:
    """Until the router's book holds the approved subscription and it owes no backfill."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        router = ((worker.health() or {}).get("counts") or {}).get("router") or {}
        if router.get("subscriptions_active") == 1 and router.get("backfills_owed") == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"the router did not take up the subscription: {worker.health()}")


def test_producer_headers_do_not_travel_and_times_come_from_the_validated_event(bus, start_processors) -> None:
    """A department's own headers reach nobody: ``ce_source`` is the topic's department's,
    ``ce_time`` the event's validated ``recorded_at`` — so a change recorded three days ago
    but stamped "now" measures three days late — and a header it made up, or a garbled or
    missing time, is not passed on to the subscriber."""
    bus.apply_catalog()
    asked = SubscriptionRequest(department="hr_social_security", library=LIBRARY, purpose="data_verification",
                                fields=("citizen_id", "name", "sex"))
    assert control.request(bus.settings, asked).state == "approved", "unconditional fields are approved at once"
    workers = start_processors("gate", "router")
    _wait_until_routing(workers)  # the changes are then routed live, not delivered by the approval's backfill
    three_days_ago = (datetime.now(timezone.utc) - timedelta(days=3)).isoformat()
    just_now = datetime.now(timezone.utc).isoformat()
    now = just_now.encode()
    spoofed = source_urn("tax", "forged").encode()
    messages = [
        _with_headers(_event(bus, 71, recorded_at=three_days_ago), {"ce_time": now, "ce_source": spoofed, "x-evil": b"1"}),
        _with_headers(_event(bus, 72, recorded_at=just_now), {"ce_time": b"not a time", "x-evil": b"2"}),
        _with_headers(_event(bus, 73, recorded_at=just_now), {"ce_time": None}),
    ]
    for key, value, headers in messages:
        send_raw(bus.settings, bus.names.ingest(LIBRARY, DEPARTMENT), value, key=key, headers=headers)

    delivered = wait_for(bus.settings, bus.names.deliver("hr_social_security", LIBRARY), 3, timeout=90)
    by_key = {message.key: header_map(message.headers) for message in delivered}
    assert len(by_key) == 3
    for headers in by_key.values():
        assert "x-evil" not in headers, "a header the source made up reaches no subscriber"
        assert headers["ce_source"].decode().startswith(f"urn:govbus:department:{DEPARTMENT}:"), headers["ce_source"]
        assert iso_seconds(headers.get("ce_time")) is not None, "every delivery has a well-formed time"
    lateness = sorted(source_lateness(headers) for headers in by_key.values())
    assert lateness[-1] > 3 * 86400 - 120, f"the change recorded three days ago measured {lateness[-1]:.1f} s late"
    assert lateness[0] < 600, "the changes recorded now measure as recorded now"
