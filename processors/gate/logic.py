"""The gate: nothing reaches a subscriber unless it passed here.

The gate admits an event only on what it verified itself; nothing the producer chose is
taken on its word. For every message on ``ingest.<library>.<department>`` it checks, in order:

- a heartbeat (its ``ce_type``) is the department's real one — key ``heartbeat:<department>``,
  empty value, the heartbeat headers naming that department — and is then skipped;
- the department is a source of the library in the catalog (the broker lets no one else
  write to its topic);
- the value is not empty (a tombstone means nothing on an ingest topic);
- it decodes (a known schema, the library of the topic);
- the event's ``source_department`` is the topic's department;
- the key is the entity's pseudonymous key, recomputed from the event's entity id with the
  bus's secret — ordering, the golden record and compaction all hang on it;
- the message is in the partition its key maps to (when the gate is told partition counts);
- the event is valid against its schema's rules;
- then ``decide`` applies one number, one source against the entity's golden record, and no
  write it leads to — the golden record first — is bigger than its topic takes.

Whatever fails a check is one dead letter with its reason, never an exception. What comes out:

- ``shared.<library>``: the authoritative change (the library's own Avro schema; ``sequence``
  is the bus's version of the entity, the full data image in ``data``, ``fields_set`` the
  fields that changed; headers say backfill, the source's sequence, and when it was accepted,
  and name the life events the change is — a death recorded, a move out of a region — found
  by comparing the golden record before and after, once, when a live change is applied
  (``lifeevents``; the router delivers them);
- ``state.<library>``: the golden record, in the partition of the event that changed it; the
  compacted topic is both the gate's memory (``PartitionStore`` restores it on assignment)
  and the current view others can read;
- ``control.conflicts``: disagreements for the authoritative department to verify;
- ``dlq.<library>``: everything rejected, untouched, with the reason (only a message too large
  to copy whole loses its headers, then its value, then its key: see ``deadletters.fitted``).

The gate runs at least once: after a crash it may see events again. ``decide`` recognises
them and re-emits the same outputs, and subscribers apply by version, so nothing is lost and
nothing is applied twice.

Why one module of about 390 lines: admission is a sequence of checks on one event, each cheap, that must run in this order; one module keeps the order visible.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from govbus import compact_json
from govbus.processors import lifeevents
from govbus.processors.freshness import sla
from govbus.processors.gate.deadletters import Rejection, fitted, violations_detail
from govbus.processors.gate.decide import Status, decide
from govbus.processors.governance.subscriptions import filter_text
from govbus.processors.gate.golden import Golden, GoldenFormat, time_to_plain
from govbus.schemas.codec import Codec, CodecError, UnknownFingerprintError
from govbus.processors.runtime.output import Output
from govbus.schemas.framing import (ACCEPTED_AT, BACKFILL, FILTER_BEFORE, LATE, LIFE_EVENTS, PUBLISHED_AT, SOURCE_DEPARTMENT, SOURCE_SEQUENCE,
                                    Headers, cloudevent_headers, entity_key, header_seconds, heartbeat_problem,
                                    is_heartbeat, message_size)
from govbus.schemas.registry import SchemaVersion
from govbus.settings import get_settings
from govbus.schemas.validation import Validator
from govbus.topics.catalog import Catalog
from govbus.topics.names import TopicNames

log = logging.getLogger("govbus.gate")
# Decoded golden records kept per library, for entities that change again soon. A decoded
# record costs about 13 KiB of Python objects: at 100,000 the gate reached 1.35 GB during a
# 1,000,000-record initial load (bench), while a miss costs only a JSON read (~20 µs).
GOLDEN_CACHE_SIZE = 10_000

# Sizes. A message bigger than its topic's ``max.message.bytes`` is refused by the broker, and
# one bigger than the producer's ``message.max.bytes`` is refused before it is sent; either
# fails the batch's transaction, and the same batch would fail again after every restart. So
# the gate refuses, as a dead letter, an event that would make such a write.
KAFKA_MAX_MESSAGE_BYTES = 1_048_588  # the broker's default, a topic's limit unless the catalog sets one
PRODUCER_MAX_MESSAGE_BYTES = 1_000_000  # librdkafka's default, which the gate's producer keeps: the lower one
# The record's framing that the limits count on top of key, value and headers (librdkafka
# 2.16 refused 32 + 999,950 bytes and took 32 + 999,900), with room to spare.
RECORD_OVERHEAD = 1_024
MAX_MESSAGE_BYTES = "max.message.bytes"  # the topic setting, as the catalog would spell it

PartitionCounts = Callable[[str], "int | None"]  # topic -> its number of partitions (None: unknown)


class Arrival(NamedTuple):
    """One input message as Kafka gave it: every part of it is the producer's choice."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers


def key_partition(key: bytes, partitions: int) -> int:
    """The partition the Java clients' partitioner puts a key in (librdkafka's
    ``murmur2_random``, which the publisher and the processors use, agrees)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


_MURMUR_SEED, _MURMUR_MIX, _WORD = 0x9747B28C, 0x5BD1E995, 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 as Kafka's Java client computes it (``Utils.murmur2``), as an unsigned
    32-bit number. Equal to kafka-python's ``murmur2`` (tests/unit/test_gate_partition.py) at
    half its cost: whole words unpacked at once rather than byte by byte (2.2 against 4.2 µs
    for a 32-byte key; the gate checks every event's partition)."""
    length = len(data)
    mix, word = _MURMUR_MIX, _WORD
    hashed = (_MURMUR_SEED ^ length) & word
    whole = length & ~3
    for (block,) in struct.iter_unpack("<I", data[:whole]):
        block = (block * mix) & word
        block ^= block >> 24
        hashed = ((hashed * mix) & word) ^ ((block * mix) & word)
    tail = length & 3
    if tail:
        if tail == 3:
            hashed ^= data[whole + 2] << 16
        if tail >= 2:
            hashed ^= data[whole + 1] << 8
        hashed = ((hashed ^ data[whole]) * mix) & word
    hashed ^= hashed >> 13
    hashed = (hashed * mix) & word
    return hashed ^ (hashed >> 15)


def remembered_counts(fetch: Callable[[str], int | None], retry_after: float = 60.0) -> PartitionCounts:
    """`fetch` (a metadata request, say) asked once per topic. Why once: a topic's partition
    count must not change while the bus runs — more partitions would send keys away from
    their ``state.<library>`` partitions, which the gate relies on. An unknown count (None)
    is asked again `retry_after` seconds later, not for every event."""
    known: dict[str, int] = {}
    unknown_until: dict[str, float] = {}

    def count(topic: str) -> int | None:
        if topic in known or time.monotonic() < unknown_until.get(topic, 0.0):
            return known.get(topic)
        found = fetch(topic)
        if found is None:
            unknown_until[topic] = time.monotonic() + retry_after
        else:
            known[topic] = found
        return found

    return count


def topic_limits(catalog: Catalog, names: TopicNames) -> dict[str, int]:
    """topic -> its ``max.message.bytes``, for the topics whose catalog entry sets one."""
    return {spec.name: int(spec.config[MAX_MESSAGE_BYTES]) for spec in catalog.topic_specs(names)
            if MAX_MESSAGE_BYTES in spec.config}


@dataclass(slots=True)
class Step:
    """What the gate does for one input event: messages to send and the new golden record."""

    outputs: list[Output] = field(default_factory=list)
    golden: bytes | None = None  # None: the golden record is unchanged
    status: str = ""


class GateLogic:
    """The gate's work for one library, free of Kafka clients so that it can be tested directly.

    `secret` is the bus's key secret (default: ``GOVBUS_KEY_SECRET`` from the settings), to
    recompute each entity's key. `partitions` gives an ingest topic's partition count, to
    check that each event is in its key's partition; without it (or when it says None) the
    partition is not checked."""

    def __init__(self, library: str, catalog: Catalog, codec: Codec, names: TopicNames, *,
                 secret: bytes | None = None, partitions: PartitionCounts | None = None) -> None:
        self.library = library
        self.names = names
        self.codec = codec
        self.secret = secret if secret is not None else get_settings().key_secret.encode()
        self.partitions = partitions
        schema = codec.registry.latest(library)
        self.policies = schema.fields
        self.key_field = schema.entity_key
        self.sources = frozenset(catalog.library(library).sources)
        self.departments = frozenset(catalog.departments)  # each has its control.rejections.<department>
        self.validator = Validator(codec.registry)
        self.golden_format = GoldenFormat(self.policies)
        self.shared_topic = names.shared(library)
        self.dlq_topic = names.dlq(library)
        self.state_topic = names.state(library)
        self.shared_version = schema.version  # the version shared changes are written in
        self.conflicts_topic = names.bus("control.conflicts")
        self.max_lateness = sla.lateness_limit(catalog, library)
        lifeevents.check(catalog, codec.registry)
        self.life_events = catalog.library(library).life_events
        self.region_field = catalog.library(library).region_field
        self._limits = topic_limits(catalog, names)
        self.state_limit = self.limit(self.state_topic)
        self.counts: Counter[str] = Counter()
        # See _golden. Ordered, so that dropping the oldest entry is O(1): deleting a plain
        # dict's first key leaves a hole that every later `next(iter(...))` walks past, until
        # the dict is resized (2 µs per event with 10,000 entries, against 0.25).
        self._decoded: OrderedDict[bytes, tuple[bytes, Golden]] = OrderedDict()

    def limit(self, topic: str) -> int:
        """The most bytes of key, value and headers a message to `topic` may have."""
        return min(self._limits.get(topic, KAFKA_MAX_MESSAGE_BYTES), PRODUCER_MAX_MESSAGE_BYTES) - RECORD_OVERHEAD

    def handle(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
               headers: Headers, golden_bytes: bytes | None, now: float | None = None) -> Step:
        """What to do with one message of an ingest topic: the outputs and the new golden
        record, or exactly one dead letter. Any key, value and headers are answered so;
        an exception means a bug here, not a bad message."""
        arrival = Arrival(topic, partition, offset, key, value, list(headers or ()))
        department = self._department(topic)
        if is_heartbeat(arrival.headers):
            return self._heartbeat(department, arrival)
        admitted = self._admit(department, arrival)
        if isinstance(admitted, Rejection):
            return self._dead_letter(admitted, arrival)
        return self._decided(department, admitted, arrival, golden_bytes, time.time() if now is None else now)

    def _heartbeat(self, department: str, arrival: Arrival) -> Step:
        """A heartbeat ("alive, nothing changed") is for the freshness processor only: the
        gate skips it — a real one only, or the type would let anything by unrecorded."""
        problem = heartbeat_problem(department, arrival.key, arrival.value, arrival.headers)
        if problem is None:
            return Step(status="heartbeat")
        return self._dead_letter(Rejection("bad_heartbeat", problem), arrival)

    def _decided(self, department: str, event: dict[str, Any], arrival: Arrival, golden_bytes: bytes | None,
                 now: float) -> Step:
        """Apply an admitted event to its golden record; refuse it if a write would be too large."""
        key = arrival.key or b""  # admitted: the entity's key
        before = self._golden(key, golden_bytes)
        outcome = decide(self.policies, self.key_field, before, department, event)
        if outcome.status is Status.REJECTED:
            self.counts[outcome.status] += 1
            reason, detail = outcome.rejection
            return self._dead_letter(Rejection(str(reason), detail), arrival)
        step = Step(status=str(outcome.status))
        if outcome.status in (Status.APPLIED, Status.UNCHANGED):
            step.golden = compact_json.dumps(self.golden_format.dump(outcome.golden))
        if outcome.shared_change is not None:
            occurred = self._life_events(outcome.status, outcome.shared_change, before, outcome.golden)
            previous = self._previous(outcome.status, outcome.shared_change, before)
            step.outputs.append(self._shared(key, outcome.shared_change, event, arrival.headers, now, occurred,
                                             previous))
        step.outputs += [self._conflict(key, conflict) for conflict in outcome.conflicts]
        too_large = self._too_large(key, step)
        if too_large is not None:
            return self._dead_letter(too_large, arrival)
        if step.golden is not None:
            self._remember(key, step.golden, outcome.golden)
        self.counts[outcome.status] += 1
        return step

    def _life_events(self, status: Status, change: dict[str, Any], before: Golden | None,
                     after: Golden) -> list[lifeevents.Occurred]:
        """The life events of a live change just applied (``lifeevents.derive``): none for a
        redelivery (derived when it was first applied), nor for a source's snapshot."""
        if status is not Status.APPLIED or change["backfill"] or not self.life_events:
            return []
        return lifeevents.derive(self.life_events, self.region_field, before.values if before else None,
                                 after.values, frozenset(change["fields_set"] or ()))

    def _previous(self, status: Status, change: dict[str, Any], before: Golden | None) -> bytes | None:
        """The changed fields' values before a live change, as row filters read them
        (``subscriptions.filter_text``): so that the router can tell a subscription whose filter
        the entity leaves (it gets a DELETE: the row is out of its view) from one it was never in
        (it gets nothing: not even that the entity exists)."""
        if status is not Status.APPLIED or change["backfill"] or before is None or not change["fields_set"]:
            return None
        return compact_json.dumps({name: filter_text(before.values.get(name)) for name in change["fields_set"]})

    def _too_large(self, key: bytes, step: Step) -> Rejection | None:
        """Why a write of this step would be refused for its size, checked before anything is
        emitted (see RECORD_OVERHEAD); None when every write fits."""
        if step.golden is not None and len(key) + len(step.golden) > self.state_limit:
            return Rejection("golden_too_large", f"the golden record would be {len(key) + len(step.golden)} bytes, "
                                                 f"over the limit of {self.state_limit} bytes of {self.state_topic}")
        for output in step.outputs:
            size, limit = message_size(output.key, output.value, output.headers), self.limit(output.topic)
            if size > limit:
                return Rejection("output_too_large", f"its message to {output.topic} would be {size} bytes, "
                                                     f"over the limit of {limit} bytes")
        return None

    def _golden(self, key: bytes, stored: bytes | None) -> Golden | None:
        """The golden record the table holds for `key`, decoded — or taken from the cache of
        records this gate wrote or read, when the table's bytes are the cached ones.

        Why it is safe: a record is decided from the table's bytes alone, the cache entry is
        used only when those bytes are identical (the same object, or equal content: after a
        rebalance or a restore from ``state.<library>`` the bytes are new objects), and
        golden records are never changed in place. Why: decoding JSON into a `Golden` was a
        sixth of the gate's own time per event (profile in bench/results/)."""
        if not stored:
            return None
        cached = self._decoded.get(key)
        if cached is not None and (cached[0] is stored or cached[0] == stored):
            return cached[1]
        golden = self.golden_format.load(compact_json.loads(stored))
        self._remember(key, stored, golden)
        return golden

    def _remember(self, key: bytes, stored: bytes, golden: Golden) -> None:
        if key not in self._decoded and len(self._decoded) >= GOLDEN_CACHE_SIZE:
            self._decoded.popitem(last=False)  # the oldest entry: bounded memory
        self._decoded[key] = (stored, golden)

    def _department(self, topic: str) -> str:
        return self.names.parse_ingest(topic)[1]

    def _admit(self, department: str, arrival: Arrival) -> Rejection | dict[str, Any]:
        """The decoded event, checked; or the first reason to refuse it."""
        if department not in self.sources:
            return Rejection("unknown_department", f"{department} is not a source of {self.library} in the catalog")
        if not arrival.value:
            return Rejection("empty_value", "the value is empty (a tombstone?): an ingest event never is")
        try:
            schema, event = self.codec.decode(arrival.value)
        except CodecError as error:
            reason = "unknown_schema" if isinstance(error, UnknownFingerprintError) else "undecodable"
            return Rejection(reason, str(error))
        rejection = self._checked(department, schema, event, arrival)
        return event if rejection is None else rejection

    def _checked(self, department: str, schema: SchemaVersion, event: dict[str, Any],
                 arrival: Arrival) -> Rejection | None:
        """The first reason to refuse a decoded event, or None: its library, its source, where
        it was written, its schema's rules."""
        if schema.library != self.library:
            return Rejection("wrong_library", f"a {schema.library} event on a {self.library} topic")
        if event["source_department"] != department:
            return Rejection("spoofed_source", f"the event claims source {event['source_department']!r} "
                                               f"but was written to {department}'s topic")
        misplaced = self._misplaced(event, arrival)
        if misplaced is not None:
            return misplaced
        violations = self.validator.validate(self.library, event, schema.version)
        return Rejection("invalid", violations_detail(violations)) if violations else None

    def _misplaced(self, event: dict[str, Any], arrival: Arrival) -> Rejection | None:
        """Whether the event is under its entity's key, in that key's partition. Order per
        entity, the golden record's place and compaction rest on both, so the producer's word
        is not taken. The details name no entity: dead-letter headers carry no personal data."""
        if arrival.key != entity_key(self.secret, self.library, event["entity_id"]):
            return Rejection("wrong_key", "the key is not the entity's pseudonymous key")
        count = self.partitions(arrival.topic) if self.partitions is not None else None
        if count:
            expected = key_partition(arrival.key, count)
            if expected != arrival.partition:
                return Rejection("wrong_partition", f"the key belongs in partition {expected} of {count}, "
                                                    f"not in {arrival.partition}")
        return None

    def _dead_letter(self, rejection: Rejection, arrival: Arrival) -> Step:
        """The message to ``dlq.<library>`` as it came, with why (as much of it as that topic
        takes: see ``deadletters.fitted``), and the same to its source's own
        ``control.rejections.<department>``: the operators replay from the first, the source
        learns from the second why its event was refused (it may read nothing else of the gate)."""
        topic, partition, offset = arrival.topic, arrival.partition, arrival.offset
        self.counts[f"rejected:{rejection.reason}"] += 1
        log.info("dead-lettered %s[%d]@%d: %s", topic, partition, offset, rejection.reason)
        key, value, headers = fitted((arrival.key, arrival.value, arrival.headers), rejection, "gate",
                                     topic, partition, offset, self.limit(self.dlq_topic))
        outputs = [Output(self.dlq_topic, key, value, headers)]
        department = self._department(topic)
        if department in self.departments:
            outputs.append(Output(self.names.rejections_of(department), key, value, headers))
        return Step(outputs, status="rejected")

    def _shared(self, key: bytes, change: dict[str, Any], event: dict[str, Any], headers: Headers, now: float,
                occurred: Sequence[lifeevents.Occurred] = (), previous: bytes | None = None) -> Output:
        record = {
            "event_id": change["event_id"], "entity_id": change["entity_id"], "op": change["op"],
            "fields_set": change["fields_set"], "source_department": change["source_department"],
            "source_system": event["source_system"], "sequence": change["version"],
            "valid_from": change["valid_from"], "recorded_at": change["recorded_at"],
            "data": change["data"] or {},
        }
        value = self.codec.encode(self.library, record, self.shared_version)
        # Late: a live change accepted longer after the source recorded it than the library's
        # SLA allows. Still delivered, marked; a snapshot (backfill) is never late.
        late = sla.late(change["recorded_at"].timestamp(), now, self.max_lateness, change["backfill"])
        stamps = {ACCEPTED_AT: str(int(now * 1000)).encode(), BACKFILL: b"true" if change["backfill"] else b"false",
                  LATE: b"true" if late else b"false", SOURCE_SEQUENCE: str(change["sequence"]).encode(),
                  SOURCE_DEPARTMENT: change["source_department"].encode()}
        if occurred:
            stamps[LIFE_EVENTS] = lifeevents.header(list(occurred))
        if previous is not None:
            stamps[FILTER_BEFORE] = previous
        return Output(self.shared_topic, key, value, self._verified_headers(key, event, headers, stamps))

    def _verified_headers(self, key: bytes, event: dict[str, Any], given: Headers,
                          stamps: dict[str, bytes]) -> Headers:
        """A shared change's headers, every one from what the gate verified: the CloudEvents
        attributes from the decoded, validated event (``ce_source`` from the topic's department,
        which the event had to name; ``ce_time`` its ``recorded_at``), the gate's own stamps,
        and of the producer's headers only a well-formed PUBLISHED_AT (its send time, which
        latency measurements read). Nothing else the producer set travels on."""
        headers = cloudevent_headers(event, self.library, self.shared_version, key)
        headers += stamps.items()
        published = next((value for name, value in given if name == PUBLISHED_AT), None)
        if published is not None and header_seconds({PUBLISHED_AT: published}, PUBLISHED_AT) is not None:
            headers.append((PUBLISHED_AT, published))
        return headers

    def _conflict(self, key: bytes, conflict: dict[str, Any]) -> Output:
        plain = {name: time_to_plain(value) if name.endswith(("_valid_from", "_recorded_at")) else value
                 for name, value in conflict.items()}
        plain["library"] = self.library
        body = json.dumps(plain, ensure_ascii=False, default=str).encode()
        return Output(self.conflicts_topic, key, body, [("content-type", b"application/json")])
