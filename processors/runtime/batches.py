"""The processors' hot path: read a batch, decide it, write its outputs and its input offsets in
one Kafka transaction.

Why batches: the gate's and the router's own logic costs a few hundred microseconds per event,
but handled one at a time, waiting on each send, the bus moved 145 events/s (README,
performance). Here a batch is everything the consumer has (up to ``MAX_BATCH`` events or
``BATCH_WAIT`` seconds), every output is handed to librdkafka without waiting, and the batch
ends in one commit.

Why a transaction (the ``Checkpoint``): it is the one answer to "what is durable before an
input offset moves". The outputs of a batch (the gate's golden records and shared changes, the
router's deliveries, sharing records and chain heads) and the offsets of the events that made
them are committed together or not at all. A worker killed mid-batch leaves an open
transaction that the broker aborts; its successor restores state written by committed batches
only (every reader of the bus reads committed data) and handles the batch again from the
committed offset. So the state write can never be missing behind its output, the audit chain's
head never disagrees with the records written, and nothing is applied twice.

One ``BatchLoop`` per processor runs in a thread of the worker (``host``, or faust when the
worker also runs the freshness agents); librdkafka's own threads fetch, send and heartbeat.
The loop also keeps ``govbus_consumer_lag`` current for the partitions it holds.

Why one module of about 400 lines: the one home of what is durable before an offset moves: the loop, its transaction and its rewind after an abort must be read together.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from govbus import clients
from govbus.processors.runtime import metrics
from govbus.processors.runtime.output import Output
from govbus.settings import Settings

log = logging.getLogger("govbus.processors.runtime.batches")

RECENT_BATCHES = 1_000  # batches whose phase times /health summarises (BatchTimings)
MAX_BATCH = 2_000  # events per transaction: large enough to amortise its commit, small enough to stay fresh
BATCH_WAIT = 0.05  # seconds the consumer waits to fill a batch before handling what it has
IDLE_EVERY = 1.0  # seconds between a processor's idle work (the router's owed backfills)
_ABORT_FLUSH_S = 10.0  # how long an abort lets the batch's sends finish before it ends the transaction
TRANSACTION_TIMEOUT_MS = 20_000  # a killed worker's open transaction is aborted by the broker after this
MAX_POLL_INTERVAL_MS = 900_000  # a long backfill between two polls must not cost the worker its partitions
LAG_EVERY = 5.0  # seconds between two updates of the consumer-lag gauge
# How long the broker may hold a fetch that finds nothing new. Data ends the wait at once, so
# this adds no latency; a short wait makes an idle consumer ask again and again, and every
# fetch lists all its partitions (librdkafka has no incremental fetch sessions): at 20 ms the
# gate's and the router's idle fetches took about 0.4 of a core on the broker (bench, 50/s).
FETCH_WAIT_MS = 500
# A batch's transaction starts while the broker still writes the previous one's commit markers;
# the broker answers CONCURRENT_TRANSACTIONS and the client tries again after this backoff.
# librdkafka's default (100 ms) put at least that between two batches (the Java client uses
# 20 ms for this since KAFKA-5477; confluent-kafka-python issue #967).
RETRY_BACKOFF_MS = 5
RETRY_BACKOFF_MAX_MS = 100
# A batch's outputs wait in librdkafka until its commit, whose flush sends them at once (flush
# overrides linger): a few large produce requests per batch rather than one every 5 ms. Bench,
# offered 1,000 events/s, same machine: CPU per 1,000 events with the broker 1.79 -> 1.63 s,
# freshness p50 0.51 -> 0.29 s (linger 5 ms -> 200 ms).
TRANSACTION_LINGER_MS = 200

# librdkafka does not always honour the timeout of a transactional call: after a broker that
# was the transaction coordinator died, a gate's commit_transaction(60) was seen blocked for
# good (the cluster test, CI; librdkafka#5456, and Materialize's finding that the commit's
# timeout is not capped). Such a call runs beside the loop, which waits this long and then
# replaces the producer (the same transactional id fences the old one; see `_replace_producer`).
# The codes of a producer fenced by another with its transactional id (see `_recover_fenced`).
FENCED = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})
FENCED_REPLACEMENTS = 3
FENCED_WINDOW_S = 600.0
STUCK_AFTER = 75.0  # the calls are given 60 s; past this, the call is not coming back

Partition = tuple[str, int]
UNASSIGNED = -1  # librdkafka's RD_KAFKA_PARTITION_UA: the configured partitioner chooses


class ProducerStuck(RuntimeError):
    """A transactional call did not return within ``STUCK_AFTER`` seconds."""


def bounded(what: str, call: Callable[[], Any], seconds: float) -> Any:
    """`call()`'s result or error, or ``ProducerStuck`` when it has not returned after
    `seconds` (it is then left to return, or not, in a daemon thread of its own)."""
    done, outcome = threading.Event(), {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            outcome["error"] = error
        finally:
            done.set()

    threading.Thread(target=run, name=what, daemon=True).start()
    if not done.wait(seconds):
        raise ProducerStuck(f"{what} did not return within {seconds:.0f} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class Checkpoint:
    """One batch's transaction: its outputs and the input offsets they answer.

    ``commit`` in order: (1) hand the consumed offsets to the transaction, (2) commit it, which
    flushes every output first and fails if one was not stored. Nothing is durable before (2),
    and everything is after it."""

    def __init__(self, loop: BatchLoop) -> None:
        self.loop = loop
        self.offsets: dict[Partition, int] = {}  # the next offset to read, per input partition
        self.sent = 0
        self.handled = time.monotonic()  # when the batch was handled and its commit began

    def send(self, output: Output, partition: int | None = None) -> None:
        self.loop.produce(output, partition)
        self.sent += 1

    def advance(self, topic: str, partition: int, offset: int) -> None:
        """The event at `offset` is handled; refuses to move an input backwards."""
        key = (topic, partition)
        if offset + 1 < self.offsets.get(key, 0):
            raise ValueError(f"{topic}[{partition}]: offset {offset} is before one already handled")
        self.offsets[key] = offset + 1


class BatchProcessor(Protocol):
    """What a processor gives the loop: its inputs, what to load or forget on a rebalance, and
    what to do with a batch."""

    name: str
    topics: list[str]

    def assigned(self, partitions: list[Partition]) -> None: ...

    def revoked(self, partitions: list[Partition]) -> None: ...

    def before(self, messages: list[Message], loop: BatchLoop) -> None: ...

    def handle(self, messages: list[Message], checkpoint: Checkpoint) -> None: ...

    def idle(self, loop: BatchLoop) -> None: ...

    def stats(self) -> dict[str, Any]: ...


def instance_id(settings: Settings, group: str, processor: str) -> str:
    """A transactional id that the same worker gets again when it restarts (host and port),
    so that its restart aborts what its previous run left open at once."""
    configured = os.environ.get("GOVBUS_PROCESSOR_INSTANCE") or f"{socket.gethostname()}-{settings.processor_port}"
    return f"{group}-{processor}-{configured}"


class BatchLoop:
    """Consume, decide, produce and commit one batch after another for one processor."""

    def __init__(self, settings: Settings, group: str, processor: BatchProcessor) -> None:
        self.settings = settings
        self.group = group
        self.processor = processor
        self.assignment: set[Partition] = set()
        self.ready = threading.Event()  # set once the first assignment is loaded
        self.failed: BaseException | None = None
        self.batches = 0
        self.events = 0
        self.lag: int | None = None  # messages not yet read in the partitions held, when last measured
        self.timings = BatchTimings(processor.name)
        self._stop = threading.Event()
        self._fenced_at: list[float] = []  # when the producer was last replaced after being fenced
        self._thread: threading.Thread | None = None
        self._consumer: Any = None
        self._producer: Any = None

    # The loop

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"batches-{self.processor.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in hand, commit it, leave the group."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._open()
            next_idle = next_lag = time.monotonic() + IDLE_EVERY
            while not self._stop.is_set():
                messages = self._consumer.consume(MAX_BATCH, BATCH_WAIT)
                messages = [message for message in messages if self._usable(message)]
                if messages:
                    self._batch(messages)
                if time.monotonic() >= next_idle:
                    self._retrying("idle work", lambda: self.processor.idle(self))
                    next_idle = time.monotonic() + IDLE_EVERY
                if time.monotonic() >= next_lag:
                    self._retrying("measuring the lag", self._measure_lag)
                    next_lag = time.monotonic() + LAG_EVERY
        except BaseException as error:  # noqa: BLE001 - a dead loop must not look alive
            self.failed = error
            log.exception("the %s loop failed: this worker stops; its partitions move to another, and the "
                          "batch in hand is handled again from the last commit", self.processor.name)
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            self._close()

    def _open(self) -> None:
        self._producer = self._transactional_producer()
        session_ms = int(self.settings.processor_session_timeout * 1000)
        self._consumer = clients.fast_consumer(
            self.settings, self.group, **{"session.timeout.ms": session_ms,
                                          "heartbeat.interval.ms": min(3000, session_ms // 3),
                                          "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
                                          "fetch.wait.max.ms": FETCH_WAIT_MS, "queued.min.messages": 20_000})
        self._consumer.subscribe(list(self.processor.topics), on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_revoke)

    def _transactional_producer(self, patience: float = 60.0) -> Any:
        """A producer with its transactions initialised. Not yet authorised is waited for a
        while: ACLs just applied (``govbus acl apply``) take a moment to reach every broker."""
        deadline = time.monotonic() + patience
        while True:
            producer = clients.fast_producer(
                self.settings, **{"transactional.id": instance_id(self.settings, self.group, self.processor.name),
                                  "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
                                  "retry.backoff.ms": RETRY_BACKOFF_MS, "retry.backoff.max.ms": RETRY_BACKOFF_MAX_MS,
                                  "linger.ms": TRANSACTION_LINGER_MS})
            try:
                producer.init_transactions(60)
                return producer
            except KafkaException as error:
                code = error.args[0].code()
                if code != KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED or time.monotonic() > deadline:
                    raise
                log.warning("%s: not (yet) allowed to write transactions as %s; the processors' principal needs "
                            "`govbus acl apply`; trying again", self.processor.name, self.group)
                time.sleep(1.0)

    def _close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()  # leaves the group: the partitions move at once
            except Exception:  # noqa: BLE001 - closing a broken consumer
                log.debug("closing the consumer failed", exc_info=True)

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.fatal():
            raise KafkaException(error)
        log.warning("%s: reading %s[%s] failed: %s", self.processor.name, message.topic(), message.partition(), error)
        return False

    # A batch

    def _retrying(self, what: str, action: Callable[[], None]) -> bool:
        """Run `action`; a failure that is not fatal (a broker away, a read that timed out) is
        said and left for the next try. True when it succeeded."""
        try:
            action()
            return True
        except KafkaException as error:
            if error.args[0].fatal() and not self._recover_fenced(error):
                raise
            failure: BaseException = error
        except Exception as error:  # noqa: BLE001 - said, and tried again
            failure = error
        log.warning("%s: %s failed (%s); trying again", self.processor.name, what, failure)
        return False

    def _recover_fenced(self, error: KafkaException) -> bool:
        """After a fatal "fenced" error, a new producer under the same transactional id, a few
        times at most: seen when a broker that coordinated the transactions died mid-commit
        (the cluster test) with no other instance alive. A real newer instance would fence
        this one again at once, so after ``FENCED_REPLACEMENTS`` within ``FENCED_WINDOW_S`` the
        error stands and the worker stops, as before."""
        if error.args[0].code() not in FENCED:
            return False
        now = time.monotonic()
        self._fenced_at = [moment for moment in self._fenced_at if now - moment < FENCED_WINDOW_S] + [now]
        if len(self._fenced_at) > FENCED_REPLACEMENTS:
            return False
        log.warning("%s: fenced (%s); a new producer under the same transactional id, and the batch is read again",
                    self.processor.name, error)
        self._replace_producer()
        return True

    def _batch(self, messages: list[Message]) -> None:
        if not self._retrying("preparing a batch", lambda: self.processor.before(messages, self)):
            time.sleep(1.0)
            self._rewind()  # the batch is read again, and prepared again
            return
        started = time.monotonic()
        try:
            with self.checkpoint() as checkpoint:
                self.processor.handle(messages, checkpoint)
                for message in messages:
                    checkpoint.advance(message.topic(), message.partition(), message.offset())
                checkpoint.handled = time.monotonic()
        except (KafkaException, ProducerStuck) as error:
            if isinstance(error, KafkaException) and error.args[0].fatal():
                if not self._recover_fenced(error):
                    raise
            elif isinstance(error, KafkaException) and not error.args[0].txn_requires_abort() \
                    and not error.args[0].retriable():
                raise
            log.warning("%s: a batch's transaction failed (%s); reading it again from the last commit",
                        self.processor.name, error)
            metrics.aborted.labels(self.processor.name).inc()
            self._rewind()
            return
        metrics.batches.labels(self.processor.name).inc()
        self.batches += 1
        self.events += len(messages)
        self.timings.add(checkpoint.handled - started, time.monotonic() - checkpoint.handled)

    @contextmanager
    def checkpoint(self, consumed: bool = True) -> Iterator[Checkpoint]:
        """A transaction: its outputs, and (`consumed`) the input offsets it advanced."""
        checkpoint = Checkpoint(self)
        producer = self._producer
        producer.begin_transaction()
        try:
            yield checkpoint
            if consumed and checkpoint.offsets:
                offsets = [TopicPartition(topic, partition, offset)
                           for (topic, partition), offset in checkpoint.offsets.items()]
                group = self._consumer.consumer_group_metadata()
                bounded(f"{self.processor.name}: sending the offsets",
                        lambda: producer.send_offsets_to_transaction(offsets, group, 60), STUCK_AFTER)
            bounded(f"{self.processor.name}: committing", lambda: producer.commit_transaction(60), STUCK_AFTER)
        except ProducerStuck:
            self._replace_producer()
            raise
        except BaseException:
            self._abort()
            raise

    def produce(self, output: Output, partition: int | None = None) -> None:
        """Hand one output to librdkafka; wait only when its queue is full. Positional
        arguments (topic, value, key, partition; -1 is librdkafka's "the partitioner's
        choice"): this runs for every output of every batch."""
        topic, key, value, headers = output
        while True:
            try:
                self._producer.produce(topic, value, key, UNASSIGNED if partition is None else partition,
                                       headers=headers or None)
                return
            except BufferError:
                self._producer.poll(0.05)

    def _abort(self) -> None:
        """Abort the open transaction. Its sends are let finish first (bounded): an EndTxn that
        overtakes a partition's AddPartitionsToTxn is refused as INVALID_TXN_STATE, which
        librdkafka makes fatal (confluentinc/librdkafka#4849)."""
        producer = self._producer
        try:
            producer.flush(_ABORT_FLUSH_S)
            bounded(f"{self.processor.name}: aborting", lambda: producer.abort_transaction(60), STUCK_AFTER)
        except ProducerStuck as error:
            log.warning("%s: %s", self.processor.name, error)
            self._replace_producer()
        except KafkaException as error:
            if error.args[0].fatal():
                raise
            log.warning("%s: aborting a transaction failed: %s", self.processor.name, error)

    def _replace_producer(self) -> None:
        """A new producer with the same transactional id, in place of one stuck in a call: its
        initialisation fences the old one, and the coordinator finishes or aborts the old
        one's transaction first, so what the batch wrote is either committed or gone — the
        rewind that follows reads whichever it is, as after a crash."""
        log.warning("%s: a transactional call is stuck; replacing the producer (same transactional id)",
                    self.processor.name)
        self._producer = self._transactional_producer()

    def _rewind(self) -> None:
        """After an aborted batch: state and positions back to what the last commit holds."""
        partitions = sorted(self.assignment)
        self.processor.revoked(partitions)
        self.processor.assigned(partitions)
        committed = self._consumer.committed([TopicPartition(t, p) for t, p in partitions], 30)
        for each in committed:
            self._consumer.seek(TopicPartition(each.topic, each.partition, max(each.offset, 0)))

    def _measure_lag(self) -> None:
        """Per partition held: its end as last fetched minus the position (no broker round trip)."""
        total = 0
        held = [TopicPartition(topic, partition) for topic, partition in sorted(self.assignment)]
        for each in self._consumer.position(held) if held else ():
            _, end = self._consumer.get_watermark_offsets(each, cached=True)
            if each.offset < 0 or end < 0:
                continue  # nothing read or fetched yet
            lag = max(end - each.offset, 0)
            metrics.consumer_lag.labels(each.topic, str(each.partition)).set(lag)
            total += lag
        self.lag = total

    # Rebalances (called inside consume(), between two batches: no transaction is open)

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        gained = [(each.topic, each.partition) for each in partitions]
        started = time.monotonic()
        self.processor.assigned(gained)
        self.assignment |= set(gained)
        self.ready.set()
        log.info("%s: assigned %d partition(s), state loaded in %.1f s", self.processor.name, len(gained),
                 time.monotonic() - started)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        lost = [(each.topic, each.partition) for each in partitions]
        self.processor.revoked(lost)
        self.assignment -= set(lost)
        for topic, partition in lost:
            try:
                metrics.consumer_lag.remove(topic, str(partition))
            except KeyError:
                pass  # never measured

    def stats(self) -> dict[str, Any]:
        return {"batches": self.batches, "events": self.events, "lag": self.lag, **self.timings.summary()}

    def healthy(self) -> bool:
        return self.failed is None and self.ready.is_set()


class BatchTimings:
    """How long the recent batches took to handle and to commit: in ``govbus_batch_seconds``
    and, for the last ``RECENT_BATCHES``, as percentiles in ``/health`` (the bench reads them).
    Why: an event waits for the batch before it to commit, so the commit's tail is the
    freshness tail of every event behind it."""

    def __init__(self, processor: str) -> None:
        self.handle_metric = metrics.batch_seconds.labels(processor, "handle")
        self.commit_metric = metrics.batch_seconds.labels(processor, "commit")
        self.recent: deque[tuple[float, float]] = deque(maxlen=RECENT_BATCHES)

    def add(self, handle: float, commit: float) -> None:
        self.handle_metric.observe(handle)
        self.commit_metric.observe(commit)
        self.recent.append((handle, commit))

    def summary(self) -> dict[str, dict[str, float]]:
        """p50, p99 and max of each phase over the recent batches, in seconds."""
        found: dict[str, dict[str, float]] = {}
        for index, phase in enumerate(("handle_s", "commit_s")):
            values = sorted(entry[index] for entry in self.recent)
            if values:
                found[phase] = {"p50": round(values[len(values) // 2], 4),
                                "p99": round(values[min(len(values) - 1, int(len(values) * 0.99))], 4),
                                "max": round(values[-1], 4)}
        return found


def headers_of(message: Message) -> list[tuple[str, bytes]]:
    return list(message.headers() or ())


def by_library(partitions: Iterable[Partition], library_of: dict[str, str]) -> dict[str, list[int]]:
    """Partitions (topic, number) as each library's partition numbers, sorted, each once: a
    library's state is kept per partition number, whichever of its topics the number is of."""
    chosen: dict[str, set[int]] = {}
    for topic, partition in partitions:
        chosen.setdefault(library_of[topic], set()).add(partition)
    return {library: sorted(numbers) for library, numbers in chosen.items()}


def by_partition(messages: Iterable[Message]) -> dict[int, list[Message]]:
    """Messages grouped by partition, each group in offset order."""
    grouped: dict[int, list[Message]] = {}
    for message in messages:
        grouped.setdefault(message.partition(), []).append(message)
    return grouped

