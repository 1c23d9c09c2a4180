"""Source adapter for files: JSON Lines and CSV exports streamed as flat records.

Reading is lazy, line by line, so memory does not grow with the file. A CSV cell is text;
it is converted by the schema's type of its column (numbers, booleans, arrays as JSON or
';'-separated), and an empty cell means "not in this record". A line that cannot be parsed
is yielded as an error with its line number, never skipped.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from govbus.schemas.registry import SchemaRegistry


@dataclass(frozen=True, slots=True)
class SourceLine:
    number: int
    record: dict[str, Any] | None
    error: str | None = None
    raw: str = ""


def detect_format(path: str, declared: str | None) -> str:
    if declared:
        return declared
    return "csv" if path.lower().endswith(".csv") else "jsonl"


def read_jsonl(stream: IO[str]) -> Iterator[SourceLine]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield SourceLine(number, None, f"not valid JSON: {error.msg} at column {error.colno}", line.rstrip("\n"))
            continue
        if not isinstance(record, dict):
            yield SourceLine(number, None, "not a JSON object", line.rstrip("\n"))
            continue
        yield SourceLine(number, record)


def _cell_converter(avro_type: Any) -> Callable[[str], Any]:
    base = avro_type.get("type") if isinstance(avro_type, dict) else avro_type
    if isinstance(avro_type, dict) and avro_type.get("logicalType"):
        return str  # dates and times stay ISO text; the event builder parses them
    if base in ("int", "long"):
        return int
    if base in ("float", "double"):
        return float
    if base == "boolean":
        return lambda cell: cell.strip().lower() in ("true", "1", "yes", "是")
    if base == "array":
        return lambda cell: json.loads(cell) if cell.lstrip().startswith("[") else [part for part in cell.split(";") if part]
    return str


def read_csv(stream: IO[str], library: str, registry: SchemaRegistry) -> Iterator[SourceLine]:
    schema = registry.latest(library)
    converters = {name: _cell_converter(policy.avro_type) for name, policy in schema.fields.items()}
    converters["sequence"] = int
    reader = csv.DictReader(stream)
    for row in reader:
        number = reader.line_num
        record: dict[str, Any] = {}
        try:
            for column, cell in row.items():
                if column is None or cell is None or cell == "":
                    continue
                record[column] = converters.get(column, str)(cell)
        except (ValueError, json.JSONDecodeError) as error:
            yield SourceLine(number, None, f"column {column!r}: cannot read {cell!r}: {error}", ",".join(cell or "" for cell in row.values() if isinstance(cell, str)))
            continue
        yield SourceLine(number, record)


def read_source(stream: IO[str], file_format: str, library: str, registry: SchemaRegistry) -> Iterator[SourceLine]:
    if file_format == "csv":
        return read_csv(stream, library, registry)
    if file_format == "jsonl":
        return read_jsonl(stream)
    raise ValueError(f"unknown input format {file_format!r}; use jsonl or csv")


def rejects_path(input_path: str) -> Path:
    return Path("rejects.jsonl") if input_path == "-" else Path(f"{input_path}.rejects.jsonl")
