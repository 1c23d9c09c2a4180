"""Life-event deliveries (a death, a deregistration): logged in ``govbus_life_events`` beside
the current view, never written into it; once per event and subscription; announced to
``on_event`` (and not ``on_change``) after the batch is committed. Without a broker."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from govbus.consumers import subscriber as subscriber_module
from govbus.consumers.commands import events as events_command
from govbus.consumers.commands import status_line
from govbus.consumers.deliveries import to_delivery
from govbus.consumers.progress import LibraryStatus, Partition
from govbus.consumers.stores import Store, StoreError, open_store
from govbus.consumers.subscriber import Subscriber
from govbus.consumers.tables import Tables
from govbus.schemas.codec import default_codec
from govbus.schemas.framing import (BACKFILL, EVENT_DATE, IMAGE, LIFE_EVENT, MASKED, PURPOSE, ROUTED_AT,
                                    SUBSCRIPTION)
from govbus.schemas.registry import default_registry
from govbus.settings import Settings
from govbus.topics.names import TopicNames

LIBRARY = "population"
REGISTRY = default_registry()
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
DIED = date(2026, 11, 30)
TOPIC = "deliver.health.population"
PERSON = "610102199001011234"


def record(event_id: str, sequence: int, **data: Any) -> dict[str, Any]:
    """A delivery record as the router writes it: every data field present, unset ones null."""
    return {"event_id": event_id, "entity_id": PERSON, "op": "UPSERT", "fields_set": list(data),
            "source_department": "health", "source_system": "s", "sequence": sequence,
            "valid_from": T0 - timedelta(days=1), "recorded_at": T0,
            "data": {**dict.fromkeys(REGISTRY.policy(LIBRARY)), **data}}


def death(event_id: str = "life-1", sequence: int = 4) -> dict[str, Any]:
    return record(event_id, sequence, date_of_death=DIED)


def event_headers(name: str = "death", day: bytes | None = b"2026-11-30", subscription: bytes = b"sub-deaths",
                  payload: tuple[str, ...] = ("date_of_death",)) -> dict[str, bytes]:
    found = {LIFE_EVENT: name.encode(), SUBSCRIPTION: subscription, PURPOSE: b"pension_stop", MASKED: b"",
             IMAGE: ",".join(payload).encode(), BACKFILL: b"false",
             ROUTED_AT: str(int(T0.timestamp() * 1000)).encode(), "ce_type": b"cn.gov.govbus.population.death.v1"}
    if day is not None:
        found[EVENT_DATE] = day
    return found


def record_headers(subscription: bytes = b"sub-deaths") -> dict[str, bytes]:
    return {SUBSCRIPTION: subscription, PURPOSE: b"pension_stop", IMAGE: b"citizen_id,name,date_of_death",
            BACKFILL: b"false", ROUTED_AT: str(int(T0.timestamp() * 1000)).encode()}


def name_change(sequence: int = 3, name: str = "王小明") -> dict[str, Any]:
    return to_delivery(record(f"change-{sequence}", sequence, citizen_id=PERSON, name=name), record_headers())


def died(event_id: str = "life-1", **headers: Any) -> dict[str, Any]:
    return to_delivery(death(event_id), event_headers(**headers))


# -- message → delivery ---------------------------------------------------------------
def test_a_life_event_delivery_is_named_and_dated_from_its_headers() -> None:
    delivery = died()
    assert (delivery["life_event"], delivery["event_date"]) == ("death", DIED)
    assert (delivery["fields"], delivery["data"]) == (["date_of_death"], {"date_of_death": DIED})
    assert (delivery["event_id"], delivery["version"], delivery["subscription"]) == ("life-1", 4, "sub-deaths")


def test_a_record_delivery_is_no_life_event() -> None:
    assert (name_change()["life_event"], name_change()["event_date"]) == (None, None)


def test_a_missing_or_garbled_event_date_leaves_the_event_undated() -> None:
    assert died(day=None)["event_date"] is None
    assert died(day=b"30.11.2026")["event_date"] is None


def test_a_life_event_without_a_name_is_refused() -> None:
    with pytest.raises(ValueError, match="without its name"):
        died(name=" ")


# -- the store: a log beside the current view, on both backends ---------------------------
@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as opened:
        Tables(opened, REGISTRY).prepare(LIBRARY, REGISTRY.latest(LIBRARY))
        yield opened


def test_a_life_event_is_logged_and_leaves_the_current_view_untouched(store: Store) -> None:
    store.apply(LIBRARY, [name_change(sequence=3)])
    before = store.rows(LIBRARY)
    result = store.apply(LIBRARY, [died()], positions={(TOPIC, 0): 2})
    assert (result.upserted, result.deleted, result.ignored, result.events) == (0, 0, 0, 1)
    assert result.new_events == {("sub-deaths", "life-1")}
    assert store.rows(LIBRARY) == before, "no upsert, no version change, no field blanked"
    assert store.get(LIBRARY, PERSON)["version"] == 3 and store.get(LIBRARY, PERSON)["date_of_death"] is None
    (logged,) = store.events()
    assert (logged["event"], logged["event_id"], logged["entity_id"]) == ("death", "life-1", PERSON)
    assert logged["version"] == 4, "the entity's version at the event, kept in the log only"
    assert (logged["library"], logged["subscription_id"], logged["purpose"]) == (LIBRARY, "sub-deaths", "pension_stop")
    assert (logged["event_date"], logged["delivered_at"], logged["valid_from"]) == (DIED, T0, T0 - timedelta(days=1))
    assert store.positions() == {(TOPIC, 0): 2}


def test_a_life_event_alone_creates_no_row() -> None:
    with open_store("sqlite:///:memory:") as store:
        Tables(store, REGISTRY).prepare(LIBRARY, REGISTRY.latest(LIBRARY))
        store.apply(LIBRARY, [died()])
        assert (store.get(LIBRARY, PERSON), store.count(LIBRARY), len(store.events())) == (None, 0, 1)
        assert store.subscriptions() == {}, "a payload is not what the subscription's rows hold"


def test_the_same_event_delivered_again_is_logged_once_and_counted_as_ignored(store: Store) -> None:
    first = store.apply(LIBRARY, [died(), died()])  # a duplicate within the batch
    replayed = store.apply(LIBRARY, [died(), died("life-2")])  # a replay from an earlier offset, and a new one
    assert (first.events, first.ignored) == (1, 1)
    assert (replayed.events, replayed.ignored, replayed.new_events) == (1, 1, {("sub-deaths", "life-2")})
    assert [logged["event_id"] for logged in store.events()] == ["life-1", "life-2"]


def test_the_same_event_under_another_subscription_is_logged_for_each(store: Store) -> None:
    result = store.apply(LIBRARY, [died(), died(subscription=b"sub-archive")])
    assert result.events == 2
    assert [logged["subscription_id"] for logged in store.events()] == ["sub-deaths", "sub-archive"]


def test_events_are_filtered_by_library_subscription_and_event_in_arrival_order(store: Store) -> None:
    Tables(store, REGISTRY).prepare("legal_entity", REGISTRY.latest("legal_entity"))
    deregistered = to_delivery({**record("life-3", 9, deregistration_date=DIED), "data": {"deregistration_date": DIED}},
                               event_headers("deregistered", payload=("deregistration_date",)))
    married = to_delivery(record("life-2", 5, marriage_registration_date=DIED), event_headers(
        "marriage", subscription=b"sub-family", payload=("marriage_registration_date",)))
    store.apply(LIBRARY, [died("life-9"), married])
    store.apply("legal_entity", [deregistered])
    store.apply(LIBRARY, [died("life-1", subscription=b"sub-family")])

    def ids(**filters: str) -> list[str]:
        return [logged["event_id"] for logged in store.events(**filters)]

    assert ids() == ["life-9", "life-2", "life-3", "life-1"], "arrival order, not event-id order"
    assert ids(library=LIBRARY) == ["life-9", "life-2", "life-1"]
    assert ids(library="legal_entity") == ["life-3"]
    assert ids(subscription_id="sub-family") == ["life-2", "life-1"]
    assert ids(event="death") == ["life-9", "life-1"]
    assert ids(library=LIBRARY, subscription_id="sub-family", event="death") == ["life-1"]
    assert ids(event="birth") == []


def test_the_payload_reads_back_with_its_types_and_masked_values_as_text(store: Store) -> None:
    masked = to_delivery(record("life-5", 6, date_of_death="2026-**-**", name="王*"),
                         {**event_headers(payload=("date_of_death", "name")), MASKED: b"date_of_death,name"})
    store.apply(LIBRARY, [died(), masked])
    exact, hidden = store.events()
    assert exact["payload"] == {"date_of_death": DIED} and type(exact["payload"]["date_of_death"]) is date
    assert hidden["payload"] == {"date_of_death": "2026-**-**", "name": "王*"}
    assert (exact["masked"], hidden["masked"]) == ([], ["date_of_death", "name"])


def test_the_payload_is_json_with_dates_as_iso_text(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path}/store.db") as store:
        Tables(store, REGISTRY).prepare(LIBRARY, REGISTRY.latest(LIBRARY))
        store.apply(LIBRARY, [died()])
    with sqlite3.connect(tmp_path / "store.db") as connection:
        payload, day = connection.execute("SELECT payload, event_date FROM govbus_life_events").fetchone()
    assert (json.loads(payload), day) == ({"date_of_death": "2026-11-30"}, "2026-11-30")


def test_a_batch_with_a_wrong_payload_value_is_rolled_back_with_its_records_and_positions(store: Store) -> None:
    wrong = to_delivery(record("life-7", 5, date_of_death="yesterday"), event_headers())
    with pytest.raises(StoreError, match="date_of_death must be a date.*nothing of the batch was applied"):
        store.apply(LIBRARY, [name_change(), died("life-6"), wrong], positions={(TOPIC, 0): 3})
    assert (store.events(), store.rows(LIBRARY), store.positions()) == ([], [], {})


def test_reset_empties_the_log_so_a_replay_logs_every_event_again(store: Store) -> None:
    store.apply(LIBRARY, [died()])
    store.reset()
    assert store.events() == []
    assert store.apply(LIBRARY, [died()]).events == 1


def test_an_event_without_payload_is_logged_with_an_empty_one(store: Store) -> None:
    moved = to_delivery(record("life-4", 7), event_headers("moved_out", day=None, payload=()))
    store.apply(LIBRARY, [moved])
    (logged,) = store.events(event="moved_out")
    assert (logged["payload"], logged["event_date"], logged["version"]) == ({}, None, 7)


def test_a_store_made_before_the_log_gets_it_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as connection:
        connection.execute("DROP TABLE govbus_life_events")
    with open_store(f"sqlite:///{path}") as reopened:
        Tables(reopened, REGISTRY).prepare(LIBRARY, REGISTRY.latest(LIBRARY))
        assert reopened.apply(LIBRARY, [died()]).events == 1


def test_a_refused_event_is_rejected_and_the_rest_of_the_batch_applied() -> None:
    rejected: list[tuple[int, str]] = []
    with open_store("sqlite:///:memory:") as store:
        tables = Tables(store, REGISTRY)
        tables.prepare(LIBRARY, REGISTRY.latest(LIBRARY))
        batch = [(SimpleNamespace(offset=0), name_change()), (SimpleNamespace(offset=1), died()),
                 (SimpleNamespace(offset=2), to_delivery(record("life-8", 5, date_of_death=7), event_headers()))]
        result = tables.apply(LIBRARY, batch, {(TOPIC, 0): 3}, T0, lambda m, why: rejected.append((m.offset, why)))
        assert (result.upserted, result.events, [offset for offset, _ in rejected]) == (1, 1, [2])
        assert [logged["event_id"] for logged in store.events()] == ["life-1"]
        assert store.positions() == {(TOPIC, 0): 3}


# -- the subscriber: on_event after the commit, on_change for records only ----------------
class Message:
    """Stands in for a confluent-kafka `Message` read without error."""

    def __init__(self, offset: int, value: bytes, headers: dict[str, bytes]) -> None:
        self._offset, self._value, self._headers = offset, value, list(headers.items())

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return PERSON.encode()

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return 1, int(T0.timestamp() * 1000)


class Consumer:
    """A librdkafka consumer with no topics yet: it hands out what a test queues."""

    def __init__(self) -> None:
        self.queued: list[Message] = []

    def list_topics(self, topic: str, timeout: float) -> SimpleNamespace:
        return SimpleNamespace(topics={})

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return taken

    def position(self, partitions: list[Any]) -> list[Any]:
        return []

    def offsets_for_times(self, partitions: list[Any], timeout: float) -> list[Any]:
        return [SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=0, error=None) for tp in partitions]

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        return None

    def close(self) -> None:
        return None


class Access:
    """Every subscription active: no end of access to cap the watermark."""

    def __init__(self, *_: Any) -> None:
        return None

    def poll(self) -> None:
        return None

    def ended_at(self, department: str, library: str, now: datetime) -> None:
        return None

    def close(self) -> None:
        return None


@pytest.fixture
def follow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """A subscriber of health's population deliveries over a stand-in consumer; `follow(messages,
    on_change=…, on_event=…)` reads the messages as one poll and returns the subscriber."""
    consumer, opened = Consumer(), []
    monkeypatch.setattr(subscriber_module.clients, "fast_consumer", lambda *_, **__: consumer)
    monkeypatch.setattr(subscriber_module, "SubscriptionWatch", Access)

    def start(**callbacks: Any) -> Subscriber:
        settings = Settings()
        names = TopicNames(settings.topic_prefix)
        assert names.deliver("health", LIBRARY) == TOPIC
        made = Subscriber(settings, "health", [LIBRARY], "sqlite:///:memory:", names=names,
                          rejected_path=tmp_path / "rejected.jsonl", **callbacks)
        made.progress.start(Partition(TOPIC, 0), 0)
        opened.append(made)
        return made

    def poll(subscriber: Subscriber, *deliveries: tuple[dict[str, Any], dict[str, bytes]]) -> None:
        start_at = subscriber.progress.positions[Partition(TOPIC, 0)]
        consumer.queued = [Message(start_at + number, default_codec().encode(LIBRARY, value), headers)
                           for number, (value, headers) in enumerate(deliveries)]
        assert subscriber.poll_once(timeout_ms=0) == len(deliveries)

    yield SimpleNamespace(start=start, poll=poll)
    for made in opened:
        made.close()


def test_on_event_is_called_for_a_life_event_and_on_change_only_for_records(follow: Any) -> None:
    changes, events = [], []
    subscriber = follow.start(on_change=lambda library, delivery: changes.append(delivery["event_id"]),
                              on_event=lambda library, event: events.append((library, event)))
    follow.poll(subscriber, (record("change-3", 3, citizen_id=PERSON, name="王小明"), record_headers()),
                (death(), event_headers()))
    assert changes == ["change-3"]
    assert [(library, event["event"], event["event_id"]) for library, event in events] == [(LIBRARY, "death", "life-1")]
    assert events[0][1] == subscriber.store.events()[0], "the callback gets the event as the log reads it back"
    assert subscriber.store.get(LIBRARY, PERSON)["version"] == 3


def test_a_redelivered_life_event_does_not_call_on_event_again(follow: Any) -> None:
    events: list[str] = []
    subscriber = follow.start(on_event=lambda library, event: events.append(event["event_id"]))
    follow.poll(subscriber, (death(), event_headers()), (death(), event_headers()))
    follow.poll(subscriber, (death(), event_headers()), (death("life-2"), event_headers()))
    assert events == ["life-1", "life-2"]
    (status,) = subscriber.status()
    assert (status.events, status.ignored, status.applied) == (2, 2, 0)


def test_a_failing_on_event_is_logged_and_the_subscriber_goes_on(follow: Any, caplog: pytest.LogCaptureFixture) -> None:
    def broken(library: str, event: dict[str, Any]) -> None:
        raise RuntimeError("the pension system is down")

    subscriber = follow.start(on_event=broken)
    with caplog.at_level(logging.ERROR, logger="govbus.subscriber"):
        follow.poll(subscriber, (death(), event_headers()))
        follow.poll(subscriber, (death("life-2"), event_headers()))
    assert [logged["event_id"] for logged in subscriber.store.events()] == ["life-1", "life-2"]
    assert sum("on_event failed for population" in entry.getMessage() for entry in caplog.records) == 2
    assert subscriber.store.positions() == {(TOPIC, 0): 2}


# -- the command line -------------------------------------------------------------------------
def test_the_status_line_counts_life_events_apart_from_applied_rows() -> None:
    line = status_line([LibraryStatus(LIBRARY, TOPIC, upserted=5, events=2, lag=0)])
    assert line.startswith("population: 5 applied, 2 life events, lag 0")


@pytest.fixture
def logged_store(tmp_path: Path) -> Path:
    path = tmp_path / "health.db"
    with open_store(f"sqlite:///{path}") as store:
        Tables(store, REGISTRY).prepare(LIBRARY, REGISTRY.latest(LIBRARY))
        marriage = to_delivery(record("life-2", 5, marriage_registration_date=DIED),
                               event_headers("marriage", payload=("marriage_registration_date",)))
        store.apply(LIBRARY, [died(), marriage])
    return path


def test_govbus_events_lists_the_log_with_a_count(logged_store: Path) -> None:
    result = CliRunner().invoke(events_command, ["--store", str(logged_store), "--event", "death"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-1] == "1 life event(s)." and len(lines) == 2
    assert f"population.death  {PERSON} v4  on 2026-11-30" in lines[0] and '"date_of_death": "2026-11-30"' in lines[0]


def test_govbus_events_json_gives_one_object_per_event(logged_store: Path) -> None:
    result = CliRunner().invoke(events_command, ["--store", str(logged_store), "--library", LIBRARY, "--json"])
    assert result.exit_code == 0, result.output
    found = [json.loads(line) for line in result.output.splitlines()]
    assert [(each["event"], each["event_date"]) for each in found] == [
        ("death", "2026-11-30"), ("marriage", "2026-11-30")]
    assert found[1]["payload"] == {"marriage_registration_date": "2026-11-30"}


def test_govbus_events_refuses_a_store_that_does_not_exist(tmp_path: Path) -> None:
    result = CliRunner().invoke(events_command, ["--store", str(tmp_path / "typo.db")])
    assert isinstance(result.exception, StoreError) and "no store at" in str(result.exception)
    assert not (tmp_path / "typo.db").exists()
