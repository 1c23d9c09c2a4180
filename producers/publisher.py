"""The publishing SDK: one department publishes one library's changes to its own ingest topic.

    with Publisher(settings, "civil_affairs", "population") as publisher:
        result = publisher.publish({"citizen_id": "…", "sequence": 3, "marital_status": "married"})
        if not result.accepted:
            print(result.violations)

Every record is validated (schema and domain rules) before it is encoded; a bad record comes
back as a rejection naming field, value and rule, and is never sent. Accepted records are
sent with acks from all in-sync replicas and idempotent production, keyed by the entity's
pseudonym so that one entity's changes stay in order. A send that fails after the client's
retries is recorded in ``report`` (returned by ``flush()``) with its event id and the error —
never dropped silently.

Why librdkafka (confluent-kafka). A source's initial load is tens of millions of records
(``govbus publish``), and the publisher's own cost per record is what bounds it: kafka-python
batches, compresses and tracks every record in Python, librdkafka does that in C on its own
threads, leaving Python only the validation and the encoding (figures in the README's
performance section). The producer is ``clients.fast_producer``, whose ``murmur2_random``
partitioner puts a key in the same partition as the Java clients and kafka-python do: the
ingest, state and shared topics are co-partitioned by key, whichever client wrote them.

librdkafka answers through delivery callbacks, which run only inside ``poll()`` and
``flush()`` of the thread that calls them: every send polls without waiting, so the report
keeps up. When librdkafka's local queue is full (the broker slower than the source, or away
for a while), a send waits in ``poll()`` until there is room again instead of failing: a bulk
publish slows to the broker's pace, and the memory it holds stays bounded by the queue
(``queued_records`` records, at most ``QUEUE_MEGABYTES``), whatever the input's size.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from govbus import clients
from govbus.errors import GovbusError
from govbus.producers.records import default_builder
from govbus.schemas.codec import Codec, default_codec
from govbus.schemas.framing import (PUBLISHED_AT, Headers, cloudevent_headers, entity_key, heartbeat_headers,
                                    heartbeat_key, now_millis)
from govbus.schemas.validation import Violation, Validator
from govbus.settings import Settings
from govbus.topics.names import TopicNames

QUEUED_RECORDS = 100_000
"""Records librdkafka may hold unacknowledged, by default: enough to keep batches full at any
rate Python can validate, small enough that a stalled broker holds little memory."""
QUEUE_MEGABYTES = 64
"""The local queue's bound in bytes (librdkafka's default is 1 GiB)."""
ROOM_WAIT_SECONDS = 0.05
"""How long one wait for room in a full local queue lasts (serving delivery callbacks)."""
CONNECT_PATIENCE = 20.0
"""Seconds a refused ``connect`` is tried again (ACLs and topics applied a moment ago)."""
FATAL_SETTLE_SECONDS = 0.2
"""How long ``connect`` lets the client report an early fatal error before each check."""

log = logging.getLogger("govbus.publisher")

Answer = Callable[[KafkaError | KafkaException | None, Any], None]
"""A delivery callback: librdkafka's error (None when delivered) and the message."""


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What happened to one record: accepted (sent or being sent) or rejected with reasons."""

    entity_id: str | None
    event_id: str | None
    violations: tuple[Violation, ...] = ()

    @property
    def accepted(self) -> bool:
        return not self.violations


@dataclass
class DeliveryReport:
    """Counts of the broker's answers so far; failures keep the event id and the error."""

    delivered: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


class PublisherError(GovbusError):
    """The publisher cannot publish at all (see ``Publisher.connect``), said with its cause."""


class DeliveryTimeout(GovbusError, TimeoutError):
    """``flush(timeout)`` ran out with records still unacknowledged: they are neither
    delivered nor failed yet (librdkafka keeps trying until its message timeout)."""

    def __init__(self, pending: int, timeout: float) -> None:
        super().__init__(f"{pending:,} record(s) not yet acknowledged by the broker after {timeout:g} s")
        self.pending = pending


class Publisher:
    """Validates, encodes and publishes change events of ``library`` for ``department``.

    ``queued_records`` bounds the records held locally before a send waits for the broker."""

    def __init__(self, settings: Settings, department: str, library: str, *,
                 source_system: str = "govbus-sdk", names: TopicNames | None = None,
                 codec: Codec | None = None, validator: Validator | None = None,
                 queued_records: int = QUEUED_RECORDS) -> None:
        self.department = department
        self.library = library
        self.source_system = source_system
        self.topic = (names or TopicNames(settings.topic_prefix)).ingest(library, department)
        self._codec = codec or default_codec()
        self._validator = (validator or Validator(self._codec.registry)).for_library(library)
        self._schema_version = self._codec.registry.latest(library).version
        self._secret = settings.key_secret.encode()
        self._builder = default_builder()
        self._fatal: KafkaError | None = None  # the client's fatal error, once it has had one
        self._new_producer = partial(clients.fast_producer, settings, **{
            "queue.buffering.max.messages": queued_records,
            "queue.buffering.max.kbytes": QUEUE_MEGABYTES * 1024,
            "error_cb": self._client_error,
        })
        self._producer = self._new_producer()
        self._lock = threading.Lock()
        self._closed = False
        self.report = DeliveryReport()

    def connect(self, timeout: float = 30.0, patience: float = CONNECT_PATIENCE) -> None:
        """Reach the broker and check that this publisher may write its ingest topic, before
        the first record. Why: a source that starts learns of a wrong password, a missing ACL
        or a missing topic at once, with its cause, rather than from failed deliveries; and its
        first records do not wait for the connection and the login (about half a second on a
        local broker: the bench's offered load found it as its p99 of publish → accepted).
        A refusal is tried again for `patience` seconds: ACLs and topics made a moment ago
        (``govbus topics apply``) take a moment to reach every broker. Optional: ``publish``
        connects on its own."""
        deadline = time.monotonic() + patience
        while True:
            problem = self._refusal(timeout)
            if problem is None:
                return
            if time.monotonic() > deadline:
                raise PublisherError(problem)
            log.warning("%s; trying again for %.0f s", problem, max(0.0, deadline - time.monotonic()))
            time.sleep(0.5)

    def _refusal(self, timeout: float) -> str | None:
        """Why this publisher cannot write its ingest topic now, or None when it can. A client
        that failed for good before its first record (its idempotent producer id refused while
        the ACLs just applied were not yet in force) is replaced: nothing was sent with it."""
        try:
            metadata = self._producer.list_topics(self.topic, timeout)
        except KafkaException as error:
            return f"cannot reach the broker to publish {self.library} as {self.department}: {_described(error)}"
        found = metadata.topics.get(self.topic)
        problem = found.error if found is not None else None
        if found is None or (problem is not None and problem.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            return (f"no ingest topic {self.topic}: {self.department} is not a source of {self.library} in the "
                    "catalog, or `govbus topics apply` has not run")
        if problem is not None:
            return (f"{self.department} may not publish to {self.topic} ({problem.str()}): check the principal "
                    "and `govbus acl apply`")
        self._producer.poll(FATAL_SETTLE_SECONDS)  # its error callbacks: an early fatal one among them
        if self._fatal is not None:
            failure = f"the publisher's client failed before its first record: {_described(self._fatal)}"
            self._fatal, self._producer = None, self._new_producer()
            return failure
        return None

    # -- publishing ----------------------------------------------------------------------
    def publish(self, record: Mapping[str, Any]) -> PublishResult:
        """Publish one record: a flat source record (see ``producers.records``) or an event."""
        event = record if "fields_set" in record else self._builder.to_event(
            self.library, self.department, record, self.source_system)
        return self.publish_event(dict(event))

    def publish_event(self, event: dict[str, Any]) -> PublishResult:
        """Validate, encode and send one event; a rejected event is not sent."""
        violations = tuple(self._validator.validate(event))
        if event.get("source_department") != self.department:
            violations += (Violation("source_department", event.get("source_department"), "own_department",
                                     f"this publisher publishes for {self.department!r} only"),)
        if violations:
            return PublishResult(event.get("entity_id"), event.get("event_id"), violations)
        key = entity_key(self._secret, self.library, event["entity_id"])
        value = self._codec.encode(self.library, event, self._schema_version)
        headers = cloudevent_headers(event, self.library, self._schema_version, key)
        headers.append((PUBLISHED_AT, now_millis()))
        event_id = event["event_id"]
        self._send(key, value, headers, partial(self._answered, event_id, True))
        return PublishResult(event["entity_id"], event_id)

    def _client_error(self, error: KafkaError) -> None:
        """librdkafka's error callback (inside ``poll``): a fatal error is kept for ``connect``;
        the others (a broker away for a moment) librdkafka retries by itself."""
        if error.fatal():
            self._fatal = error
        else:
            log.debug("publisher client: %s", _described(error))

    def heartbeat(self) -> None:
        """Say "alive, nothing changed": a source with nothing to publish within its cadence
        (the catalog's ``sources.<department>.cadence``) sends this, so that the freshness
        processor does not report it silent. An empty value with heartbeat headers; it is not
        counted as delivered, but a failure is reported (as event id ``heartbeat``)."""
        headers = heartbeat_headers(self.department, self.source_system)
        self._send(heartbeat_key(self.department), b"", headers, partial(self._answered, "heartbeat", False))

    def _send(self, key: bytes, value: bytes, headers: Headers, answered: Answer) -> None:
        """Hand one message to librdkafka, waiting while its local queue is full (back-pressure),
        then serve the delivery callbacks that are due. A message librdkafka refuses outright
        (too large, a fatal producer error) is reported as failed, like a failed delivery."""
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, headers=headers, on_delivery=answered)
                break
            except BufferError:
                self._producer.poll(ROOM_WAIT_SECONDS)
            except KafkaException as refusal:
                answered(refusal, None)
                return
        self._producer.poll(0)

    def _answered(self, event_id: str, counted: bool, error: KafkaError | KafkaException | None, _message: Any) -> None:
        """librdkafka's delivery callback (inside ``poll``/``flush``): one acknowledgement or failure."""
        with self._lock:
            if error is not None:
                self.report.failures.append((event_id, _described(error)))
            elif counted:
                self.report.delivered += 1

    # -- lifecycle -----------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> DeliveryReport:
        """Wait until every accepted record has been acknowledged (or has failed); with a
        ``timeout`` (seconds) that runs out first, raise ``DeliveryTimeout``."""
        pending = self._producer.flush() if timeout is None else self._producer.flush(timeout)
        if pending:
            raise DeliveryTimeout(pending, timeout or 0.0)
        return self.report

    def close(self) -> None:
        """Wait for every answer, then let the producer go (a second close does nothing)."""
        if self._closed:
            return
        self._producer.flush()
        close = getattr(self._producer, "close", None)  # older confluent-kafka: freed with its last reference
        if close is not None:
            close()
        self._closed = True

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()


def _described(error: KafkaError | KafkaException) -> str:
    """An error as the report keeps it: librdkafka's name for it and its text."""
    if isinstance(error, KafkaException) and isinstance(error.args[0] if error.args else None, KafkaError):
        error = error.args[0]
    if isinstance(error, KafkaError):
        return f"{error.name()}: {error.str()}"
    return f"{type(error).__name__}: {error}"
