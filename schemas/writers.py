"""The full writer schema of every version, as standard self-contained `.avsc` files.

Why: a value on the bus is Avro single-object encoded, so it names its writer schema by the
CRC-64-AVRO fingerprint of that schema. The fingerprint is of the *expanded* schema (the
envelope's fields, then the version file's `data`), which no source file holds: a reader with
Apache `avro`, Java or Kafka Connect found none of them. So the registry's expansion of each
version is committed under `schemas/writers/` — generated from the parts with
`govbus schemas write`, never edited by hand — with an index a reader looks up by fingerprint
(the value's bytes 2–10, in hexadecimal) or by the `ce_dataschema` header:

    schemas/writers/population-v2.avsc
    schemas/writers/index.json   {"fingerprints": {"<16 hex>": "population-v2.avsc", …},
                                  "dataschemas": {"urn:govbus:schema:population:v2": "population-v2.avsc", …}}

`govbus schemas check` and the tests compare the committed files with what the registry
loads, so a changed part without regenerated files is caught before it ships.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .framing import schema_urn
from .registry import SCHEMA_DIRECTORY, SchemaRegistry, SchemaVersion

WRITERS_FOLDER = "writers"
WRITERS_DIRECTORY = SCHEMA_DIRECTORY / WRITERS_FOLDER
INDEX = "index.json"


def file_name(version: SchemaVersion) -> str:
    """`<library>-v<N>.avsc`: the file of one version's full writer schema."""
    return f"{version.library}-v{version.version}.avsc"


def _text(document: Any) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def writer_files(registry: SchemaRegistry) -> dict[str, str]:
    """File name → content of every writer schema and of the index, as they must be committed."""
    files: dict[str, str] = {}
    index: dict[str, dict[str, str]] = {"fingerprints": {}, "dataschemas": {}}
    for library in registry.libraries():
        for number in registry.versions(library):
            version = registry.get(library, number)
            name = file_name(version)
            files[name] = _text(version.schema)
            index["fingerprints"][version.fingerprint.hex()] = name
            index["dataschemas"][schema_urn(library, number)] = name
    files[INDEX] = _text(index)
    return files


def write(registry: SchemaRegistry, directory: Path = WRITERS_DIRECTORY) -> list[str]:
    """Write the files (`govbus schemas write`) and remove stale ones; the names written."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = writer_files(registry)
    for stale in directory.iterdir():
        if stale.is_file() and stale.name not in wanted:
            stale.unlink()
    for name, content in wanted.items():
        (directory / name).write_text(content, "utf-8")
    return sorted(wanted)


def stale(registry: SchemaRegistry, directory: Path = WRITERS_DIRECTORY) -> list[str]:
    """One problem per committed file that is missing, extra or differs from the registry's
    expansion; empty when the files are what the registry loads."""
    wanted = writer_files(registry)
    found = {path.name for path in directory.glob("*") if path.is_file()} if directory.is_dir() else set()
    problems = [f"{directory / name}: missing" for name in sorted(set(wanted) - found)]
    problems += [f"{directory / name}: no schema version has this file" for name in sorted(found - set(wanted))]
    problems += [f"{directory / name}: differs from the schema the registry loads"
                 for name in sorted(set(wanted) & found) if (directory / name).read_text("utf-8") != wanted[name]]
    if problems:
        problems.append("regenerate them with `govbus schemas write` and commit them")
    return problems
