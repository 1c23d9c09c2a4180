"""What the compiled Avro writer and reader share: walking a schema into Python source.

``SchemaCompiler.value`` walks one schema (named types, ``["null", X]`` unions, logical
types) and calls one hook per type; ``avro_writer`` fills the hooks with code that appends a
value's bytes, ``avro_reader`` with code that reads one. A type with no hook, or a union of
another shape, raises ``Unsupported``: that schema then gets no compiled code, and the codec
uses fastavro for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
PRIMITIVES = frozenset({"string", "long", "int", "null", "boolean"})


class Unsupported(Exception):
    """The schema uses a type the compiled code does not handle."""


class SchemaCompiler:
    """Python source for one schema, a line at a time. A subclass says what each type does:
    ``nullable``, ``timestamp_millis``, ``date``, ``string``, ``long``, ``null``, ``enum``,
    ``array``, ``record`` (and ``boolean``, refused unless given). `slot`: the Python
    expression a hook writes from (writer) or assigns to (reader)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self.named: dict[str, Any] = {}
        self.count = 0

    def name(self, prefix: str) -> str:
        """A variable or constant name not used before in this function."""
        self.count += 1
        return f"{prefix}{self.count}"

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def value(self, schema: Any, slot: str, depth: int, namespace: str = "") -> None:
        schema = self.resolved(schema, namespace)
        if isinstance(schema, list):
            if len(schema) != 2 or schema[0] != "null":
                raise Unsupported(f"union {schema}")
            self.nullable(schema[1], slot, depth, namespace)
            return
        kind = schema if isinstance(schema, str) else schema.get("type")
        logical = schema.get("logicalType") if isinstance(schema, dict) else None
        if isinstance(kind, (dict, list)):
            self.value(kind, slot, depth, namespace)
        elif logical == "timestamp-millis" and kind == "long":
            self.timestamp_millis(slot, depth)
        elif logical == "date" and kind == "int":
            self.date(slot, depth)
        elif logical is not None:
            raise Unsupported(f"logical type {logical}")
        elif kind == "string":
            self.string(slot, depth)
        elif kind in ("long", "int"):
            self.long(slot, depth)
        elif kind == "boolean":
            self.boolean(slot, depth)
        elif kind == "null":
            self.null(slot, depth)
        elif kind == "enum":
            self.enum(tuple(schema["symbols"]), slot, depth)
        elif kind == "array":
            self.array(schema["items"], slot, depth, namespace)
        elif kind == "record":
            self.record(schema, slot, depth)
        else:
            raise Unsupported(f"type {kind}")

    def resolved(self, schema: Any, namespace: str) -> Any:
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

    def function(self, schema: Mapping[str, Any], signature: str, head: Sequence[str], tail: Sequence[str],
                 scope: dict[str, Any]) -> Callable[..., Any] | None:
        """``def <signature>:`` with `head`, the walk of `schema` into ``record``, then `tail`
        as its body, compiled with `scope` and the walk's constants; None for a schema with a
        type this compiler does not handle."""
        try:
            self.value(dict(schema), "record", 1)
        except Unsupported:
            return None
        name = signature.split("(")[0]
        source = "\n".join([f"def {signature}:", *head, *self.lines, *tail])
        namespace = {**scope, **self.constants}
        exec(compile(source, f"<{name} {schema.get('name')}>", "exec"), namespace)  # noqa: S102 - our schema's code
        return namespace[name]

    def boolean(self, slot: str, depth: int) -> None:
        """Booleans are in no schema of ours; a compiler that needs them says how."""
        raise Unsupported("boolean")
