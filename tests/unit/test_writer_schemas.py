"""The committed writer schemas (schemas/writers/): what the registry loads, found by fingerprint
and by ce_dataschema, and enough for the Apache `avro` package to read a value with no govbus code."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import avro.io
import avro.schema
from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from govbus.producers.generate import generate
from govbus.producers.records import to_event
from govbus.schemas import writers
from govbus.schemas.codec import default_codec
from govbus.schemas.framing import schema_urn
from govbus.schemas.registry import SCHEMA_DIRECTORY, SchemaRegistry, default_registry

INDEX = json.loads((writers.WRITERS_DIRECTORY / writers.INDEX).read_text("utf-8"))


def test_the_committed_writer_schemas_are_what_the_registry_loads() -> None:
    assert writers.stale(default_registry()) == []


def test_every_version_is_found_by_its_fingerprint_and_by_its_dataschema() -> None:
    registry = default_registry()
    for library in registry.libraries():
        for number in registry.versions(library):
            version = registry.get(library, number)
            by_fingerprint = INDEX["fingerprints"][version.fingerprint.hex()]
            assert by_fingerprint == INDEX["dataschemas"][schema_urn(library, number)]
            standalone = json.loads((writers.WRITERS_DIRECTORY / by_fingerprint).read_text("utf-8"))
            canonical = to_parsing_canonical_form(parse_schema(standalone))
            assert fingerprint(canonical, "CRC-64-AVRO") == version.fingerprint.hex()


def read_with_apache_avro(value: bytes) -> dict:
    """The README's reader: the committed files and the Apache package, nothing of govbus."""
    index = json.loads((writers.WRITERS_DIRECTORY / "index.json").read_text())
    schema = avro.schema.parse((writers.WRITERS_DIRECTORY / index["fingerprints"][value[2:10].hex()]).read_text())
    return avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(value[10:])))


def test_apache_avro_reads_every_library_from_the_committed_files_alone() -> None:
    sources = {"population": "public_security", "legal_entity": "market_regulation",
               "credit": "development_reform", "certificate": "data_bureau"}
    for library, department in sources.items():
        event = to_event(library, department, next(generate(library, 1, seed=9, department=department)), "t")
        decoded = read_with_apache_avro(default_codec().encode(library, event))
        assert (decoded["event_id"], decoded["entity_id"]) == (event["event_id"], event["entity_id"])
        assert decoded["data"] == {**dict.fromkeys(decoded["data"]), **{k: v for k, v in event["data"].items()}}


def test_a_part_changed_without_regenerating_the_files_is_reported(tmp_path: Path) -> None:
    shutil.copytree(SCHEMA_DIRECTORY, tmp_path / "schemas", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    envelope = tmp_path / "schemas" / "envelope.avsc"
    envelope.write_text(envelope.read_text("utf-8").replace("UUID of this event", "Id of this event"), "utf-8")
    problems = writers.stale(SchemaRegistry(tmp_path / "schemas"))
    assert f"{writers.WRITERS_DIRECTORY / 'population-v2.avsc'}: differs from the schema the registry loads" in problems
    assert problems[-1] == "regenerate them with `govbus schemas write` and commit them"
    assert writers.write(SchemaRegistry(tmp_path / "schemas"), tmp_path / "out") == sorted(
        [*INDEX["dataschemas"].values(), "index.json"])
    assert writers.stale(SchemaRegistry(tmp_path / "schemas"), tmp_path / "out") == []
