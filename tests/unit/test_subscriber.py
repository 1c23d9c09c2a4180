"""The subscriber's rules without a broker: message → delivery, replay, watermark, tables."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka import TopicPartition

from govbus.consumers.deliveries import Received, ReplayError, parse_replay, received, table_columns, to_delivery
from govbus.consumers.progress import Partition, Progress
from govbus.consumers.rejected import RejectedLog
from govbus.consumers.stores import open_store
from govbus.consumers.tables import Tables
from govbus.schemas.codec import default_codec
from govbus.schemas.framing import BACKFILL, IMAGE, MASKED, ROUTED_AT, SUBSCRIPTION
from govbus.schemas.registry import default_registry

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)
CHINA = timezone(timedelta(hours=8))
REGISTRY = default_registry()
POPULATION_FIELDS = tuple(REGISTRY.policy("population"))


def delivered(op: str = "UPSERT", sequence: int = 3, **data: object) -> dict:
    """A delivery record as the router writes it: every data field present, unset ones null."""
    return {"event_id": "e-1", "entity_id": "610102199001011234", "op": op, "fields_set": list(data),
            "source_department": "public_security", "source_system": "s", "sequence": sequence,
            "valid_from": None, "recorded_at": T0, "data": {**dict.fromkeys(POPULATION_FIELDS), **data}}


SUBSCRIBED = ("citizen_id", "name", "sex", "marital_status")


def headers(routed: datetime = T0, backfill: bool = False, image: tuple[str, ...] | None = None) -> dict[str, bytes]:
    return {ROUTED_AT: str(int(routed.timestamp() * 1000)).encode(), BACKFILL: b"true" if backfill else b"false",
            SUBSCRIPTION: b"sub-9", MASKED: b"name", IMAGE: ",".join(SUBSCRIBED if image is None else image).encode()}


# -- message → delivery ---------------------------------------------------------------
def test_a_delivery_writes_the_subscriptions_whole_image_at_the_bus_version() -> None:
    delivery = to_delivery(delivered(sequence=7, name="李*", marital_status="married"), headers(backfill=True))
    assert delivery["version"] == 7 and delivery["op"] == "UPSERT"
    assert delivery["fields"] == list(SUBSCRIBED) and delivery["changed"] == ["name", "marital_status"]
    assert delivery["data"] == {"citizen_id": None, "name": "李*", "sex": None, "marital_status": "married"}
    assert delivery["delivered_at"] == T0 and delivery["backfill"] is True
    assert (delivery["subscription"], delivery["masked"], delivery["event_id"]) == ("sub-9", ["name"], "e-1")


def test_a_delivery_without_its_image_header_writes_only_what_it_changed() -> None:
    message_headers = {name: value for name, value in headers().items() if name != IMAGE}
    delivery = to_delivery(delivered(name="李*"), message_headers)
    assert delivery["fields"] == ["name"] and delivery["data"] == {"name": "李*"}, "unset fields must not clear columns"


def test_a_later_version_arriving_first_leaves_the_whole_later_image() -> None:
    """The race CI caught: version 1 routed before the approval, the live version 2 before the
    backfill's snapshot of version 2. The store must hold version 2's whole image."""
    first = delivered(sequence=1, citizen_id="610102199001011234", name="李四", sex="male")
    renamed = {**first, "sequence": 2, "fields_set": ["name"], "data": {**first["data"], "name": "李五"}}
    snapshot = {**renamed, "op": "SNAPSHOT", "fields_set": list(SUBSCRIBED)}
    with open_store("sqlite:///:memory:") as store:
        store.ensure_table("population", table_columns(REGISTRY.latest("population")))
        for record, backfill in ((renamed, False), (snapshot, True), (first, False)):
            store.apply("population", [to_delivery(record, headers(backfill=backfill))])
        row = store.get("population", first["entity_id"])
    assert row["version"] == 2
    assert (row["citizen_id"], row["name"], row["sex"], row["marital_status"]) == ("610102199001011234", "李五", "male", None)


def test_a_delivery_without_routing_stamp_is_dated_by_its_message_time() -> None:
    delivery = to_delivery(delivered(name="x"), {}, message_time=T0 + timedelta(seconds=5))
    assert delivery["delivered_at"] == T0 + timedelta(seconds=5) and delivery["backfill"] is False


def test_a_delete_carries_no_fields() -> None:
    delivery = to_delivery({**delivered(), "op": "DELETE", "fields_set": [], "data": None}, headers())
    assert (delivery["op"], delivery["fields"], delivery["data"]) == ("DELETE", [], {})


def test_a_reader_pinned_to_v1_drops_the_field_v2_added() -> None:
    event = delivered(name="王五", residence_region="610113")
    event["data"] = {name: event["data"].get(name) for name in REGISTRY.policy("population", 2)}
    payload = default_codec().encode("population", event, version=2)
    schema, record = default_codec().decode(payload, reader_version=1)
    delivery = to_delivery(record, headers(image=("name", "residence_region")))
    assert schema.version == 1 and delivery["fields"] == ["name"] and delivery["data"] == {"name": "王五"}


@given(st.lists(st.sampled_from(POPULATION_FIELDS), unique=True))
def test_data_and_fields_always_agree(fields: list[str]) -> None:
    delivery = to_delivery(delivered(**{name: "v" for name in fields}), headers(image=tuple(fields)))
    assert delivery["fields"] == fields and set(delivery["data"]) == set(fields)


def test_table_columns_are_typed_and_leave_out_the_not_shared() -> None:
    columns = table_columns(REGISTRY.latest("population"))
    assert "biometric_digest" not in columns
    assert (columns["date_of_birth"], columns["former_names"], columns["name"]) == ("date", "json", "text")


# -- a message as read: librdkafka's accessors asked once, headers and time decoded once ------
class LibrdkafkaMessage:
    """Stands in for a confluent-kafka `Message`: methods, headers a list or None, (type, ms) times."""

    def __init__(self, headers: list[tuple[str, bytes]] | None, timestamp: tuple[int, int]) -> None:
        self._headers, self._timestamp = headers, timestamp

    def topic(self) -> str:
        return A.topic

    def partition(self) -> int:
        return 1

    def offset(self) -> int:
        return 41

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"v"

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return self._timestamp


def test_a_message_is_read_once_with_its_headers_and_time() -> None:
    later = T0 + timedelta(seconds=3)
    message = received(LibrdkafkaMessage(list(headers(routed=later).items()), (1, int(T0.timestamp() * 1000))))
    assert (message.topic, message.partition, message.offset, message.key, message.value) == (A.topic, 1, 41, b"k", b"v")
    assert message.headers == headers(routed=later) and message.time == T0 and message.routed_at == later
    assert to_delivery(delivered(name="x"), message.headers, message.time)["delivered_at"] == later


def test_a_message_without_headers_or_time_is_dated_by_what_there_is() -> None:
    bare = received(LibrdkafkaMessage(None, (0, -1)))  # TIMESTAMP_NOT_AVAILABLE
    assert (bare.headers, bare.time, bare.routed_at) == ({}, None, None)
    stamped = received(LibrdkafkaMessage(None, (2, int(T0.timestamp() * 1000))))  # LOG_APPEND_TIME
    assert stamped.routed_at == T0


def test_a_rejected_message_is_kept_with_its_bytes_and_headers(tmp_path) -> None:
    log = RejectedLog(tmp_path / "rejected.jsonl")
    log.add(Received(A.topic, 1, 41, b"k", b"\x00garbled", {SUBSCRIPTION: b"sub-9", MASKED: None}, T0), "population", "why")
    log.close()
    (entry,) = [json.loads(line) for line in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert (entry["topic"], entry["partition"], entry["offset"], entry["key"]) == (A.topic, 1, 41, "k")
    assert entry["headers"] == {SUBSCRIPTION: "sub-9", MASKED: ""} and entry["value_base64"] == "AGdhcmJsZWQ="


def test_a_partition_is_the_stores_position_key() -> None:
    assert Partition(A.topic, 0) == (A.topic, 0) == A and {(A.topic, 0): 5}[Partition(A.topic, 0)] == 5


# -- replay ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["beginning", "Beginning", "earliest"])
def test_replay_from_the_beginning(text: str) -> None:
    assert parse_replay(text).kind == "beginning"


@pytest.mark.parametrize("value", ["42", 42, " 42 "])
def test_replay_from_an_offset(value: object) -> None:
    replay = parse_replay(value)
    assert (replay.kind, replay.offset) == ("offset", 42)


def test_replay_from_a_time_with_and_without_offset() -> None:
    assert parse_replay("2025-03-01T08:00:00Z").at == T0
    assert parse_replay("2025-03-01T16:00:00").at == T0, "no offset means China Standard Time"
    assert parse_replay("2025-03-01").at == datetime(2025, 3, 1, tzinfo=CHINA)


def test_no_replay_resumes_from_the_store() -> None:
    assert parse_replay(None) is None


@pytest.mark.parametrize("value", ["yesterday", "-3", -3, "12:00 tomorrow", True])
def test_a_meaningless_replay_is_refused_saying_what_is_accepted(value: object) -> None:
    with pytest.raises(ReplayError, match="beginning"):
        parse_replay(value)


# -- progress: lag and the "current as of" watermark -----------------------------------------
A, B = TopicPartition("deliver.health.population", 0), TopicPartition("deliver.health.population", 1)


def progress() -> Progress:
    tracked = Progress({A.topic: "population"})
    tracked.start(A, 0)
    tracked.start(B, 0)
    return tracked


def test_watermark_is_unknown_until_every_partition_is_accounted_for() -> None:
    tracked = progress()
    tracked.applied(A, 5, T0)
    assert tracked.complete_through("population") is None


def test_watermark_is_the_earliest_partition_time() -> None:
    tracked = progress()
    tracked.applied(A, 5, T0 + timedelta(seconds=30))
    tracked.applied(B, 3, T0 + timedelta(seconds=10))
    assert tracked.complete_through("population") == T0 + timedelta(seconds=10)


def test_a_caught_up_partition_is_complete_through_when_its_end_was_read() -> None:
    tracked = progress()
    tracked.applied(A, 5, T0)
    tracked.applied(B, 3, T0)
    tracked.saw_ends({A: 5, B: 9}, T0 + timedelta(minutes=2))
    assert tracked.complete_through("population") == T0, "B is behind: its last delivery is the limit"
    assert tracked.lag("population") == 6
    tracked.applied(B, 9, T0 + timedelta(seconds=1))
    tracked.saw_ends({A: 5, B: 9}, T0 + timedelta(minutes=3))
    assert tracked.complete_through("population") == T0 + timedelta(minutes=3) and tracked.lag("population") == 0


def test_an_empty_partition_counts_as_complete_once_its_end_is_seen() -> None:
    tracked = progress()
    tracked.saw_ends({A: 0, B: 0}, T0)
    assert tracked.complete_through("population") == T0 and tracked.caught_up()


# -- tables: typed columns that follow the schema; one bad value does not block a batch ----
def message(offset: int) -> Received:
    return Received(A.topic, 0, offset, b"k", b"v", {}, T0)


def store_delivery(entity_id: str, version: int, **data: object) -> dict:
    return {"entity_id": entity_id, "version": version, "op": "UPSERT", "data": data, "fields": list(data),
            "valid_from": None, "recorded_at": T0, "delivered_at": T0, "backfill": False}


def test_a_field_of_a_newer_schema_gets_its_column_instead_of_failing() -> None:
    with open_store("sqlite:///:memory:") as store:
        tables = Tables(store, REGISTRY)
        tables.prepare("population", REGISTRY.get("population", 1))
        tables.apply("population", [(message(0), store_delivery("a", 1, residence_region="610113"))],
                     {(A.topic, 0): 1}, None, lambda *_: pytest.fail("nothing to reject"))
        assert store.get("population", "a")["residence_region"] == "610113"


def test_a_value_the_store_refuses_is_rejected_and_the_rest_applied() -> None:
    rejected = []
    with open_store("sqlite:///:memory:") as store:
        tables = Tables(store, REGISTRY)
        tables.prepare("population", REGISTRY.latest("population"))
        batch = [(message(0), store_delivery("a", 1, name="甲")),
                 (message(1), store_delivery("b", 1, date_of_birth="not a date")),
                 (message(2), store_delivery("c", 1, date_of_birth=date(1990, 1, 2)))]
        result = tables.apply("population", batch, {(A.topic, 0): 3}, T0, lambda m, why: rejected.append((m.offset, why)))
        assert (result.upserted, [offset for offset, _ in rejected]) == (2, [1])
        assert "date_of_birth" in rejected[0][1]
        assert [row["entity_id"] for row in store.rows("population")] == ["a", "c"]
        assert store.positions() == {(A.topic, 0): 3} and store.watermark("population") == T0
