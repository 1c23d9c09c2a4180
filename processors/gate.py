"""The gate: nothing reaches a subscriber unless it passed here.

For every event on ``ingest.<library>.<department>`` the gate decodes, checks the source
(the department is the one the topic names; the broker lets no one else write there),
validates, and lets ``decide`` apply one number, one source against the entity's golden
record. What comes out:

- ``shared.<library>``: the authoritative change (the library's own Avro schema; ``sequence``
  is the bus's version of the entity, the full data image in ``data``, ``fields_set`` the
  fields that changed; headers say backfill, the source's sequence, and when it was accepted);
- ``state.<library>``: the golden record, in the partition of the event that changed it; the
  compacted topic is both the gate's memory (``PartitionStore`` restores it on assignment)
  and the current view others can read;
- ``control.conflicts``: disagreements for the authoritative department to verify;
- ``dlq.<library>``: everything rejected, untouched, with the reason.

The gate runs at least once: after a crash it may see events again. ``decide`` recognises
them and re-emits the same outputs, and subscribers apply by version, so nothing is lost and
nothing is applied twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from govbus.processors.deadletters import Rejection, dead_letter_headers, violations_detail
from govbus.processors.decide import Status, decide
from govbus.processors.golden import Golden, GoldenFormat, time_to_plain
from govbus.schemas.codec import Codec, CodecError, UnknownFingerprintError
from govbus.schemas.framing import (ACCEPTED_AT, BACKFILL, LATE, SOURCE_DEPARTMENT, SOURCE_SEQUENCE, Headers,
                                   is_heartbeat, with_headers)
from govbus.schemas.validation import Validator
from govbus.topics.catalog import Catalog
from govbus.topics.names import TopicNames

log = logging.getLogger("govbus.gate")
GOLDEN_CACHE_SIZE = 100_000  # decoded golden records kept per library (≈ 5 KiB each)



@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes
    value: bytes | None
    headers: Headers


@dataclass(slots=True)
class Step:
    """What the gate does for one input event: messages to send and the new golden record."""

    outputs: list[Output] = field(default_factory=list)
    golden: bytes | None = None  # None: the golden record is unchanged
    status: str = ""


class GateLogic:
    """The gate's work for one library, free of faust so that it can be tested directly."""

    def __init__(self, library: str, catalog: Catalog, codec: Codec, names: TopicNames) -> None:
        self.library = library
        self.names = names
        self.codec = codec
        schema = codec.registry.latest(library)
        self.policies = schema.fields
        self.key_field = schema.entity_key
        self.sources = frozenset(catalog.library(library).sources)
        self.validator = Validator(codec.registry)
        self.golden_format = GoldenFormat(self.policies)
        self.shared_topic = names.shared(library)
        self.dlq_topic = names.dlq(library)
        self.conflicts_topic = names.bus("control.conflicts")
        self.max_lateness = catalog.library(library).freshness.max_source_lateness.total_seconds()
        self.counts: Counter[str] = Counter()
        self._decoded: dict[bytes, tuple[bytes, Golden]] = {}  # see _golden

    def handle(self, topic: str, partition: int, offset: int, key: bytes, value: bytes,
               headers: Headers, golden_bytes: bytes | None, now: float | None = None) -> Step:
        if is_heartbeat(headers):  # "alive, nothing changed": for the freshness processor only
            return Step(status="heartbeat")
        now = time.time() if now is None else now
        department = self._department(topic)
        try:
            rejection, event = self._admit(department, value)
        except CodecError as error:
            reason = "unknown_schema" if isinstance(error, UnknownFingerprintError) else "undecodable"
            rejection, event = Rejection(reason, str(error)), None
        if rejection is not None:
            return self._dead_letter(rejection, topic, partition, offset, key, value, headers)
        golden = self._golden(key, golden_bytes)
        outcome = decide(self.policies, self.key_field, golden, department, event)
        self.counts[outcome.status] += 1
        if outcome.status is Status.REJECTED:
            reason, detail = outcome.rejection
            return self._dead_letter(Rejection(str(reason), detail), topic, partition, offset, key, value, headers)
        step = Step(status=str(outcome.status))
        if outcome.status in (Status.APPLIED, Status.UNCHANGED):
            step.golden = json.dumps(self.golden_format.dump(outcome.golden), ensure_ascii=False,
                                     separators=(",", ":")).encode()
            self._remember(key, step.golden, outcome.golden)
        if outcome.shared_change is not None:
            step.outputs.append(self._shared(key, outcome.shared_change, event, headers, now))
        step.outputs += [self._conflict(key, conflict) for conflict in outcome.conflicts]
        return step

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
        golden = self.golden_format.load(json.loads(stored))
        self._remember(key, stored, golden)
        return golden

    def _remember(self, key: bytes, stored: bytes, golden: Golden) -> None:
        if key not in self._decoded and len(self._decoded) >= GOLDEN_CACHE_SIZE:
            del self._decoded[next(iter(self._decoded))]  # the oldest entry: bounded memory
        self._decoded[key] = (stored, golden)

    def _department(self, topic: str) -> str:
        return self.names.parse_ingest(topic)[1]

    def _admit(self, department: str, value: bytes) -> tuple[Rejection | None, dict[str, Any] | None]:
        """Decode and check an event; the first reason to refuse it, or None."""
        if department not in self.sources:
            return Rejection("unknown_department", f"{department} is not a source of {self.library} in the catalog"), None
        schema, event = self.codec.decode(value)
        if schema.library != self.library:
            return Rejection("wrong_library", f"a {schema.library} event on a {self.library} topic"), None
        if event["source_department"] != department:
            return Rejection("spoofed_source", f"the event claims source {event['source_department']!r} "
                                               f"but was written to {department}'s topic"), None
        violations = self.validator.validate(self.library, event, schema.version)
        if violations:
            return Rejection("invalid", violations_detail(violations)), None
        return None, event

    def _dead_letter(self, rejection: Rejection, topic: str, partition: int, offset: int,
                     key: bytes, value: bytes, headers: Headers) -> Step:
        self.counts[f"rejected:{rejection.reason}"] += 1
        log.info("dead-lettered %s[%d]@%d: %s", topic, partition, offset, rejection.reason)
        dlq_headers = dead_letter_headers(list(headers), rejection, "gate", topic, partition, offset)
        return Step([Output(self.dlq_topic, key, value, dlq_headers)], status="rejected")

    def _shared(self, key: bytes, change: dict[str, Any], event: dict[str, Any], headers: Headers, now: float) -> Output:
        record = {
            "event_id": change["event_id"], "entity_id": change["entity_id"], "op": change["op"],
            "fields_set": change["fields_set"], "source_department": change["source_department"],
            "source_system": event["source_system"], "sequence": change["version"],
            "valid_from": change["valid_from"], "recorded_at": change["recorded_at"],
            "data": change["data"] or {},
        }
        value = self.codec.encode(self.library, record)
        # Late: a live change accepted longer after the source recorded it than the library's
        # SLA allows. Still delivered, marked; a snapshot (backfill) is never late.
        late = not change["backfill"] and now - change["recorded_at"].timestamp() > self.max_lateness
        out_headers = with_headers(
            headers, **{ACCEPTED_AT: str(int(now * 1000)), BACKFILL: "true" if change["backfill"] else "false",
                        LATE: "true" if late else "false",
                        SOURCE_SEQUENCE: str(change["sequence"]), SOURCE_DEPARTMENT: change["source_department"]})
        return Output(self.shared_topic, key, value, out_headers)

    def _conflict(self, key: bytes, conflict: dict[str, Any]) -> Output:
        plain = {name: time_to_plain(value) if name.endswith(("_valid_from", "_recorded_at")) else value
                 for name, value in conflict.items()}
        plain["library"] = self.library
        body = json.dumps(plain, ensure_ascii=False, default=str).encode()
        return Output(self.conflicts_topic, key, body, [("content-type", b"application/json")])
