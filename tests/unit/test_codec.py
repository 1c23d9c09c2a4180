"""Single-object encoding: framing, round trips, schema evolution and clear errors."""

from __future__ import annotations

import io
import json

import avro.io
import avro.schema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govbus.producers.generate import generate
from govbus.producers.records import to_event
from govbus.schemas.codec import (
    MAGIC, CorruptPayloadError, EncodeError, NotSingleObjectError, UnknownFingerprintError,
    decode, encode)
from govbus.schemas.registry import default_registry

LIBRARIES = ("population", "legal_entity", "credit", "certificate")


def sample_event(library: str, seed: int = 1) -> dict:
    registry = default_registry()
    flat = next(generate(library, 1, seed=seed))
    return to_event(library, registry.departments(library)[0], flat, "test-system")


def stored(event: dict, library: str, version: int | None = None) -> dict:
    """What a decoder returns: every data field present, unset ones null."""
    fields = default_registry().get(library, version).fields
    return {**event, "data": {name: event["data"].get(name) for name in fields}}


@pytest.mark.parametrize("library", LIBRARIES)
def test_event_survives_a_round_trip(library: str) -> None:
    event = sample_event(library)
    schema, record = decode(encode(library, event))
    assert (schema.library, schema.version) == (library, default_registry().latest(library).version)
    assert record == stored(event, library)


def test_payload_starts_with_marker_and_writer_fingerprint() -> None:
    payload = encode("population", sample_event("population"), version=1)
    assert payload[:2] == MAGIC == b"\xc3\x01"
    assert payload[2:10] == default_registry().get("population", 1).fingerprint


def test_apache_avro_reads_the_body_with_the_same_result() -> None:
    event = sample_event("certificate")
    payload = encode("certificate", event)
    schema = avro.schema.parse(json.dumps(default_registry().latest("certificate").schema))
    reader = avro.io.DatumReader(schema)
    assert reader.read(avro.io.BinaryDecoder(io.BytesIO(payload[10:]))) == stored(event, "certificate")


def test_old_event_is_read_by_the_newer_schema_with_the_new_field_null() -> None:
    payload = encode("population", sample_event("population"), version=1)
    schema, record = decode(payload, reader_version=2)
    assert schema.version == 2 and record["data"]["residence_region"] is None


def test_new_event_is_read_by_the_older_schema_without_the_new_field() -> None:
    event = sample_event("population")
    event["data"]["residence_region"] = "620102"
    event["fields_set"].append("residence_region")
    schema, record = decode(encode("population", event, version=2), reader_version=1)
    assert schema.version == 1 and "residence_region" not in record["data"]
    assert record["data"]["citizen_id"] == event["data"]["citizen_id"]


def test_payload_without_the_marker_is_refused() -> None:
    with pytest.raises(NotSingleObjectError, match="Confluent"):
        decode(b"\x00\x00\x00\x00\x01" + b"\x02" * 20)


def test_payload_of_an_unknown_schema_is_refused_with_its_fingerprint() -> None:
    with pytest.raises(UnknownFingerprintError, match="0102030405060708"):
        decode(MAGIC + bytes(range(1, 9)) + b"\x00")


@pytest.mark.parametrize("cut", [3, 10, 40])
def test_truncated_payload_is_refused(cut: int) -> None:
    payload = encode("credit", sample_event("credit"))
    with pytest.raises(CorruptPayloadError):
        decode(payload[:cut])


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(CorruptPayloadError, match="left over"):
        decode(encode("credit", sample_event("credit")) + b"\x00")


def test_event_that_does_not_fit_the_schema_is_refused_naming_the_field() -> None:
    event = sample_event("legal_entity")
    event["data"]["registered_capital_fen"] = "one million"
    with pytest.raises(EncodeError, match="registered_capital_fen"):
        encode("legal_entity", event)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(LIBRARIES), st.integers(0, 2**32))
def test_any_generated_event_survives_a_round_trip(library: str, seed: int) -> None:
    event = sample_event(library, seed)
    assert decode(encode(library, event))[1] == stored(event, library)
