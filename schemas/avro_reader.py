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
from datetime import date, timedelta
from typing import Any

from .avro_compiling import EPOCH, EPOCH_ORDINAL, SchemaCompiler

Reader = Callable[[bytes], dict[str, Any]]


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


class _ReaderCompiler(SchemaCompiler):
    """Each value read from ``payload`` at ``p`` into `slot` (an assignment target)."""

    def long(self, slot: str, depth: int) -> None:
        """A long: a one-byte value inline, longer ones through ``read_long``."""
        byte = self.name("b")
        self.emit(depth, f"{byte} = payload[p]")
        self.emit(depth, f"if {byte} < 0x80:")
        self.emit(depth + 1, f"{slot} = ({byte} >> 1) ^ -({byte} & 1)")
        self.emit(depth + 1, "p += 1")
        self.emit(depth, "else:")
        self.emit(depth + 1, f"{slot}, p = read_long(payload, p)")

    def nullable(self, schema: Any, slot: str, depth: int, namespace: str) -> None:
        branch = self.name("u")
        self.emit(depth, f"{branch} = payload[p]")
        self.emit(depth, "p += 1")
        self.emit(depth, f"if {branch} == 0:")
        self.emit(depth + 1, f"{slot} = None")
        self.emit(depth, f"elif {branch} == 2:")
        self.value(schema, slot, depth + 1, namespace)
        self.emit(depth, "else:")
        self.emit(depth + 1, "raise Corrupt('union branch out of range')")

    def timestamp_millis(self, slot: str, depth: int) -> None:
        millis = self.name("m")
        self.long(millis, depth)
        self.emit(depth, f"{slot} = EPOCH + timedelta(microseconds={millis} * 1000)")

    def date(self, slot: str, depth: int) -> None:
        days = self.name("d")
        self.long(days, depth)
        self.emit(depth, f"{slot} = date.fromordinal({days} + EPOCH_ORDINAL)")

    def string(self, slot: str, depth: int) -> None:
        length = self.name("n")
        self.long(length, depth)
        self.emit(depth, f"if {length} < 0: raise Corrupt('negative length')")
        self.emit(depth, f"{slot} = payload[p:p + {length}].decode()")
        self.emit(depth, f"p += {length}")

    def null(self, slot: str, depth: int) -> None:
        self.emit(depth, f"{slot} = None")

    def enum(self, symbols: tuple[str, ...], slot: str, depth: int) -> None:
        table, index = self.name("SYMBOLS"), self.name("e")
        self.constants[table] = symbols
        self.long(index, depth)
        self.emit(depth, f"if {index} < 0: raise Corrupt('negative enum index')")
        self.emit(depth, f"{slot} = {table}[{index}]")

    def array(self, item_schema: Any, slot: str, depth: int, namespace: str) -> None:
        listed, count, item, size = self.name("a"), self.name("c"), self.name("i"), self.name("z")
        self.emit(depth, f"{listed} = []")
        self.long(count, depth)
        self.emit(depth, f"while {count}:")
        self.emit(depth + 1, f"if {count} < 0:")  # a block with its size in bytes
        self.emit(depth + 2, f"{count} = -{count}")
        self.long(size, depth + 2)
        self.emit(depth + 1, f"for _ in range({count}):")
        self.value(item_schema, item, depth + 2, namespace)
        self.emit(depth + 2, f"{listed}.append({item})")
        self.long(count, depth + 1)
        self.emit(depth, f"{slot} = {listed}")

    def record(self, schema: Mapping[str, Any], slot: str, depth: int) -> None:
        namespace = schema.get("namespace", "")
        record = self.name("r")
        self.emit(depth, f"{record} = {{}}")
        for field in schema["fields"]:
            self.value(field["type"], f"{record}[{field['name']!r}]", depth, namespace)
        self.emit(depth, f"{slot} = {record}")


def compile_reader(schema: Mapping[str, Any], start: int) -> Reader | None:
    """A function reading a record of `schema` (its full JSON form) from a payload whose body
    starts at `start`, as fastavro's ``schemaless_reader`` would with the same writer and
    reader schema; None when the schema has a type it does not compile."""
    return _ReaderCompiler().function(
        schema, "avro_reader(payload)", [f"    p = {start}"],
        ["    if p != len(payload): raise Corrupt('the body is not the record')", "    return record"],
        {"read_long": read_long, "Corrupt": Corrupt, "EPOCH": EPOCH, "timedelta": timedelta, "date": date,
         "EPOCH_ORDINAL": EPOCH_ORDINAL})
