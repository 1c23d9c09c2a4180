"""The compiled Avro readers read what fastavro reads, exactly, or refuse (and the codec then
lets fastavro read the payload or say what is wrong)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from io import BytesIO
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from govbus.schemas.avro_reader import compile_reader
from govbus.schemas.codec import HEADER_LENGTH, CorruptPayloadError, default_codec, header
from govbus.schemas.registry import default_registry
from generated_events import SOURCES, events

REGISTRY = default_registry()


def payload_of(library: str, version: int, record: dict[str, Any]) -> bytes:
    schema, buffer = REGISTRY.get(library, version), BytesIO()
    schemaless_writer(buffer, schema.parsed, record)
    return header(schema) + buffer.getvalue()


def read_alike(library: str, version: int, payload: bytes) -> dict[str, Any]:
    """The compiled reader's record, asserted equal to fastavro's (values and their types)."""
    schema = REGISTRY.get(library, version)
    reader = compile_reader(schema.schema, HEADER_LENGTH)
    assert reader is not None, f"{library} v{version} has no compiled reader"
    compiled = reader(payload)
    body = BytesIO(payload)
    body.seek(HEADER_LENGTH)
    expected = schemaless_reader(body, schema.parsed, None)
    assert compiled == expected
    assert list(compiled) == list(expected)  # the same keys, in the same order
    assert _types(compiled) == _types(expected)
    return compiled


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    return (type(value), getattr(value, "tzinfo", None))


@pytest.mark.parametrize("library", sorted(SOURCES))
def test_every_version_of_every_library_reads_generated_events_as_fastavro_does(library: str) -> None:
    for version in REGISTRY.versions(library):
        for op in ("upsert", "snapshot", "delete"):
            for event in events(library, 60, seed=version * 10 + len(op), op=op):
                read_alike(library, version, payload_of(library, version, event))


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=90)


@settings(max_examples=300, deadline=None)
@given(name=TEXT, sequence=st.integers(-2**63, 2**63 - 1), moment=st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)),
    day=st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 1, 1)),
    former=st.lists(TEXT, max_size=70) | st.none())
def test_edge_values_are_read_as_fastavro_reads_them(name: str, sequence: int, moment: datetime, day: date,
                                                     former: list[str] | None) -> None:
    version = REGISTRY.latest("population").version
    event = events("population", 1, seed=9)[0]
    record = {**event, "event_id": name, "sequence": sequence, "valid_from": moment,
              "recorded_at": moment - timedelta(microseconds=moment.microsecond % 1000),
              "data": {**event["data"], "name": name, "date_of_birth": day, "former_names": former}}
    read_alike("population", version, payload_of("population", version, record))


def test_a_payload_that_does_not_read_is_refused_by_the_codec_as_before() -> None:
    codec, version = default_codec(), REGISTRY.latest("population").version
    payload = payload_of("population", version, events("population", 1, seed=4)[0])
    for broken in (payload[:-3], payload + b"\x00", payload[:HEADER_LENGTH] + b"\x7f" * 12):
        with pytest.raises(CorruptPayloadError):
            codec.decode(broken)
