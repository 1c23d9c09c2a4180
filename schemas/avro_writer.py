"""Avro binary writers compiled per schema: straight-line Python for our records.

Why: fastavro's ``schemaless_writer`` took about 15 µs per population record on our 2-core
machines — 5 µs of it the call's own set-up, 0.45 µs each nullable field's union — and the
router encodes one record per distinct projection of every change (four per change with the
bench's four subscriptions), the gate one per event. A writer generated once per schema does
only what the schema says, field after field, without looking anything up.

What it writes is fastavro's bytes exactly, or nothing: a value it does not handle the way
fastavro would (a naive datetime, which fastavro reads as local time; a date given as text; a
type that does not fit) raises, and the codec then writes the record with fastavro, which
encodes it or says what is wrong. Schemas with a type these writers do not know (a union
other than ``["null", X]``, a map, fixed, bytes, float) get no compiled writer at all
(``compile_writer`` returns None). ``tests/unit/test_avro_writer.py`` compares the two
byte for byte over every library's generated records, projections and edge values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from .avro_compiling import EPOCH, EPOCH_ORDINAL, SchemaCompiler

LONG_RANGE = 1 << 63
ONE_BYTE = [bytes((value,)) for value in range(128)]
STRING_LENGTHS = [bytes((length << 1,)) for length in range(64)]  # zigzag lengths that fit one byte
NULLABLE_STRING_LENGTHS = [b"\x02" + length for length in STRING_LENGTHS]  # union branch 1, then the length
Writer = Callable[[Mapping[str, Any]], bytes]


def long_bytes(number: int) -> bytes:
    """An Avro long or int: zigzag, then a little-endian base-128 varint."""
    if not -LONG_RANGE <= number < LONG_RANGE:
        raise OverflowError(f"{number} does not fit a 64-bit long")
    number = (number << 1) ^ (number >> 63)
    if number < 0x80:
        return ONE_BYTE[number]
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def timestamp_millis(value: Any) -> int:
    """fastavro's timestamp-millis for an int or a datetime with a time zone (a naive one it
    reads as local time: refused here, so the codec falls back to fastavro)."""
    if type(value) is int:
        return value
    if isinstance(value, datetime) and value.tzinfo is not None:
        delta = value - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1000 + int(delta.microseconds / 1000)
    raise TypeError(f"not a timestamp this writer encodes: {value!r}")


def days(value: Any) -> int:
    """fastavro's date: days since 1970-01-01 for an int or a date (a datetime counts its date)."""
    if type(value) is int:
        return value
    if isinstance(value, date):
        return value.toordinal() - EPOCH_ORDINAL
    raise TypeError(f"not a date this writer encodes: {value!r}")


def items(value: Any) -> list | tuple:
    if type(value) not in (list, tuple):
        raise TypeError(f"not an array: {value!r}")
    return value


class _WriterCompiler(SchemaCompiler):
    """Each value (`slot`: an expression) appended to the bytearray ``out``."""

    def nullable(self, schema: Any, slot: str, depth: int, namespace: str) -> None:
        variable = self.name("u")
        self.emit(depth, f"{variable} = {slot}")
        self.emit(depth, f"if {variable} is None:")
        self.emit(depth + 1, "out += b'\\x00'")
        self.emit(depth, "else:")
        if self.resolved(schema, namespace) == "string":  # the common case: branch and length in one step
            self._string(variable, depth + 1, "NULLABLE_STRING_LENGTHS", "b'\\x02' + ")
        else:
            self.emit(depth + 1, "out += b'\\x02'")
            self.value(schema, variable, depth + 1, namespace)

    def timestamp_millis(self, slot: str, depth: int) -> None:
        self.emit(depth, f"out += long_bytes(timestamp_millis({slot}))")

    def date(self, slot: str, depth: int) -> None:
        self.emit(depth, f"out += long_bytes(days({slot}))")

    def string(self, slot: str, depth: int) -> None:
        self._string(slot, depth)

    def _string(self, slot: str, depth: int, lengths: str = "STRING_LENGTHS", branch: str = "") -> None:
        data = self.name("s")
        self.emit(depth, f"{data} = {slot}.encode()")
        self.emit(depth, f"out += {lengths}[len({data})] if len({data}) < 64 else {branch}long_bytes(len({data}))")
        self.emit(depth, f"out += {data}")

    def long(self, slot: str, depth: int) -> None:
        self.emit(depth, f"out += long_bytes({slot})")  # a float or text raises in long_bytes

    def boolean(self, slot: str, depth: int) -> None:
        variable = self.name("b")
        self.emit(depth, f"{variable} = {slot}")
        self.emit(depth, f"if type({variable}) is not bool: raise TypeError('not a boolean')")
        self.emit(depth, f"out += b'\\x01' if {variable} else b'\\x00'")

    def null(self, slot: str, depth: int) -> None:
        self.emit(depth, f"if {slot} is not None: raise TypeError('not null')")

    def enum(self, symbols: tuple[str, ...], slot: str, depth: int) -> None:
        table = self.name("ENUM")
        self.constants[table] = {symbol: long_bytes(index) for index, symbol in enumerate(symbols)}
        self.emit(depth, f"out += {table}[{slot}]")

    def array(self, item_schema: Any, slot: str, depth: int, namespace: str) -> None:
        listed, item = self.name("a"), self.name("i")
        self.emit(depth, f"{listed} = items({slot})")
        self.emit(depth, f"if {listed}:")
        self.emit(depth + 1, f"out += long_bytes(len({listed}))")
        self.emit(depth + 1, f"for {item} in {listed}:")
        self.value(item_schema, item, depth + 2, namespace)
        self.emit(depth, "out += b'\\x00'")

    def record(self, schema: Mapping[str, Any], slot: str, depth: int) -> None:
        namespace = schema.get("namespace", "")
        record = self.name("r")
        self.emit(depth, f"{record} = {slot}")
        self.emit(depth, f"if not isinstance({record}, dict): raise TypeError('not a record')")
        for field in schema["fields"]:
            if "default" in field and field["default"] is None:
                access = f"{record}.get({field['name']!r})"
            elif "default" in field:
                default = self.name("DEFAULT")
                self.constants[default] = field["default"]
                access = f"{record}.get({field['name']!r}, {default})"
            else:
                access = f"{record}[{field['name']!r}]"
            self.value(field["type"], access, depth, namespace)


def compile_writer(schema: Mapping[str, Any]) -> Writer | None:
    """A function writing a record of `schema` (its full JSON form) as fastavro's
    ``schemaless_writer`` would; None when the schema has a type it does not compile."""
    return _WriterCompiler().function(
        schema, "avro_writer(record)", ["    out = bytearray()"], ["    return bytes(out)"],
        {"long_bytes": long_bytes, "items": items, "timestamp_millis": timestamp_millis, "days": days,
         "STRING_LENGTHS": STRING_LENGTHS, "NULLABLE_STRING_LENGTHS": NULLABLE_STRING_LENGTHS})
