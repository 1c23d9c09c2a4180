"""The compiled Avro writers write fastavro's bytes exactly, or refuse (and the codec then
lets fastavro write the record or say what is wrong)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from io import BytesIO
from typing import Any

import pytest
from fastavro import schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from govbus.schemas.avro_writer import compile_writer, long_bytes
from govbus.schemas.codec import EncodeError, default_codec
from govbus.schemas.registry import default_registry
from generated_events import AT, SOURCES, events

REGISTRY = default_registry()


def fastavro_bytes(parsed: Any, record: dict[str, Any]) -> bytes:
    buffer = BytesIO()
    schemaless_writer(buffer, parsed, record)
    return buffer.getvalue()


def agrees(library: str, version: int, record: dict[str, Any], may_refuse: bool = False) -> bool:
    """The compiled writer's bytes are fastavro's — or, where `may_refuse`, it refused the
    record (the codec then falls back to fastavro)."""
    schema = REGISTRY.get(library, version)
    writer = compile_writer(schema.schema)
    assert writer is not None, f"{library} v{version} has no compiled writer"
    try:
        written = writer(record)
    except Exception:  # noqa: BLE001 - a refusal, allowed only where asked for
        return may_refuse
    return written == fastavro_bytes(schema.parsed, record)


@pytest.mark.parametrize("library", sorted(SOURCES))
def test_every_version_of_every_library_writes_generated_events_as_fastavro_does(library: str) -> None:
    for version in REGISTRY.versions(library):
        for op in ("upsert", "snapshot", "delete"):
            for event in events(library, 60, seed=version * 10 + len(op), op=op):
                assert agrees(library, version, event), event


@pytest.mark.parametrize("library", sorted(SOURCES))
def test_events_with_faults_are_written_as_fastavro_writes_them_or_refused(library: str) -> None:
    for event in events(library, 200, seed=3, invalid_share=0.5):
        assert agrees(library, REGISTRY.latest(library).version, event, may_refuse=True), event


def test_a_projection_that_leaves_fields_out_writes_their_defaults() -> None:
    event = events("population", 1, seed=5)[0]
    for kept in (("name",), ("citizen_id", "sex"), ()):
        projected = {**event, "data": {name: value for name, value in event["data"].items() if name in kept},
                     "fields_set": list(kept)}
        assert agrees("population", REGISTRY.latest("population").version, projected)


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=90)


@settings(max_examples=300, deadline=None)
@given(name=TEXT, sequence=st.integers(-2**63, 2**63 - 1), moment=st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.sampled_from(
        [timezone.utc, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))])),
    day=st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 1, 1)),
    former=st.lists(TEXT, max_size=70) | st.none())
def test_edge_values_are_written_as_fastavro_writes_them(name: str, sequence: int, moment: datetime, day: date,
                                                         former: list[str] | None) -> None:
    event = events("population", 1, seed=9)[0]
    record = {**event, "event_id": name, "sequence": sequence, "valid_from": moment, "recorded_at": moment,
              "data": {**event["data"], "name": name, "date_of_birth": day, "former_names": former}}
    assert agrees("population", REGISTRY.latest("population").version, record)


def test_values_the_compiled_writer_refuses_are_encoded_or_refused_by_fastavro_through_the_codec() -> None:
    codec, version = default_codec(), REGISTRY.latest("population").version
    parsed = REGISTRY.get("population", version).parsed
    event = events("population", 1, seed=11)[0]
    naive = {**event, "recorded_at": AT.replace(tzinfo=None)}  # fastavro reads a naive time as local time
    as_text = {**event, "data": {**event["data"], "date_of_birth": "1990-02-03"}}
    for record in (naive, as_text):
        assert codec.encode("population", record)[10:] == fastavro_bytes(parsed, record)
    with pytest.raises(EncodeError):
        codec.encode("population", {**event, "sequence": "three"})


def test_longs_are_zigzag_varints_and_refuse_what_does_not_fit_64_bits() -> None:
    assert [long_bytes(n) for n in (0, -1, 1, -64, 64)] == [b"\x00", b"\x01", b"\x02", b"\x7f", b"\x80\x01"]
    with pytest.raises(OverflowError):
        long_bytes(2**63)
