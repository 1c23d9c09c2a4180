"""Thousands of bad messages mixed with good ones, through the front door of a real broker.

A department's principal writes straight to its ingest topic what a careless or hostile
client could: random bytes, truncated Avro, an unknown schema fingerprint, null values,
null, empty and borrowed keys, the wrong partition, fake heartbeats, a spoofed source,
oversize records, hostile and unicode headers — each kind with a known reason — mixed with
valid events (some carrying hostile headers or unusual unicode). Afterwards every bad one is
in ``dlq.population`` with its reason, every good one is in the subscriber's store with no
producer header on its delivery, and the gate never restarted. The counts are printed.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

from govbus import clients
from govbus.consumers.subscriber import Subscriber
from govbus.processors.governance import control
from govbus.processors.gate import deadletters
from govbus.processors.gate.logic import key_partition
from govbus.processors.governance.subscriptions import SubscriptionRequest
from govbus.producers.generate import generate
from govbus.schemas.framing import HEARTBEAT_TYPE, PUBLISHED_AT, header_map

from kafka_helpers import encoded_event, read_topic, wait_for

LIBRARY, DEPARTMENT, SUBSCRIBER = "population", "public_security", "health"
FIELDS = ("citizen_id", "name", "household_address")
GOOD, BAD_PER_KIND = 400, 250
HOSTILE_HEADERS = [("ce_source", b"urn:govbus:department:health:system:forged"), ("x-anything", b"\x00\xff"),
                   ("ce_time", b"not a time"), ("\u202eevil", "名字\u0000".encode()), ("x-empty", None),
                   (PUBLISHED_AT, b"-1"), ("govbus_backfill", b"true")]
ODD_ADDRESSES = ["𠀀𪚥路 1 号", "Ｆｕｌｌｗｉｄｔｈ 路", "\u0627\u0644\u0639\u0631\u0628\u064a\u0629", "e\u0301\u0301\u0301",
                 "🏠 " * 40, "\u200b\u200d零宽"]
Message = tuple[bytes | None, bytes | None, list]


def _bad_messages(bus: Any, people: list[dict[str, Any]], count: int, rng: random.Random) -> list[tuple[str, Message, int | None]]:
    """(reason, message, partition offset from the key's) of each bad message; `count` of each kind."""
    def event(person: dict[str, Any], **changes: Any) -> Message:
        return encoded_event(bus.settings, LIBRARY, DEPARTMENT, {**person, **changes})

    others = iter(people)
    made: list[tuple[str, Message, int | None]] = []
    for _ in range(count):
        person, other = next(others), next(others)
        key, value, headers = event(person)
        cut = rng.randrange(10, len(value) - 1)
        made += [
            ("undecodable", (key, rng.randbytes(rng.randrange(1, 300)), headers), 0),
            ("undecodable", (key, value[:cut], headers), 0),
            ("unknown_schema", (key, value[:2] + rng.randbytes(8) + value[10:], headers), 0),
            ("empty_value", (key, None, headers), 0),
            ("wrong_key", (event(other)[0], value, headers), None),
            ("wrong_key", (None, value, headers), None),
            ("wrong_key", (b"", value, headers), None),
            ("wrong_partition", (key, value, headers), 1),
            ("bad_heartbeat", (key, rng.randbytes(20), [("ce_type", HEARTBEAT_TYPE)] + HOSTILE_HEADERS), 0),
            ("spoofed_source", encoded_event(bus.settings, LIBRARY, DEPARTMENT, person, claimed_department="health"), 0),
        ]
    made += [("golden_too_large", event(next(others), household_address="长安路" * 70_000), 0) for _ in range(4)]
    return made


def _good_messages(bus: Any, people: list[dict[str, Any]], rng: random.Random) -> list[Message]:
    good = []
    for number, person in enumerate(people):
        changes = {"household_address": rng.choice(ODD_ADDRESSES)} if number % 4 == 0 else {}
        key, value, headers = encoded_event(bus.settings, LIBRARY, DEPARTMENT, {**person, **changes})
        good.append((key, value, headers + HOSTILE_HEADERS if number % 3 == 0 else headers))
    return good


def _partition_count(settings: Any, topic: str) -> int:
    producer = clients.fast_producer(settings)
    return len(producer.list_topics(topic, timeout=30).topics[topic].partitions)


def _send_all(settings: Any, topic: str, messages: list[tuple[Message, int]]) -> None:
    producer = clients.fast_producer(settings)
    for (key, value, headers), partition in messages:
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers, partition=partition)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0


def test_thousands_of_bad_messages_are_dead_letters_and_every_good_one_reaches_the_store(
        bus, start_processors, tmp_path) -> None:
    rng = random.Random(20261202)
    bus.apply_catalog()
    worker = start_processors("gate", "router")
    pid = worker.process.pid
    subscription = control.request(bus.settings, SubscriptionRequest(
        department=SUBSCRIBER, library=LIBRARY, fields=FIELDS, purpose="administrative_basis"))
    control.approve(bus.settings, subscription.id, DEPARTMENT)
    people = list(generate(LIBRARY, GOOD + 2 * BAD_PER_KIND + 4, seed=77, department=DEPARTMENT))
    good, bad = _good_messages(bus, people[:GOOD], rng), _bad_messages(bus, people[GOOD:], BAD_PER_KIND, rng)
    topic = bus.names.ingest(LIBRARY, DEPARTMENT)
    count = _partition_count(bus.settings, topic)

    def placed(message: Message, shift: int | None) -> int:
        key = message[0]
        if shift is None or not key:  # a message under a borrowed or no key goes where its entity's would
            return rng.randrange(count)
        return (key_partition(key, count) + shift) % count

    mixed = [(message, key_partition(message[0], count)) for message in good]
    mixed += [(message, placed(message, shift)) for _, message, shift in bad]
    rng.shuffle(mixed)
    _send_all(bus.as_principal(DEPARTMENT), topic, mixed)

    letters = wait_for(bus.settings, bus.names.dlq(LIBRARY), len(bad), timeout=90)
    reasons = Counter(deadletters.describe(list(letter.headers))["reason"] for letter in letters)
    rows = _store_rows(bus, tmp_path, GOOD)
    deliveries = read_topic(bus.settings, bus.names.deliver(SUBSCRIBER, LIBRARY))
    print(f"\nfuzz: {len(good):,} good and {len(bad):,} bad messages; dead letters by reason {dict(reasons)}; "
          f"{len(rows):,} rows in the store, {len(deliveries):,} deliveries")
    assert reasons == Counter(reason for reason, _, _ in bad)
    assert {row["citizen_id"] for row in rows} == {person["citizen_id"] for person in people[:GOOD]}
    shared = read_topic(bus.settings, bus.names.shared(LIBRARY))
    leaked = {(name, value) for change in shared for name, value in change.headers} & set(HOSTILE_HEADERS)
    assert len(shared) == GOOD and not leaked, f"producer headers reached shared.population: {leaked}"
    # (a delivery's govbus_backfill may be "true": a change accepted before the router saw the approval)
    leaked = {(name, value) for delivery in deliveries for name, value in delivery.headers} & set(HOSTILE_HEADERS)
    assert not leaked - {("govbus_backfill", b"true")}, f"producer headers reached a delivery topic: {leaked}"
    live = [header_map(d.headers) for d in deliveries if header_map(d.headers).get("govbus_backfill") == b"false"]
    assert all(headers["ce_source"].startswith(b"urn:govbus:department:public_security:") for headers in live)
    assert worker.process.poll() is None and worker.process.pid == pid, "the gate never stopped"
    assert (worker.health() or {}).get("status") == "ready"


def _store_rows(bus: Any, tmp_path: Any, count: int) -> list[dict[str, Any]]:
    deadline, rows = time.monotonic() + 90, []
    with Subscriber(bus.as_principal(SUBSCRIBER), SUBSCRIBER, [LIBRARY], f"sqlite:///{tmp_path}/fuzz.db") as subscriber:
        while time.monotonic() < deadline and len(rows) < count:
            subscriber.catch_up(timeout=5)
            rows = list(subscriber.store.rows(LIBRARY))
    return rows
