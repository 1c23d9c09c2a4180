"""The subscriber SDK: a department's own current view of what it is entitled to.

    with Subscriber(settings, "health", ["population"], "sqlite:///health.db") as subscriber:
        subscriber.run(stop_event)          # or poll_once() / catch_up() in your own loop

It reads ``deliver.<department>.<library>`` (every partition, assigned, not a group member),
decodes each delivery with the writer's schema — or projects it into the version a library
is pinned to (``reader_versions``), so code built against an older schema keeps working —
and applies one poll's deliveries per library in one store transaction together with the
positions reached. The store is the source of truth for where to resume: a crash between
two batches loses nothing and applies nothing twice (versions make a re-read harmless).
After each batch the positions are also committed to the consumer group
``<prefix><department>.subscriber``, only so that operators' lag tools see the subscriber.

Callbacks (``on_change(library, delivery)``) run after the batch is committed; after a crash
they may see a delivery again. Undecodable or refused deliveries go to `RejectedLog`.
Replay (``replay_from``): see `deliveries.Replay`. The watermark: see `progress`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from govbus import clients
from govbus.consumers.deliveries import Replay, message_time, parse_replay, routed_at, to_delivery
from govbus.consumers.positions import commit_group, start_offsets
from govbus.consumers.progress import LibraryStatus, Progress
from govbus.consumers.rejected import RejectedLog, default_path
from govbus.consumers.stores import Store, open_store
from govbus.consumers.tables import Tables
from govbus.errors import GovbusError
from govbus.schemas.codec import Codec, CodecError, default_codec
from govbus.schemas.framing import header_map
from govbus.settings import Settings
from govbus.topics.catalog import load_catalog
from govbus.topics.names import TopicNames

log = logging.getLogger("govbus.subscriber")
OnChange = Callable[[str, dict[str, Any]], None]
_RECHECK_TOPICS_S = 10.0


class SubscriberError(GovbusError):
    """The subscriber cannot be set up or cannot go on; the message says why."""


class Subscriber:
    """Keeps a store current with one department's deliveries of some libraries; see the module."""

    def __init__(self, settings: Settings, department: str, libraries: Iterable[str], store: Store | str, *,
                 replay_from: str | int | datetime | Replay | None = None, on_change: OnChange | None = None,
                 reader_versions: Mapping[str, int] | None = None, codec: Codec | None = None,
                 names: TopicNames | None = None, rejected_path: Path | None = None, max_records: int = 2000) -> None:
        self.codec = codec or default_codec()
        self.department, self.libraries = department, tuple(dict.fromkeys(libraries))
        self.reader_versions, self.on_change, self.max_records = dict(reader_versions or {}), on_change, max_records
        self.replay = parse_replay(replay_from)
        schemas = self._check(settings, department)
        self.names = names or TopicNames(settings.topic_prefix)
        self.topics = {self.names.deliver(department, library): library for library in self.libraries}
        self._owns_store, self.consumer = isinstance(store, str), None
        self.store = open_store(store) if isinstance(store, str) else store
        self.rejected = RejectedLog(rejected_path or default_path(self.store, settings, department))
        self.progress = Progress(self.topics)
        self._status = {library: LibraryStatus(library, topic) for topic, library in self.topics.items()}
        self.tables = Tables(self.store, self.codec.registry)
        self.group = f"{settings.topic_prefix}{department}.subscriber"
        self._ends_at = self._topics_at = 0.0
        try:
            self._prepare_store(schemas)
            self.consumer = clients.consumer(settings, group_id=self.group, enable_auto_commit=False,
                                             max_partition_fetch_bytes=8 * 1024 * 1024)  # fewer round trips on catch-up
            self._assign()
        except BaseException:
            self.close()
            raise

    def _prepare_store(self, schemas: dict[str, Any]) -> None:
        """Tables with typed columns; emptied for a replay from the beginning."""
        for library, schema in schemas.items():
            self.tables.prepare(library, schema)
        if self.replay is not None and self.replay.kind == "beginning":
            self.store.reset()
        for library, status in self._status.items():
            status.as_of = self.store.watermark(library)

    def _check(self, settings: Settings, department: str) -> dict[str, Any]:
        """The schema each library's table is made from; clear errors for unknown names."""
        load_catalog(settings.catalog_dir).require_department(department)
        known = self.codec.registry.libraries()
        if not self.libraries or any(library not in known for library in self.libraries):
            raise SubscriberError(f"subscribe to one or more of {', '.join(known)}; got {', '.join(self.libraries) or 'none'}")
        try:
            return {library: self.codec.registry.get(library, self.reader_versions.get(library))
                    for library in self.libraries}
        except KeyError as error:
            raise SubscriberError(f"cannot pin a reader version: {error.args[0]}") from None

    # -- partitions and where each starts ---------------------------------------------
    def _assign(self) -> None:
        """Assign every partition of the delivery topics that exist; seek new ones to their start."""
        self._topics_at = time.monotonic()
        found: list[TopicPartition] = []
        for topic, library in self.topics.items():
            try:
                partitions = self.consumer.partitions_for_topic(topic)
            except KafkaError as error:
                log.warning("cannot see %s (%s); is a subscription approved?", topic, error)
                partitions = None
            self._status[library].waiting = not partitions
            found += [TopicPartition(topic, partition) for partition in sorted(partitions or ())]
        new = [tp for tp in found if tp not in self.progress.positions]
        if not new:
            return
        self.consumer.assign(found)
        starts = {**self.progress.positions, **start_offsets(self.consumer, new, self.replay, self.store.positions())}
        for partition, offset in starts.items():
            self.consumer.seek(partition, offset)
        for partition in new:
            self.progress.start(partition, starts[partition])
        self._refresh_ends(force=True)

    # -- reading and applying -------------------------------------------------------
    def poll_once(self, timeout_ms: int = 1000) -> int:
        """Read what arrived (waiting up to `timeout_ms`), apply it; the number of messages read."""
        if any(s.waiting for s in self._status.values()) and time.monotonic() - self._topics_at > _RECHECK_TOPICS_S:
            self._assign()
        if not self.progress.positions:
            time.sleep(timeout_ms / 1000)
            return 0
        batches = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.max_records)
        by_library: dict[str, list[tuple[TopicPartition, list[Any]]]] = {}
        for partition, messages in batches.items():
            by_library.setdefault(self.topics[partition.topic], []).append((partition, messages))
        for library, parts in by_library.items():
            self._apply(library, parts)
        self._past_markers()
        self._refresh_ends()
        self._record_watermarks(skip=set(by_library))
        return sum(len(messages) for messages in batches.values())

    def _apply(self, library: str, parts: list[tuple[TopicPartition, list[Any]]]) -> None:
        status, before = self._status[library], {tp: self.progress.positions[tp] for tp, _ in parts}
        converted = [(message, self._convert(library, message)) for _, messages in parts for message in messages]
        pairs = [(message, delivery) for message, delivery in converted if delivery is not None]
        positions = {(tp.topic, tp.partition): messages[-1].offset + 1 for tp, messages in parts}
        for tp, messages in parts:
            self.progress.applied(tp, messages[-1].offset + 1, routed_at(messages[-1]))
        as_of = self.progress.complete_through(library)
        self.rejected.sync()
        try:
            result = self.tables.apply(library, pairs, positions, as_of, lambda m, why: self._reject(library, m, why, True))
        except BaseException:
            for tp, offset in before.items():  # not applied: read it again next time
                self.consumer.seek(tp, offset)
                self.progress.start(tp, offset)
            raise
        status.upserted, status.deleted = status.upserted + result.upserted, status.deleted + result.deleted
        status.ignored += result.ignored
        status.as_of = max(filter(None, (status.as_of, as_of)), default=None)
        commit_group(self.consumer, self.group, {TopicPartition(*key): offset for key, offset in positions.items()}, sync=False)
        if self.on_change is not None:
            for _, delivery in pairs:
                try:
                    self.on_change(library, delivery)
                except Exception:  # noqa: BLE001 - the data is applied; a callback's bug must not stop it
                    log.exception("on_change failed for %s %s", library, delivery["entity_id"])

    def _convert(self, library: str, message: Any) -> dict[str, Any] | None:
        """The store delivery for a message, or None once it is recorded as rejected."""
        try:
            if message.value is None:
                raise CodecError("an empty (tombstone) value, which is no delivery")
            schema, record = self.codec.decode(message.value, self.reader_versions.get(library))
            if schema.library != library:
                raise CodecError(f"a {schema.library} record in the {library} delivery topic")
            return to_delivery(record, header_map(message.headers), message_time(message))
        except (CodecError, KeyError, TypeError, ValueError) as error:
            self._reject(library, message, f"{type(error).__name__}: {error}")
            return None

    def _reject(self, library: str, message: Any, reason: str, sync: bool = False) -> None:
        self.rejected.add(message, library, reason)
        self._status[library].rejected += 1
        if sync:  # before the positions past it are saved
            self.rejected.sync()

    def _past_markers(self) -> None:
        """Move past what holds no delivery: the router writes in transactions, and each
        transaction ends with a marker that takes an offset but is never returned. Nothing to
        store: resuming before a marker reads past it again."""
        for partition, applied in list(self.progress.positions.items()):
            try:
                position = self.consumer.position(partition)
            except (KafkaError, AssertionError):
                continue
            if position is not None and position > applied:
                self.progress.applied(partition, position, None)

    # -- ends, lag, watermarks, the consumer group ----------------------------------
    def _refresh_ends(self, force: bool = False) -> None:
        if not self.progress.positions or (not force and time.monotonic() - self._ends_at < 1.0):
            return
        self._ends_at, asked_at = time.monotonic(), datetime.now(timezone.utc)
        try:
            self.progress.saw_ends(self.consumer.end_offsets(list(self.progress.positions)), asked_at)
        except KafkaError as error:
            log.warning("cannot read the delivery topics' ends: %s", error)

    def _record_watermarks(self, skip: set[str] = frozenset(), step: timedelta = timedelta(seconds=1)) -> None:
        """Move the stored watermark of libraries with nothing new but caught up (idle topics)."""
        for library, status in self._status.items():
            as_of = self.progress.complete_through(library)
            if library not in skip and as_of and (status.as_of is None or as_of - status.as_of >= step):
                self.store.apply(library, [], None, as_of)
                status.as_of = as_of

    # -- running ------------------------------------------------------------------------
    def catch_up(self, timeout: float | None = None) -> int:
        """Apply everything now in the delivery topics, then return how many messages were read."""
        self._refresh_ends(force=True)
        targets, deadline, read = dict(self.progress.ends), time.monotonic() + (timeout or 1e12), 0
        while any(self.progress.positions[tp] < end for tp, end in targets.items()):
            if time.monotonic() > deadline:
                raise SubscriberError(f"not caught up after {timeout} s; lag {self.lag()}")
            read += self.poll_once(timeout_ms=500)
        self._refresh_ends(force=True)
        self._record_watermarks(step=timedelta(0))
        return read

    def run(self, stop: threading.Event, timeout_ms: int = 500) -> None:
        """Apply deliveries until `stop` is set; returns between two batches, all committed."""
        while not stop.is_set():
            self.poll_once(timeout_ms)

    def status(self) -> list[LibraryStatus]:
        return [replace(s, lag=self.progress.lag(s.library)) for s in self._status.values()]

    def lag(self) -> dict[str, int | None]:
        return {library: self.progress.lag(library) for library in self.libraries}

    def close(self) -> None:
        """Commit the positions to the consumer group and let go of everything."""
        try:
            if self.consumer is not None:
                if self.progress.positions:
                    commit_group(self.consumer, self.group, self.progress.positions, sync=True)
                self.consumer.close()
        finally:
            self.rejected.close()
            if self._owns_store:
                self.store.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
