"""Avro single-object encoding of change events: the bytes that travel as Kafka values.

Framing (Avro specification, "Single-object encoding"): two marker bytes `C3 01`, the
8-byte CRC-64-AVRO fingerprint of the writer schema's parsing canonical form in
little-endian order (what Java's `SchemaNormalization` and the Apache Python package
produce, and what fastavro's hex fingerprint spells), then the Avro binary body. A reader
finds the writer schema by fingerprint, so schemas can evolve while old events stay readable.

Fingerprints are computed from fastavro's canonical form, which agrees with Java and the
specification. The Apache Python package (1.12) keeps `{"type":"long"}` for fields with a
logical type in its canonical form, so its `Schema.fingerprint()` differs for our schemas:
look payloads up through this registry, not through that method.

The schemas are parsed once, by the registry, and the header is precomputed per version.
Records are written and read by code compiled per schema version (``avro_writer``,
``avro_reader``): fastavro's bytes and records, with fastavro behind them for whatever they
refuse.
"""

from __future__ import annotations

from functools import cache
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from .avro_reader import Reader, compile_reader
from .avro_writer import Writer, compile_writer
from .registry import SchemaRegistry, SchemaVersion, default_registry

MAGIC = b"\xc3\x01"
HEADER_LENGTH = len(MAGIC) + 8


class CodecError(Exception):
    """A payload could not be encoded or decoded."""


class NotSingleObjectError(CodecError):
    """The payload does not start with the single-object marker `C3 01`."""


class UnknownFingerprintError(CodecError):
    """The payload names a writer schema this registry does not have."""

    def __init__(self, fingerprint: bytes) -> None:
        super().__init__(f"no schema with fingerprint {fingerprint.hex()} is registered; "
                         "the producer may use a newer schema: update govbus on this side")
        self.fingerprint = fingerprint


class CorruptPayloadError(CodecError):
    """The body is truncated, has trailing bytes, or does not match the writer schema."""


class EncodeError(CodecError, ValueError):
    """The record does not fit the schema it is written with."""


def header(schema: SchemaVersion) -> bytes:
    """Marker and fingerprint: the ten bytes in front of every payload of this schema."""
    return MAGIC + schema.fingerprint


class Codec:
    """Encodes and decodes events against the schemas of one registry."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.registry = registry or default_registry()
        self._headers: dict[tuple[str, int | None], tuple[bytes, Any, Writer | None]] = {}
        self._readers: dict[tuple[str, int], Reader | None] = {}

    def _writer(self, library: str, version: int | None) -> tuple[bytes, Any, Writer | None]:
        """The version's header, fastavro's parsed schema and its compiled writer (if any)."""
        found = self._headers.get((library, version))
        if found is None:
            schema = self.registry.get(library, version)
            found = self._headers[(library, version)] = (header(schema), schema.parsed, compile_writer(schema.schema))
        return found

    def encode(self, library: str, record: dict[str, Any], version: int | None = None) -> bytes:
        """The single-object encoding of `record` (latest schema version unless given): by the
        schema's compiled writer (``avro_writer``), or by fastavro when there is none or the
        compiled one refuses a value (fastavro then encodes it, or says what is wrong)."""
        prefix, parsed, compiled = self._writer(library, version)
        if compiled is not None:
            try:
                return prefix + compiled(record)
            except Exception:  # noqa: BLE001 - fastavro writes the record or names what is wrong
                pass
        buffer = BytesIO()
        buffer.write(prefix)
        try:
            schemaless_writer(buffer, parsed, record)
        except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as error:
            raise EncodeError(f"{library} event does not fit its schema: {error}") from error
        return buffer.getvalue()

    def _reader(self, schema: SchemaVersion) -> Reader | None:
        """The compiled reader of one writer schema (``avro_reader``), made on first use."""
        key = (schema.library, schema.version)
        if key not in self._readers:
            self._readers[key] = compile_reader(schema.schema, HEADER_LENGTH)
        return self._readers[key]

    def writer_schema(self, payload: bytes) -> SchemaVersion:
        """The schema the payload was written with, read from its header."""
        if len(payload) < HEADER_LENGTH:
            if payload[:2] != MAGIC[: len(payload[:2])]:
                raise NotSingleObjectError("payload does not start with the Avro single-object marker C3 01")
            raise CorruptPayloadError(f"payload of {len(payload)} bytes is shorter than the 10-byte header")
        if payload[:2] != MAGIC:
            raise NotSingleObjectError(
                f"payload starts with {payload[:2].hex()}, not the Avro single-object marker c301"
                + (" (it looks like the Confluent wire format)" if payload[:1] == b"\x00" else ""))
        schema = self.registry.by_fingerprint(payload[2:HEADER_LENGTH])
        if schema is None:
            raise UnknownFingerprintError(bytes(payload[2:HEADER_LENGTH]))
        return schema

    def decode(self, payload: bytes, reader_version: int | None = None) -> tuple[SchemaVersion, dict[str, Any]]:
        """(schema, record): read with the writer's schema, or projected into
        `reader_version` of the same library (older or newer) when one is given.
        The schema returned is the one the record now has."""
        writer = self.writer_schema(payload)
        reader = writer
        if reader_version is not None and reader_version != writer.version:
            reader = self.registry.get(writer.library, reader_version)
        else:
            compiled = self._reader(writer)
            if compiled is not None:
                try:
                    return writer, compiled(payload)
                except Exception:  # noqa: BLE001 - fastavro reads it, or says what is wrong
                    pass
        body = BytesIO(payload)
        body.seek(HEADER_LENGTH)
        try:
            if reader is writer:
                record = schemaless_reader(body, writer.parsed, None)
            else:
                record = schemaless_reader(body, writer.parsed, reader.parsed)
        except Exception as error:  # fastavro raises EOFError, ValueError, IndexError, ...
            raise CorruptPayloadError(
                f"cannot read a {writer.library} v{writer.version} body: {error!r}") from error
        if body.tell() != len(payload):
            raise CorruptPayloadError(
                f"{len(payload) - body.tell()} bytes left over after the {writer.library} record")
        return reader, record


@cache
def default_codec() -> Codec:
    """A codec over the packaged schemas (one per process)."""
    return Codec()


def _varint(payload: bytes, position: int) -> tuple[int, int]:
    """An Avro long (zigzag varint) at `position`: (its value, the position after it)."""
    shift = result = 0
    while True:
        byte = payload[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), position
        shift += 7


_ONE_BYTE_LENGTHS = [bytes((length << 1,)) for length in range(64)]  # zigzag varints that fit one byte


def _avro_string(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) < 64:  # ids and pseudonyms: the router's per-subscription fast path (bench: fan_out)
        return _ONE_BYTE_LENGTHS[len(data)] + data
    length, out = len(data) << 1, bytearray()  # zigzag of a non-negative length
    while length > 0x7F:
        out.append((length & 0x7F) | 0x80)
        length >>= 7
    out.append(length)
    return bytes(out) + data


def around_entity_id(payload: bytes) -> tuple[bytes, bytes]:
    """The payload before and after its encoded ``entity_id`` (see `with_entity_id`)."""
    length, position = _varint(payload, HEADER_LENGTH)
    start = position + length  # after event_id
    length, position = _varint(payload, start)
    return payload[:start], payload[position + length:]


def avro_string(text: str) -> bytes:
    """An Avro string's encoding: its UTF-8 length (zigzag varint), then the bytes."""
    return _avro_string(text)


def with_entity_id(payload: bytes, entity_id: str) -> bytes:
    """The same single-object payload with another ``entity_id``, without encoding it again.

    Why: the router delivers one change to many subscriptions that see the same fields, which
    differ only in the id they know the entity by (a pseudonym per subscription where the key
    is hidden); encoding is most of a delivery's cost. Safe because every library's schema
    starts with the envelope's ``event_id`` and ``entity_id`` strings (``envelope.avsc``), and
    an Avro record is its fields' encodings one after another."""
    before, after = around_entity_id(payload)
    return before + _avro_string(entity_id) + after


def encode(library: str, record: dict[str, Any], version: int | None = None) -> bytes:
    """Encode with the packaged schemas; see `Codec.encode`."""
    return default_codec().encode(library, record, version)


def decode(payload: bytes, reader_version: int | None = None) -> tuple[SchemaVersion, dict[str, Any]]:
    """Decode with the packaged schemas; see `Codec.decode`."""
    return default_codec().decode(payload, reader_version)
