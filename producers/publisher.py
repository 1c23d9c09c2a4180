"""The publishing SDK: one department publishes one library's changes to its own ingest topic.

    with Publisher(settings, "civil_affairs", "population") as publisher:
        result = publisher.publish({"citizen_id": "…", "sequence": 3, "marital_status": "married"})
        if not result.accepted:
            print(result.violations)

Every record is validated (schema and domain rules) before it is encoded; a bad record comes
back as a rejection naming field, value and rule, and is never sent. Accepted records are
sent with acks from all in-sync replicas and idempotent production, keyed by the entity's
pseudonym so that one entity's changes stay in order. A send that fails after the client's
retries is reported through ``delivery_failures`` and ``flush()`` — never dropped silently.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from govbus import clients
from govbus.producers.records import default_builder
from govbus.schemas.codec import Codec, default_codec
from govbus.schemas.framing import PUBLISHED_AT, cloudevent_headers, entity_key, heartbeat_headers, now_millis
from govbus.schemas.validation import Violation, Validator
from govbus.settings import Settings
from govbus.topics.names import TopicNames


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


class Publisher:
    """Validates, encodes and publishes change events of ``library`` for ``department``."""

    def __init__(self, settings: Settings, department: str, library: str, *,
                 source_system: str = "govbus-sdk", names: TopicNames | None = None,
                 codec: Codec | None = None, validator: Validator | None = None) -> None:
        self.department = department
        self.library = library
        self.source_system = source_system
        self.topic = (names or TopicNames(settings.topic_prefix)).ingest(library, department)
        self._codec = codec or default_codec()
        self._validator = (validator or Validator(self._codec.registry)).for_library(library)
        self._schema_version = self._codec.registry.latest(library).version
        self._secret = settings.key_secret.encode()
        self._builder = default_builder()
        self._producer = clients.producer(settings)
        self._lock = threading.Lock()
        self.report = DeliveryReport()

    # -- publishing ----------------------------------------------------------------------
    def publish(self, record: Mapping[str, Any]) -> PublishResult:
        """Publish one record: a flat source record (see ``producers.records``) or an event."""
        event = record if "fields_set" in record else self._builder.to_event(
            self.library, self.department, record, self.source_system)
        return self.publish_event(dict(event))

    def publish_event(self, event: dict[str, Any]) -> PublishResult:
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
        future = self._producer.send(self.topic, key=key, value=value, headers=headers)
        event_id = event["event_id"]
        future.add_callback(self._delivered).add_errback(self._failed, event_id)
        return PublishResult(event["entity_id"], event_id)

    def heartbeat(self) -> None:
        """Say "alive, nothing changed": a source with nothing to publish within its cadence
        (the catalog's ``sources.<department>.cadence``) sends this, so that the freshness
        processor does not report it silent. An empty value with heartbeat headers."""
        headers = heartbeat_headers(self.department, self.source_system)
        future = self._producer.send(self.topic, key=f"heartbeat:{self.department}".encode(), value=b"", headers=headers)
        future.add_errback(self._failed, "heartbeat")

    def _delivered(self, _metadata: Any) -> None:
        with self._lock:
            self.report.delivered += 1

    def _failed(self, event_id: str, error: Exception) -> None:
        with self._lock:
            self.report.failures.append((event_id, f"{type(error).__name__}: {error}"))

    # -- lifecycle -----------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> DeliveryReport:
        """Wait until every accepted record has been acknowledged (or has failed)."""
        self._producer.flush(timeout=timeout)
        return self.report

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

