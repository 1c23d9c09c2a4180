"""The subscriber's local stores, SQLite and a real PostgreSQL server, held to one behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from govbus.consumers.stores import Store, StoreError, column_type, open_store
from govbus.errors import GovbusError
from govbus.schemas.registry import default_registry
from tests import pg

LIBRARY = "population"
COLUMNS = {"name": "text", "birth_date": "date", "household_size": "integer", "income": "bigint",
           "alive": "boolean", "score": "double", "updated": "timestamp", "tags": "json"}
T0 = datetime(2024, 3, 1, 8, 0, tzinfo=timezone.utc)
TOPIC = "deliver.health.population"


def delivery(entity_id: str, version: int, op: str = "UPSERT", **data: Any) -> dict[str, Any]:
    return {"entity_id": entity_id, "version": version, "op": op, "data": data, "fields": list(data),
            "valid_from": None, "recorded_at": T0 + timedelta(seconds=version),
            "delivered_at": T0 + timedelta(minutes=1), "backfill": False}


def without_applied_at(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in row.items() if key != "applied_at"} for row in rows]


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as opened:
        opened.ensure_table(LIBRARY, COLUMNS)
        yield opened


def test_reapplying_the_same_batch_changes_nothing(store: Store) -> None:
    batch = [delivery("a", 1, name="Li Lei", birth_date=date(1990, 5, 4)), delivery("b", 1, name="Han Meimei"),
             delivery("c", 2, "DELETE")]
    first = store.apply(LIBRARY, batch, positions={(TOPIC, 0): 3})
    before = store.rows(LIBRARY)
    again = store.apply(LIBRARY, batch, positions={(TOPIC, 0): 3})
    assert (first.upserted, first.deleted, first.ignored) == (2, 1, 0)
    assert (again.upserted, again.deleted, again.ignored) == (0, 0, 3)
    assert store.rows(LIBRARY) == before  # applied_at included: not even touched


def test_an_older_version_after_a_newer_one_is_ignored(store: Store) -> None:
    store.apply(LIBRARY, [delivery("a", 5, name="new")])
    result = store.apply(LIBRARY, [delivery("a", 4, name="old"), delivery("a", 5, name="same version")])
    assert result.ignored == 2
    assert store.get(LIBRARY, "a")["name"] == "new"
    assert store.get(LIBRARY, "a")["version"] == 5


def test_a_late_older_upsert_does_not_resurrect_a_deleted_entity(store: Store) -> None:
    store.apply(LIBRARY, [delivery("a", 1, name="x"), delivery("a", 3, "DELETE"), delivery("z", 9, "DELETE")])
    result = store.apply(LIBRARY, [delivery("a", 2, name="late"), delivery("z", 8, name="never seen alive")])
    assert result.ignored == 2
    assert store.get(LIBRARY, "a") is None and store.get(LIBRARY, "z") is None
    assert store.count(LIBRARY) == 0


def test_a_newer_upsert_after_a_delete_starts_afresh(store: Store) -> None:
    store.apply(LIBRARY, [delivery("a", 1, name="x", income=10), delivery("a", 2, "DELETE"),
                          delivery("a", 3, name="y")])
    row = store.get(LIBRARY, "a")
    assert (row["name"], row["income"], row["version"]) == ("y", None, 3)


def test_a_partial_delivery_updates_only_its_fields(store: Store) -> None:
    store.apply(LIBRARY, [delivery("a", 1, name="x", income=10, alive=True)])
    store.apply(LIBRARY, [delivery("a", 2, income=20, alive=None)])  # alive listed as cleared
    row = store.get(LIBRARY, "a")
    assert (row["name"], row["income"], row["alive"]) == ("x", 20, None)


def test_a_batch_with_a_wrong_type_is_rolled_back_with_its_positions(store: Store) -> None:
    store.apply(LIBRARY, [delivery("a", 1, name="kept")], positions={(TOPIC, 0): 1})
    batch = [delivery("a", 2, name="changed"), delivery("b", 1, name="new"),  # one statement, run first
             delivery("c", 1, birth_date="1990-05-04")]  # then this one fails
    with pytest.raises(StoreError, match="birth_date must be a date.*nothing of the batch was applied"):
        store.apply(LIBRARY, batch, positions={(TOPIC, 0): 4}, as_of=T0)
    assert [row["name"] for row in store.rows(LIBRARY)] == ["kept"]
    assert store.positions() == {(TOPIC, 0): 1}
    assert store.watermark(LIBRARY) is None


def test_a_value_the_database_refuses_rolls_the_batch_back(store: Store) -> None:
    batch = [delivery("a", 1, name="x"), delivery("b", 1, income=2**70)]  # beyond 64 bits: the driver/server says no
    with pytest.raises(StoreError, match="nothing of it was applied"):
        store.apply(LIBRARY, batch, positions={(TOPIC, 0): 2})
    assert store.count(LIBRARY) == 0 and store.positions() == {}
    assert store.apply(LIBRARY, batch[:1], positions={(TOPIC, 0): 1}).upserted == 1  # still usable


def test_positions_and_rows_survive_reopening(store_url: str) -> None:
    with open_store(store_url) as first:
        first.ensure_table(LIBRARY, COLUMNS)
        first.apply(LIBRARY, [delivery("a", 1, name="x")], positions={(TOPIC, 0): 7, (TOPIC, 1): 2}, as_of=T0)
    with open_store(store_url) as second:
        assert second.positions() == {(TOPIC, 0): 7, (TOPIC, 1): 2}
        assert second.get(LIBRARY, "a")["name"] == "x"
        assert second.watermark(LIBRARY) == T0


def test_reset_empties_rows_positions_and_watermarks(store: Store) -> None:
    store.apply(LIBRARY, [delivery("a", 5, name="x"), delivery("b", 6, "DELETE")], positions={(TOPIC, 0): 2}, as_of=T0)
    store.reset()
    assert (store.rows(LIBRARY), store.positions(), store.watermark(LIBRARY)) == ([], {}, None)
    assert store.apply(LIBRARY, [delivery("a", 1, name="replayed"), delivery("b", 1, name="y")]).upserted == 2


def test_the_watermark_only_moves_forward(store: Store) -> None:
    store.apply(LIBRARY, [], as_of=T0 + timedelta(hours=1))
    store.apply(LIBRARY, [delivery("a", 1, name="x")], as_of=T0)  # a replayed batch: older event times
    assert store.watermark(LIBRARY) == T0 + timedelta(hours=1)
    store.apply(LIBRARY, [], as_of=T0 + timedelta(hours=2))  # a heartbeat
    assert store.watermark(LIBRARY) == T0 + timedelta(hours=2)
    assert store.watermark("legal_entity") is None


def test_values_come_back_with_their_types(store: Store) -> None:
    values = {"name": "王小明", "birth_date": date(1990, 5, 4), "household_size": 3, "income": 2**40,
              "alive": False, "score": 0.5, "updated": T0 + timedelta(microseconds=1234), "tags": ["a", "b"]}
    store.apply(LIBRARY, [delivery("a", 1, **values)])
    row = store.get(LIBRARY, "a")
    assert {name: row[name] for name in values} == values
    assert type(row["birth_date"]) is date and type(row["alive"]) is bool
    assert row["last_event_time"] == T0 + timedelta(seconds=1)  # recorded_at, as valid_from is None


def test_postgresql_columns_have_real_sql_types(postgres_dsn: str) -> None:
    url = pg.fresh_database(postgres_dsn)
    with open_store(url) as store:
        store.ensure_table(LIBRARY, {**COLUMNS, "masked_birth_date": "text"})
        store.apply(LIBRARY, [delivery("a", 1, birth_date=date(1990, 5, 4), masked_birth_date="1990-**-**")])
    with psycopg.connect(url) as connection:
        types = dict(connection.execute("SELECT column_name, data_type FROM information_schema.columns "
                                        "WHERE table_name = %s", (LIBRARY,)).fetchall())
        days = connection.execute("SELECT birth_date - date '1990-01-01' FROM population").fetchone()[0]
    assert types["birth_date"] == "date" and types["masked_birth_date"] == "text"
    assert types["updated"] == "timestamp with time zone" and types["tags"] == "jsonb"
    assert types["version"] == "bigint" and types["alive"] == "boolean"
    assert days == 123


def test_schema_evolution_adds_a_column(store_url: str) -> None:
    with open_store(store_url) as store:
        store.ensure_table(LIBRARY, {"name": "text"})
        store.apply(LIBRARY, [delivery("a", 1, name="x")])
        store.ensure_table(LIBRARY, {"name": "text", "birth_date": "date"})
        store.apply(LIBRARY, [delivery("b", 1, name="y", birth_date=date(2001, 1, 1))])
    with open_store(store_url) as reopened:
        reopened.ensure_table(LIBRARY, {"name": "text"})  # an older subscriber version: nothing dropped
        assert [(row["name"], row["birth_date"]) for row in reopened.rows(LIBRARY)] == \
            [("x", None), ("y", date(2001, 1, 1))]


def test_fields_named_like_sql_keywords_work(store: Store) -> None:
    store.ensure_table("order", {"user": "text", "select": "integer"})
    store.apply("order", [delivery("a", 1, user="x", select=1), delivery("a", 2, select=2)])
    assert (store.get("order", "a")["user"], store.get("order", "a")["select"], store.count("order")) == ("x", 2, 1)
    store.reset()
    assert store.rows("order") == []


def test_a_column_delivered_with_another_type_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="birth_date is stored as date but is now delivered as text"):
        store.ensure_table(LIBRARY, {"birth_date": "text"})


def test_a_delivery_of_an_undeclared_field_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="carry nickname, which the table lacks"):
        store.apply(LIBRARY, [delivery("a", 1, nickname="x")])
    with pytest.raises(StoreError, match="call ensure_table first"):
        store.apply("credit", [delivery("a", 1)])


@pytest.mark.parametrize(("library", "columns"), [
    ("Population", {}), ("drop table", {}), ("govbus_positions", {}),  # not a library table name
    (LIBRARY, {"version": "bigint"}), (LIBRARY, {"x; drop": "text"}), (LIBRARY, {"_x": "text"}),
    (LIBRARY, {"x": "varchar"})])
def test_names_and_types_that_cannot_be_tables_or_columns_are_refused(
        store: Store, library: str, columns: dict[str, str]) -> None:
    with pytest.raises(StoreError):
        store.ensure_table(library, columns)


# -- a model of the semantics, and both backends held to it -------------------------------
FIELDS = ("name", "income")
deliveries = st.lists(st.builds(
    lambda entity, version, op, fields, value: delivery(
        entity, version, op, **({} if op == "DELETE" else {field: value for field in fields})),
    st.sampled_from("abc"), st.integers(1, 6), st.sampled_from(["UPSERT", "SNAPSHOT", "DELETE"]),
    st.lists(st.sampled_from(FIELDS), unique=True, max_size=2), st.one_of(st.none(), st.integers(0, 9))),
    max_size=25)


def modelled(history: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What the store should hold after `history`, applied one delivery at a time."""
    state: dict[str, tuple[int, bool, dict[str, Any]]] = {}
    for item in history:
        version, deleted, data = state.get(item["entity_id"], (0, True, {}))
        if item["version"] <= version and item["entity_id"] in state:
            continue
        fresh = {} if deleted or item["op"] == "DELETE" else dict(data)
        fresh.update({field: str(item["data"][field]) if item["data"][field] is not None else None
                      for field in item["fields"]})
        state[item["entity_id"]] = (item["version"], item["op"] == "DELETE", fresh)
    return sorted((entity, version, *(data.get(field) for field in FIELDS))
                  for entity, (version, deleted, data) in state.items() if not deleted)


def as_text(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**item, "data": {key: None if value is None else str(value) for key, value in item["data"].items()}}
            for item in history]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=deliveries, cut=st.integers(0, 25))
def test_both_backends_follow_the_model_and_agree(tmp_path: Path, postgres_dsn: str,
                                                 history: list[dict[str, Any]], cut: int) -> None:
    history = as_text(history)
    results = []
    for url in (f"sqlite:///{tmp_path}/model.db", pg.fresh_database(postgres_dsn)):
        with open_store(url) as store:
            store.reset()
            store.ensure_table(LIBRARY, {field: "text" for field in FIELDS})
            store.apply(LIBRARY, history[:cut])
            store.apply(LIBRARY, history[cut:])
            store.apply(LIBRARY, history)  # a replay from the beginning changes nothing
            results.append(without_applied_at(store.rows(LIBRARY)))
            assert [(row["entity_id"], row["version"], *(row[field] for field in FIELDS))
                    for row in results[-1]] == modelled(history)
    assert results[0] == results[1]


# -- opening, and the errors a user can fix ---------------------------------------------------
def test_an_unknown_scheme_is_explained() -> None:
    with pytest.raises(GovbusError, match="unknown store URL 'mysql://x'.*sqlite:///"):
        open_store("mysql://x")


def test_a_missing_directory_is_explained(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist; create it"):
        open_store(f"sqlite:///{tmp_path}/missing/store.db")
    with pytest.raises(StoreError, match="is a directory"):
        open_store(f"sqlite:///{tmp_path}")


def test_a_file_that_is_not_a_database_is_explained(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a database " * 100)
    with pytest.raises(StoreError, match="is it a SQLite database"):
        open_store(f"sqlite:///{tmp_path}/notes.txt")


def test_an_unreachable_postgresql_names_host_and_port() -> None:
    port = pg.free_port()
    with pytest.raises(StoreError, match=f"cannot connect to PostgreSQL at me@127.0.0.1:{port}/db.*running") as raised:
        open_store(f"postgresql://me:secret@127.0.0.1:{port}/db")
    assert "secret" not in str(raised.value)


def test_an_in_memory_store_works() -> None:
    with open_store("sqlite:///:memory:") as store:
        store.ensure_table(LIBRARY, {"name": "text"})
        store.apply(LIBRARY, [delivery("a", 1, name="x")])
        assert store.count(LIBRARY) == 1


def test_every_schema_field_has_a_column_type() -> None:
    registry = default_registry()
    for library in registry.libraries():
        for policy in registry.policy(library).values():
            assert column_type(policy.avro_type) in ("text", "bigint", "date", "json")
    assert column_type({"type": "long", "logicalType": "timestamp-millis"}) == "timestamp"
    with pytest.raises(StoreError, match="no column type"):
        column_type("bytes")


def test_a_delivery_without_op_or_fields_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="needs an op"):
        store.apply(LIBRARY, [{**delivery("a", 1, name="x"), "op": "MERGE"}])
    with pytest.raises(StoreError, match="the list of its fields"):
        store.apply(LIBRARY, [{key: value for key, value in delivery("a", 1, name="x").items() if key != "fields"}])


def test_two_subscriptions_of_one_library_keep_a_row_each_with_its_purpose(store: Store) -> None:
    reference = {**delivery("a", 5, name="Li Lei"), "subscription": "sub-names", "purpose": "work_reference"}
    basis = {**delivery("a", 5, household_size=3), "subscription": "sub-households", "purpose": "administrative_basis"}
    result = store.apply(LIBRARY, [reference, basis])
    assert (result.upserted, result.ignored) == (2, 0), "the same version under another subscription is not a duplicate"
    names, households = (store.get(LIBRARY, "a", subscription) for subscription in ("sub-names", "sub-households"))
    assert (names["name"], names["household_size"], names["purpose"]) == ("Li Lei", None, "work_reference")
    assert (households["name"], households["household_size"]) == (None, 3)
    with pytest.raises(StoreError, match="several subscriptions .*sub-households, sub-names"):
        store.get(LIBRARY, "a")
    assert [row["subscription_id"] for row in store.rows(LIBRARY)] == ["sub-households", "sub-names"]
    assert store.count(LIBRARY, "sub-names") == 1 and store.count(LIBRARY) == 2
    assert store.subscriptions() == {
        "sub-names": {"library": LIBRARY, "purpose": "work_reference", "fields": ["name"]},
        "sub-households": {"library": LIBRARY, "purpose": "administrative_basis", "fields": ["household_size"]}}
    store.apply(LIBRARY, [{**delivery("a", 6, "DELETE"), "subscription": "sub-names"}])
    assert store.get(LIBRARY, "a") == households, "a delete under one subscription leaves the other's row"


def test_a_table_made_with_one_row_per_entity_is_refused_with_what_to_do(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with open_store(f"sqlite:///{path}") as opened:
        opened.ensure_table(LIBRARY, COLUMNS)
    with sqlite3.connect(path) as connection:  # what an older govbus recorded: no subscription column
        connection.execute("DELETE FROM govbus_columns WHERE name IN ('subscription_id', 'purpose')")
    with open_store(f"sqlite:///{path}") as reopened, pytest.raises(StoreError, match="older govbus.*replay"):
        reopened.ensure_table(LIBRARY, COLUMNS)
