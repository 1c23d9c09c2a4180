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

It reads with librdkafka (confluent-kafka), as the processors do, because reading was the
subscriber's cost: at full rate the routed → applied hop was the bus's largest, and
kafka-python fetches and parses every record batch in Python, on the thread that applies.
Measured for the same topology on two cores: about 2,000 deliveries/s applied with
librdkafka, about 350 with kafka-python. librdkafka fetches ahead in its own threads (up to
8 MiB per partition, so a catch-up gets big batches); a poll takes what is already fetched
without waiting, and waits only when there is nothing, for the first message to come — so a
batch is as big as the backlog (up to ``max_records``) and a trickle is applied as it arrives.

Callbacks (``on_change(library, delivery)``) run after the batch is committed; after a crash
they may see a delivery again. Undecodable or refused deliveries go to `RejectedLog`.
Replay (``replay_from``): see `deliveries.Replay`. The watermark: see `progress`.

Life events (a death, a company's deregistration: the LIFE_EVENT header) come on the same
topics but are kept apart from the current view: a life event tells that something
happened, with a minimal payload; it is not a version of the record, and written into the
view it would blank the fields its payload lacks and move the row's version. The store logs
each in ``govbus_life_events`` (`Store.events`), in the batch's transaction, once per event
and subscription. ``on_event(library, event)`` is called after the commit for each event the
log did not have yet, with the event as `Store.events` reads it back: a redelivery or a
replay does not call it again, and a crash between the commit and the call loses the call,
not the event (reconcile from `Store.events`). ``on_change`` is for record deliveries only.
A failing callback is logged; it does not stop the subscriber.

Why one module of about 390 lines: the subscriber's read loop, positions and callbacks share one consumer and one store transaction.
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

from confluent_kafka import OFFSET_END, KafkaError, KafkaException, Message, TopicPartition

from govbus import clients
from govbus.consumers.access import SubscriptionWatch, capped
from govbus.consumers.deliveries import Received, Replay, parse_replay, received, to_delivery
from govbus.consumers.positions import ASK_TIMEOUT_S, commit_group, committed, listed, start_offsets
from govbus.consumers.progress import LibraryStatus, Partition, Progress
from govbus.consumers.rejected import RejectedLog, default_path
from govbus.consumers.stores import Store, open_store
from govbus.consumers.stores.lifeevents import as_event, is_life_event
from govbus.consumers.tables import Tables
from govbus.errors import GovbusError
from govbus.schemas.codec import Codec, CodecError, default_codec
from govbus.settings import Settings
from govbus.topics.catalog import load_catalog
from govbus.topics.names import TopicNames

log = logging.getLogger("govbus.subscriber")
OnChange = Callable[[str, dict[str, Any]], None]
OnEvent = Callable[[str, dict[str, Any]], None]  # (library, the life event as `Store.events` gives it)
Batch = dict[Partition, list[Received]]  # one library's messages of one poll, per partition, in order
_RECHECK_TOPICS_S = 10.0  # how often to look again for delivery topics that do not exist yet
_ENDS_EVERY_S = 1.0  # how often to ask the partitions' ends while reading
_SAY_AGAIN_S = 10.0  # the same consumer error is logged at most this often
_FETCH_WAIT_MS = 100  # an idle fetch's wait on the broker, which holds up the connection's other requests (ends)
_FETCH_BYTES = 8 * 1024 * 1024  # per partition and fetch (50 MB in all by default): fewer round trips on catch-up


class SubscriberError(GovbusError):
    """The subscriber cannot be set up or cannot go on; the message says why."""


class Subscriber:
    """Keeps a store current with one department's deliveries of some libraries; see the module."""

    def __init__(self, settings: Settings, department: str, libraries: Iterable[str], store: Store | str, *,
                 replay_from: str | int | datetime | Replay | None = None, on_change: OnChange | None = None,
                 reader_versions: Mapping[str, int] | None = None, codec: Codec | None = None,
                 names: TopicNames | None = None, rejected_path: Path | None = None, max_records: int = 2000,
                 on_event: OnEvent | None = None) -> None:
        self.codec = codec or default_codec()
        self.department, self.libraries = department, tuple(dict.fromkeys(libraries))
        self.reader_versions, self.on_change, self.max_records = dict(reader_versions or {}), on_change, max_records
        self.on_event = on_event
        self.replay = parse_replay(replay_from)
        schemas = self._check(settings, department)
        self.names = names or TopicNames(settings.topic_prefix)
        self.topics = {self.names.deliver(department, library): library for library in self.libraries}
        self._owns_store, self.consumer, self.access = isinstance(store, str), None, None
        self.store = open_store(store) if isinstance(store, str) else store
        self.rejected = RejectedLog(rejected_path or default_path(self.store, settings, department))
        self.progress = Progress(self.topics)
        self._status = {library: LibraryStatus(library, topic) for topic, library in self.topics.items()}
        self.tables = Tables(self.store, self.codec.registry)
        self.group = f"{settings.topic_prefix}{department}.subscriber"
        self._ends_at = self._topics_at = 0.0
        self._said: dict[str, float] = {}
        try:
            self._prepare_store(schemas)
            self.access = SubscriptionWatch(settings, self.names, self.group)
            self.consumer = clients.fast_consumer(settings, self.group, on_commit=committed, **{
                "max.partition.fetch.bytes": _FETCH_BYTES, "fetch.wait.max.ms": _FETCH_WAIT_MS})
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
        """Add every partition of the delivery topics that exist to the assignment, each new one
        from its start; what cannot be started now is tried again with the topics not there yet."""
        self._topics_at = time.monotonic()
        new = [partition for partition in self._partitions() if partition not in self.progress.positions]
        if not new:
            return
        try:
            starts = start_offsets(self.consumer, new, self.replay, self.store.positions())
        except KafkaException as error:
            log.warning("cannot find where to start reading %s (%s); trying again in %.0f s",
                        ", ".join(sorted({tp.topic for tp in new})), error.args[0], _RECHECK_TOPICS_S)
            for topic in {tp.topic for tp in new}:
                self._status[self.topics[topic]].waiting = True
            return
        self.consumer.incremental_assign([TopicPartition(tp.topic, tp.partition, starts[tp]) for tp in new])
        for partition in new:
            self.progress.start(partition, starts[partition])
        self._refresh_ends(force=True)

    def _partitions(self) -> list[Partition]:
        """Every partition of the delivery topics that exist; the others' libraries are waiting."""
        found: list[Partition] = []
        for topic, library in self.topics.items():
            partitions = self._partitions_of(topic)
            self._status[library].waiting = not partitions
            found += [Partition(topic, partition) for partition in partitions]
        return found

    def _partitions_of(self, topic: str) -> list[int]:
        """The topic's partitions, none while it does not exist or may not be seen."""
        try:
            metadata = self.consumer.list_topics(topic, timeout=ASK_TIMEOUT_S).topics.get(topic)
        except KafkaException as error:
            log.warning("cannot see %s (%s); is a subscription approved?", topic, error.args[0])
            return []
        if metadata is None:
            return []
        if metadata.error is not None:
            if metadata.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                log.warning("cannot see %s (%s); is a subscription approved?", topic, metadata.error)
            return []
        return sorted(metadata.partitions)

    # -- reading and applying -------------------------------------------------------
    def poll_once(self, timeout_ms: int = 1000) -> int:
        """Read what arrived (waiting up to `timeout_ms`), apply it; the number of messages read."""
        if any(s.waiting for s in self._status.values()) and time.monotonic() - self._topics_at > _RECHECK_TOPICS_S:
            self._assign()
        self.access.poll()
        if not self.progress.positions:
            time.sleep(timeout_ms / 1000)
            return 0
        messages = self._consume(timeout_ms / 1000)
        by_library = self._by_library(messages)
        for library, batch in by_library.items():
            self._apply(library, batch)
        self._past_markers()
        self._refresh_ends()
        self._record_watermarks(skip=set(by_library))
        return len(messages)

    def _consume(self, timeout: float) -> list[Received]:
        """Up to `max_records` messages: what librdkafka has fetched, without waiting; when it has
        nothing, the first to arrive within `timeout` and what has come with it."""
        messages = self.consumer.consume(num_messages=self.max_records, timeout=0)
        if not messages:
            messages = self.consumer.consume(num_messages=1, timeout=timeout)
            if messages and self.max_records > 1:
                messages += self.consumer.consume(num_messages=self.max_records - 1, timeout=0)
        return [received(message) for message in messages if self._usable(message)]

    def _usable(self, message: Message) -> bool:
        """A message, not an error; a fatal error stops the subscriber, any other is logged."""
        error = message.error()
        if error is None:
            return True
        if error.fatal():
            raise SubscriberError(f"the consumer cannot go on: {error}")
        where = f"{message.topic()}[{message.partition()}]" if message.topic() else "the delivery topics"
        self._say(f"reading {where} failed: {error}")
        return False

    def _say(self, warning: str) -> None:
        """Log a warning, the same one at most every `_SAY_AGAIN_S` (a broker away repeats it each poll)."""
        now = time.monotonic()
        if now - self._said.get(warning, -_SAY_AGAIN_S) >= _SAY_AGAIN_S:
            self._said[warning] = now
            log.warning("%s", warning)

    def _by_library(self, messages: list[Received]) -> dict[str, Batch]:
        """The messages of one poll per library and partition, each partition's in order."""
        grouped: dict[tuple[str, int], list[Received]] = {}
        for message in messages:
            grouped.setdefault((message.topic, message.partition), []).append(message)
        by_library: dict[str, Batch] = {}
        for (topic, partition), batch in grouped.items():
            by_library.setdefault(self.topics[topic], {})[Partition(topic, partition)] = batch
        return by_library

    def _apply(self, library: str, batch: Batch) -> None:
        status, before = self._status[library], {tp: self.progress.positions[tp] for tp in batch}
        converted = [(message, self._convert(library, message)) for messages in batch.values() for message in messages]
        pairs = [(message, delivery) for message, delivery in converted if delivery is not None]
        positions = {tp: messages[-1].offset + 1 for tp, messages in batch.items()}
        for tp, messages in batch.items():
            self.progress.applied(tp, positions[tp], messages[-1].routed_at)
        as_of = self._watermark(library)
        self.rejected.sync()
        try:
            result = self.tables.apply(library, pairs, positions, as_of, lambda m, why: self._reject(library, m, why, True))
        except BaseException:
            for tp, offset in before.items():  # not applied: read it again next time
                self._seek(tp, offset)
                self.progress.start(tp, offset)
            raise
        status.upserted, status.deleted = status.upserted + result.upserted, status.deleted + result.deleted
        status.ignored, status.events = status.ignored + result.ignored, status.events + result.events
        status.as_of = max(filter(None, (status.as_of, as_of)), default=None)
        commit_group(self.consumer, self.group, positions, sync=False)
        self._call_back(library, [delivery for _, delivery in pairs], result.new_events)

    def _call_back(self, library: str, deliveries: list[dict[str, Any]],
                   new_events: frozenset[tuple[str, str]]) -> None:
        """``on_change`` for each record delivery, ``on_event`` for each life event just logged
        (once, should the batch hold it twice); the batch is committed by now."""
        if self.on_change is None and self.on_event is None:
            return
        announced: set[tuple[str, str]] = set()
        for delivery in deliveries:
            if not is_life_event(delivery):
                self._call(self.on_change, library, delivery, "on_change")
                continue
            key = (delivery.get("subscription") or "", delivery.get("event_id"))
            if key in new_events and key not in announced:  # not logged before, nor refused by the store
                announced.add(key)
                self._call(self.on_event, library, as_event(library, delivery), "on_event")

    @staticmethod
    def _call(callback: OnChange | OnEvent | None, library: str, argument: dict[str, Any], name: str) -> None:
        if callback is None:
            return
        try:
            callback(library, argument)
        except Exception:  # noqa: BLE001 - the data is applied; a callback's bug must not stop it
            log.exception("%s failed for %s %s", name, library, argument["entity_id"])

    def _seek(self, partition: Partition, offset: int) -> None:
        try:
            self.consumer.seek(TopicPartition(partition.topic, partition.partition, offset))
        except KafkaException as error:  # the failure that made us seek is the one to raise
            log.warning("cannot seek %s[%d] back to %d: %s", partition.topic, partition.partition, offset, error)

    def _convert(self, library: str, message: Received) -> dict[str, Any] | None:
        """The store delivery for a message, or None once it is recorded as rejected."""
        try:
            if message.value is None:
                raise CodecError("an empty (tombstone) value, which is no delivery")
            schema, record = self.codec.decode(message.value, self.reader_versions.get(library))
            if schema.library != library:
                raise CodecError(f"a {schema.library} record in the {library} delivery topic")
            return to_delivery(record, message.headers, message.time)
        except (CodecError, KeyError, TypeError, ValueError) as error:
            self._reject(library, message, f"{type(error).__name__}: {error}")
            return None

    def _reject(self, library: str, message: Received, reason: str, sync: bool = False) -> None:
        self.rejected.add(message, library, reason)
        self._status[library].rejected += 1
        if sync:  # before the positions past it are saved
            self.rejected.sync()

    def _past_markers(self) -> None:
        """Move past what holds no delivery: the router writes in transactions, and each
        transaction ends with a marker that takes an offset but is never returned. librdkafka
        moves its position past a marker once the messages before it were returned. Nothing to
        store: resuming before a marker reads past it again."""
        asked = [TopicPartition(tp.topic, tp.partition) for tp in self.progress.positions]
        try:
            found = self.consumer.position(asked)
        except KafkaException:
            return
        for each in found:
            partition = Partition(each.topic, each.partition)
            if each.error is None and each.offset > self.progress.positions[partition]:
                self.progress.applied(partition, each.offset, None)

    # -- ends, lag, watermarks, the consumer group ----------------------------------
    def _refresh_ends(self, force: bool = False) -> None:
        if not self.progress.positions or (not force and time.monotonic() - self._ends_at < _ENDS_EVERY_S):
            return
        self._ends_at, asked_at = time.monotonic(), datetime.now(timezone.utc)
        try:
            ends = listed(self.consumer, self.progress.positions, OFFSET_END)
        except KafkaException as error:
            self._say(f"cannot read the delivery topics' ends: {error.args[0]}")
            return
        self.progress.saw_ends(ends, asked_at)

    def _watermark(self, library: str) -> datetime | None:
        """How far the library's view is complete, never past the end of the department's
        access to it (see `access`): after an expiry or a revocation it stops there."""
        ended = self.access.ended_at(self.department, library, datetime.now(timezone.utc))
        self._status[library].ended_at = ended
        return capped(self.progress.complete_through(library), ended)

    def _record_watermarks(self, skip: set[str] = frozenset(), step: timedelta = timedelta(seconds=1)) -> None:
        """Move the stored watermark of libraries with nothing new but caught up (idle topics)."""
        for library, status in self._status.items():
            as_of = self._watermark(library)
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
                consumer, self.consumer = self.consumer, None
                commit_group(consumer, self.group, self.progress.positions, sync=True)
                consumer.close()
        finally:
            if self.access is not None:
                self.access.close()
            self.rejected.close()
            if self._owns_store:
                self.store.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
