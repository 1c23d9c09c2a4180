"""Avro binary readers compiled per schema: straight-line Python for our records.

Why: fastavro's ``schemaless_reader`` took about 16 µs per population record on our 2-core
machines, and every event is read six times on its way (the gate, the router, each of the
bench's four subscribers). A reader generated once per writer schema reads field after field,
one-byte lengths and union branches inline.

What it returns is fastavro's record exactly (the same keys, values and types: a
timestamp-millis as an aware UTC datetime, a date as a date), or it raises, and the codec
then reads the payload with fastavro, which reads it or says what is wrong (a truncated body,
trailing bytes). It reads with the writer's schema only; a read into another version goes
through fastavro. Schemas with a type it does not know get no compiled reader
(``compile_reader`` returns None). ``tests/unit/test_avro_reader.py`` compares the two.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
PRIMITIVES = frozenset({"string", "long", "int", "null"})
Reader = Callable[[bytes], dict[str, Any]]


class Unsupported(Exception):
    """The schema uses a type these readers do not compile."""


class Corrupt(ValueError):
    """The body does not read as the schema says (the codec then asks fastavro why)."""


def read_long(payload: bytes, position: int) -> tuple[int, int]:
    """A zigzag varint at `position`: its value and the position after it."""
    byte = payload[position]
    position += 1
    number, shift = byte & 0x7F, 7
    while byte & 0x80:
        byte = payload[position]
        position += 1
        number |= (byte & 0x7F) << shift
        shift += 7
    return (number >> 1) ^ -(number & 1), position


class _Compiler:
    """Python source for one schema: each value read from ``payload`` at ``p`` into a target."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self.named: dict[str, Any] = {}
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def long(self, target: str, depth: int) -> None:
        """A long into `target`: a one-byte value inline, longer ones through ``read_long``."""
        byte = self.name("b")
        self.emit(depth, f"{byte} = payload[p]")
        self.emit(depth, f"if {byte} < 0x80:")
        self.emit(depth + 1, f"{target} = ({byte} >> 1) ^ -({byte} & 1)")
        self.emit(depth + 1, "p += 1")
        self.emit(depth, "else:")
        self.emit(depth + 1, f"{target}, p = read_long(payload, p)")

    def value(self, schema: Any, target: str, depth: int, namespace: str = "") -> None:
        schema = self._resolved(schema, namespace)
        if isinstance(schema, list):
            self._union(schema, target, depth, namespace)
            return
        kind = schema if isinstance(schema, str) else schema.get("type")
        logical = schema.get("logicalType") if isinstance(schema, dict) else None
        if isinstance(kind, (dict, list)):
            self.value(kind, target, depth, namespace)
        elif logical == "timestamp-millis" and kind == "long":
            millis = self.name("m")
            self.long(millis, depth)
            self.emit(depth, f"{target} = EPOCH + timedelta(microseconds={millis} * 1000)")
        elif logical == "date" and kind == "int":
            days = self.name("d")
            self.long(days, depth)
            self.emit(depth, f"{target} = date.fromordinal({days} + EPOCH_ORDINAL)")
        elif logical is not None:
            raise Unsupported(f"logical type {logical}")
        elif kind == "string":
            length = self.name("n")
            self.long(length, depth)
            self.emit(depth, f"if {length} < 0: raise Corrupt('negative length')")
            self.emit(depth, f"{target} = payload[p:p + {length}].decode()")
            self.emit(depth, f"p += {length}")
        elif kind in ("long", "int"):
            self.long(target, depth)
        elif kind == "null":
            self.emit(depth, f"{target} = None")
        elif kind == "enum":
            symbols, index = self.name("SYMBOLS"), self.name("e")
            self.constants[symbols] = tuple(schema["symbols"])
            self.long(index, depth)
            self.emit(depth, f"if {index} < 0: raise Corrupt('negative enum index')")
            self.emit(depth, f"{target} = {symbols}[{index}]")
        elif kind == "array":
            self._array(schema, target, depth, namespace)
        elif kind == "record":
            self._record(schema, target, depth)
        else:
            raise Unsupported(f"type {kind}")

    def _resolved(self, schema: Any, namespace: str) -> Any:
        """A named type's definition for a reference to it; a definition is remembered."""
        if isinstance(schema, str) and schema not in PRIMITIVES:
            found = self.named.get(schema) or self.named.get(f"{namespace}.{schema}")
            if found is None:
                raise Unsupported(f"unknown named type {schema}")
            return found
        if isinstance(schema, dict) and "name" in schema and schema.get("type") in ("record", "enum", "fixed"):
            space = schema.get("namespace", namespace)
            full = schema["name"] if "." in schema["name"] or not space else f"{space}.{schema['name']}"
            self.named[full] = self.named[schema["name"]] = schema
        return schema

    def _union(self, schema: list, target: str, depth: int, namespace: str) -> None:
        if len(schema) != 2 or schema[0] != "null":
            raise Unsupported(f"union {schema}")
        branch = self.name("u")
        self.emit(depth, f"{branch} = payload[p]")
        self.emit(depth, "p += 1")
        self.emit(depth, f"if {branch} == 0:")
        self.emit(depth + 1, f"{target} = None")
        self.emit(depth, f"elif {branch} == 2:")
        self.value(schema[1], target, depth + 1, namespace)
        self.emit(depth, "else:")
        self.emit(depth + 1, "raise Corrupt('union branch out of range')")

    def _array(self, schema: dict, target: str, depth: int, namespace: str) -> None:
        listed, count, item, size = self.name("a"), self.name("c"), self.name("i"), self.name("z")
        self.emit(depth, f"{listed} = []")
        self.long(count, depth)
        self.emit(depth, f"while {count}:")
        self.emit(depth + 1, f"if {count} < 0:")  # a block with its size in bytes
        self.emit(depth + 2, f"{count} = -{count}")
        self.long(size, depth + 2)
        self.emit(depth + 1, f"for _ in range({count}):")
        self.value(schema["items"], item, depth + 2, namespace)
        self.emit(depth + 2, f"{listed}.append({item})")
        self.long(count, depth + 1)
        self.emit(depth, f"{target} = {listed}")

    def _record(self, schema: dict, target: str, depth: int) -> None:
        namespace = schema.get("namespace", "")
        record = self.name("r")
        self.emit(depth, f"{record} = {{}}")
        for field in schema["fields"]:
            self.value(field["type"], f"{record}[{field['name']!r}]", depth, namespace)
        self.emit(depth, f"{target} = {record}")


def compile_reader(schema: Mapping[str, Any], start: int) -> Reader | None:
    """A function reading a record of `schema` (its full JSON form) from a payload whose body
    starts at `start`, as fastavro's ``schemaless_reader`` would with the same writer and
    reader schema; None when the schema has a type it does not compile."""
    compiler = _Compiler()
    try:
        compiler.value(dict(schema), "record", 1)
    except Unsupported:
        return None
    source = "\n".join([f"def read(payload):", f"    p = {start}", *compiler.lines,
                        "    if p != len(payload): raise Corrupt('the body is not the record')", "    return record"])
    scope: dict[str, Any] = {"read_long": read_long, "Corrupt": Corrupt, "EPOCH": EPOCH, "timedelta": timedelta,
                             "date": date, "EPOCH_ORDINAL": EPOCH_ORDINAL, **compiler.constants}
    exec(compile(source, f"<avro reader {schema.get('name')}>", "exec"), scope)  # noqa: S102 - our own schema's code
    return scope["read"]
