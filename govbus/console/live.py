"""What the console knows, kept current by one reader thread that follows the bus's topics.

The console reads, as ``governance``, the topics the bus writes about itself and nothing a
department owns: ``control.subscriptions``, ``control.objections``, ``control.conflicts`` and
``control.verdicts``, ``control.alerts``, ``metrics.freshness``, ``dlq.<library>`` and
``audit.deliveries``. It reads each from its beginning (``metrics.freshness`` from the start
of the history it charts) and then follows it, with a plain consumer and no consumer group,
so it leaves no trace on the bus and every console sees everything.

State is folded with the bus's own functions where there is a rule to apply
(``subscriptions.fold``, ``objections.fold``, ``conflicts.fold``, ``audit.verify``); what is
kept here is only bookkeeping: the latest value per key, counts, and recent history. Each
view has a version number that moves when its data changes, so a browser asks for a view
again only when there is something new.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition

from govbus import clients, compact_json
from govbus.consumers import objections as objection_rules
from govbus.processors.governance import audit
from govbus.processors.governance import conflicts as conflict_rules
from govbus.processors.gate import deadletters
from govbus.processors.governance import subscriptions as subscription_rules
from govbus.settings import Settings
from govbus.topics.catalog import Catalog
from govbus.topics.names import ALERTS, AUDIT, CONFLICTS, FRESHNESS, OBJECTIONS, SUBSCRIPTIONS, VERDICTS, TopicNames

log = logging.getLogger("govbus.console")
HISTORY_SECONDS = 6 * 3600.0  # the longest freshness chart: the last six hours
RECENT_DEAD_LETTERS = 50
VERIFY_SECONDS = 5.0
VIEWS = ("lineage", "freshness", "attention", "trace")


@dataclass
class DeadLetter:
    """One dead letter as the console shows it: where from, when, why; never its content."""

    library: str
    department: str
    reason: str
    detail: str
    at: str
    origin: str


@dataclass
class Knowledge:
    """Everything the views read, guarded by the reader's lock."""

    subscriptions: dict[str, subscription_rules.Subscription] = field(default_factory=dict)
    objections: dict[str, objection_rules.Objection] = field(default_factory=dict)
    conflict_values: list[bytes | None] = field(default_factory=list)
    conflict_raised: dict[str, float] = field(default_factory=dict)  # conflict id → when the gate wrote it
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # library.department.kind → latest event
    reports: dict[str, deque[dict[str, Any]]] = field(default_factory=dict)  # library → freshness reports
    dead_letter_counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # library, department, reason
    dead_letters: deque[DeadLetter] = field(default_factory=lambda: deque(maxlen=RECENT_DEAD_LETTERS))
    records: list[dict[str, Any]] = field(default_factory=list)  # every sharing record, in log order
    by_entity: dict[str, list[int]] = field(default_factory=dict)  # entity id → positions in `records`


class Live:
    """The reader: follows the console's topics in a thread of its own and folds them into
    ``Knowledge``. ``ready`` once every topic has been read to the end it had at the start."""

    def __init__(self, settings: Settings, catalog: Catalog, poll_seconds: float = 0.5) -> None:
        self.settings, self.catalog = settings, catalog
        self.names = TopicNames(settings.topic_prefix)
        self.poll_seconds = poll_seconds
        self.knowledge = Knowledge()
        self.lock = threading.RLock()
        self.versions = dict.fromkeys(VIEWS, 0)
        self.ready = threading.Event()
        self.problem: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="govbus-console-reader", daemon=True)
        self._objection_steps: list[bytes] = []
        self._verified_at = 0.0
        self._verified: tuple[int, audit.Verification] | None = None
        self._handlers = self._topic_handlers()

    # -- the thread ------------------------------------------------------------------------
    def start(self) -> Live:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _topic_handlers(self) -> dict[str, Callable[[Any], set[str]]]:
        names = self.names
        handlers: dict[str, Callable[[Any], set[str]]] = {
            names.bus(SUBSCRIPTIONS): self._subscription, names.bus(OBJECTIONS): self._objection,
            names.bus(CONFLICTS): self._conflict, names.bus(VERDICTS): self._conflict,
            names.bus(ALERTS): self._alert, names.bus(FRESHNESS): self._report, names.bus(AUDIT): self._record,
        }
        for library in self.catalog.libraries:
            handlers[names.dlq(library)] = lambda message, library=library: self._dead_letter(library, message)
        return handlers

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as error:  # noqa: BLE001 - the page says what is wrong and the reader retries
                self.problem = f"cannot read the bus: {error}"
                log.warning("console reader: %s; retrying in 5 s", error)
                self._stop.wait(5)

    def _follow(self) -> None:
        consumer = clients.consumer(self.settings)
        try:
            partitions = self._wait_for_topics(consumer)
            if partitions is None:
                return
            self._seek(consumer, partitions)
            ends = consumer.end_offsets(partitions)
            with self.lock:  # a reconnection reads everything again: start from nothing
                self.knowledge, self._objection_steps, self._verified = Knowledge(), [], None
                for view in self.versions:
                    self.versions[view] += 1
            self.problem = None
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=int(self.poll_seconds * 1000), max_records=5000)
                self._apply(message for records in batches.values() for message in records)
                if not self.ready.is_set() and all(consumer.position(tp) >= ends[tp] for tp in partitions):
                    self.ready.set()
        finally:
            consumer.close()

    def _wait_for_topics(self, consumer: Any) -> list[TopicPartition] | None:
        """Every partition of the console's topics, once they all exist (`topics apply`)."""
        while not self._stop.is_set():
            found = {topic: consumer.partitions_for_topic(topic) for topic in self._handlers}
            missing = sorted(topic for topic, partitions in found.items() if not partitions)
            if not missing:
                return [TopicPartition(topic, number) for topic, numbers in found.items() for number in sorted(numbers)]
            self.problem = (f"waiting for {len(missing)} topic(s), e.g. {missing[0]}: `govbus topics apply` makes "
                            "them (or governance may not read them: `govbus acl apply`)")
            self._stop.wait(2)
            consumer.topics()  # refresh the metadata
        return None

    def _seek(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        """From the beginning, but the freshness reports only from the start of the history charted."""
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        reports = [tp for tp in partitions if tp.topic == self.names.bus(FRESHNESS)]
        since = int((time.time() - HISTORY_SECONDS) * 1000)
        for tp, found in consumer.offsets_for_times({tp: since for tp in reports}).items():
            if found is not None:
                consumer.seek(tp, found.offset)
            else:
                consumer.seek_to_end(tp)

    def _apply(self, messages: Iterable[Any]) -> None:
        changed: set[str] = set()
        with self.lock:
            for message in messages:
                try:
                    changed |= self._handlers[message.topic](message)
                except (ValueError, TypeError, KeyError, UnicodeDecodeError) as error:
                    log.warning("console: skipping an unreadable message on %s@%s: %s", message.topic,
                                message.offset, error)
            if self._objection_steps:  # one fold per batch: the fold copies what it starts from
                self.knowledge.objections = objection_rules.fold(self._objection_steps, start=self.knowledge.objections)
                self._objection_steps = []
            for view in changed:
                self.versions[view] += 1

    # -- one handler per topic: what each message changes ----------------------------------
    def _subscription(self, message: Any) -> set[str]:
        key = (message.key or b"").decode()
        self.knowledge.subscriptions.pop(key, None)  # a tombstone removes it; a value replaces it
        self.knowledge.subscriptions.update(subscription_rules.fold([(message.key or b"", message.value)]))
        return {"lineage", "attention"}

    def _objection(self, message: Any) -> set[str]:
        if message.value is None:
            return set()
        self._objection_steps.append(message.value)
        return {"attention"}

    def _conflict(self, message: Any) -> set[str]:
        self.knowledge.conflict_values.append(message.value)
        body = _json(message.value)
        if message.topic == self.names.bus(CONFLICTS) and body and isinstance(body.get("conflict_id"), str):
            self.knowledge.conflict_raised.setdefault(body["conflict_id"], message.timestamp / 1000)
        return {"attention"}

    def _alert(self, message: Any) -> set[str]:
        body = _json(message.value)
        if body and body.get("state") in ("alert", "recovery"):
            self.knowledge.alerts[(message.key or b"").decode()] = body
        return {"freshness"}

    def _report(self, message: Any) -> set[str]:
        body = _json(message.value)
        if not body or not body.get("library"):
            return set()
        history = self.knowledge.reports.setdefault(str(body["library"]), deque())
        history.append(body)
        oldest = time.time() - HISTORY_SECONDS
        while history and seconds_of(history[0].get("at")) < oldest:
            history.popleft()
        return {"freshness"}

    def _dead_letter(self, library: str, message: Any) -> set[str]:
        info = deadletters.describe(list(message.headers or ()))
        origin = info.get("topic", "")
        try:
            _, department = self.names.parse_ingest(origin)
        except ValueError:
            department = "(the bus)"  # rejected after the gate, not a department's publishing
        reason = info.get("reason", "unknown")
        self.knowledge.dead_letter_counts[(library, department, reason)] += 1
        self.knowledge.dead_letters.appendleft(DeadLetter(library, department, reason, info.get("detail", ""),
                                                          info.get("time", ""), origin))
        return {"attention"}

    def _record(self, message: Any) -> set[str]:
        record = audit.decode(message.value)
        if not isinstance(record, dict):
            raise ValueError("not a sharing record")
        records = self.knowledge.records
        self.knowledge.by_entity.setdefault(str(record.get("entity_id")), []).append(len(records))
        records.append(record)
        return {"trace"}

    # -- what the views ask ------------------------------------------------------------------
    def verification(self) -> audit.Verification:
        """`audit verify` over every record read so far; done again when records came, at most
        every VERIFY_SECONDS (it reads every record: a busy bus must not verify on each ask)."""
        with self.lock:
            count = len(self.knowledge.records)
            stale = self._verified is None or (self._verified[0] != count
                                               and time.monotonic() - self._verified_at >= VERIFY_SECONDS)
            if stale:
                self._verified, self._verified_at = (count, audit.verify(self.knowledge.records)), time.monotonic()
            return self._verified[1]  # type: ignore[index]

    def status(self) -> dict[str, Any]:
        return {"status": "ready" if self.ready.is_set() and self.problem is None else "starting",
                "problem": self.problem, "versions": dict(self.versions)}


def _json(value: bytes | None) -> dict[str, Any] | None:
    try:
        body = compact_json.loads(value) if value else None
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def seconds_of(text: Any) -> float:
    """Seconds since the epoch of an ISO time written by the bus (``…Z``); 0 when unreadable."""
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0

