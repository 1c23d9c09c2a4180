"""The bus as the bench runs it: a secured broker, the catalog's topics and ACLs, the four
subscriptions, the gate and the router as worker processes, and one subscriber process per
department — each process logged in as its own principal, exactly as in production.

`Pipeline.start()` brings it all up and waits until it is ready; `publish` feeds it as the
source system does (the publisher SDK); `wait_applied` waits until every subscriber has
applied a number of changes; `freshness` joins publish and apply times by event id.

Why one module of about 360 lines: starting, watching and stopping the bus's processes for the bench is one lifecycle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kafka import TopicPartition

from govbus import clients, collector
from govbus.bench import follower
from govbus.bench.measure import ProcessWatch
from govbus.bench.subscriptions import FOUR, requests
from govbus.broker.provision import ProvisionedBroker, free_port, local_broker, provision
from govbus.errors import GovbusError
from govbus.processes import ProcessorProcess, settings_environment
from govbus.settings import Settings
from govbus.topics.catalog import load_catalog
from govbus.topics.names import TopicNames

BROKER_HEAP = "1g"
WARM_UP_EVENTS = 10_000  # at most; twice the scenario's size for small runs
WARM_UP_SECONDS = 90.0  # the paced rounds stop after this, settled or not
SETTLE_RATE, SETTLE_ROUND_S = 1000, 5  # a warm-up round: events/s, seconds
SETTLED_COMPILER_CORES = 0.05


class BenchError(GovbusError):
    """The bench could not set something up or a run did not finish; the message says which."""


def provision_broker(settings: Settings) -> ProvisionedBroker:
    """The broker `GOVBUS_BOOTSTRAP_SERVERS` names, else a throw-away secured local one."""
    if os.environ.get("GOVBUS_BOOTSTRAP_SERVERS"):
        return provision(settings)
    return local_broker(settings, heap=BROKER_HEAP)


def make_principals(broker: ProvisionedBroker, settings: Settings, home: Path) -> dict[str, str]:
    from govbus.security import credentials
    from govbus.security import principals

    admin = clients.admin(broker.admin_settings())
    try:
        names = [credentials.PROCESSORS, credentials.GOVERNANCE, *load_catalog(settings.catalog_dir).departments]
        return {name: principals.ensure(admin, home, name).password for name in names}
    finally:
        admin.close()


@dataclass
class Follower:
    department: str
    process: subprocess.Popen
    out: Path


@dataclass
class Pipeline:
    """One bus under one topic prefix: gate, router and a subscriber per department."""

    settings: Settings  # admin, with the pipeline's prefix
    passwords: dict[str, str]
    work: Path
    departments: tuple[str, ...] = tuple(FOUR)
    workers: dict[str, ProcessorProcess] = field(default_factory=dict)
    followers: dict[str, Follower] = field(default_factory=dict)
    broker_pids: list[int] = field(default_factory=list)  # counted in every watch when the broker is local

    @property
    def names(self) -> TopicNames:
        return TopicNames(self.settings.topic_prefix)

    @property
    def secured(self) -> bool:
        return self.settings.secured

    def as_principal(self, name: str) -> Settings:
        return self.settings.logged_in_as(name, self.passwords.get(name, ""))

    # -- bringing it up ------------------------------------------------------------------
    def start(self) -> Pipeline:
        self.work.mkdir(parents=True, exist_ok=True)
        self.apply_catalog()
        self.subscribe()
        for name in ("gate", "router"):
            self.start_worker(name)
        self.wait_initial_loads()
        for department in self.departments:
            self.start_follower(department)
        self.wait_followers_ready()
        return self

    def apply_catalog(self) -> None:
        from govbus.topics.apply import apply_catalog

        apply_catalog(self.settings, load_catalog(self.settings.catalog_dir), self.names)

    def subscribe(self) -> None:
        """The departments' requests through the one channel; the owner approves the rest."""
        from govbus.processors.governance import control

        for request in requests(self.departments):
            subscription = control.request(self.settings, request)
            for authority in subscription.awaiting:  # each conditional field's authority approves (issue 16)
                subscription = control.approve(self.settings, subscription.id, authority)
            if subscription.state != "approved":
                raise BenchError(f"the bench subscription of {request.department} was {subscription.state}: "
                                 f"{subscription.decision.reason}")

    def start_worker(self, name: str) -> None:
        from govbus.security.credentials import PROCESSORS

        settings = self.as_principal(PROCESSORS).model_copy(update={"processor_port": free_port()})
        self.workers[name] = ProcessorProcess(settings, [name], self.work / f"{name}.log").start(timeout=180)

    def wait_initial_loads(self, timeout: float = 120.0) -> None:
        """Until the router has every subscription and has delivered every initial load (its
        /health says so): a change published before would come both in the initial load and
        live, and the bench could not time it."""
        router, wanted = self.workers["router"], len(self.departments)
        deadline = time.monotonic() + timeout
        while True:
            counts = ((router.health() or {}).get("counts") or {}).get("router") or {}
            if counts.get("subscriptions_active", 0) >= wanted and counts.get("backfills_owed") == 0:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"the router did not deliver the initial loads of {wanted} subscriptions within "
                                 f"{timeout:.0f} s (it says {counts}); see {self.work / 'router.log'}")
            time.sleep(0.5)

    def start_follower(self, department: str, libraries: tuple[str, ...] = ("population",)) -> None:
        out = self.work / "followers"
        out.mkdir(parents=True, exist_ok=True)
        store = f"sqlite:///{self.work / f'{department}.db'}"
        log = open(self.work / f"follower-{department}.log", "ab")
        chosen = [argument for library in libraries for argument in ("--library", library)]
        process = subprocess.Popen(
            [sys.executable, "-m", "govbus.bench.follower", "--department", department, "--store", store, "--out", str(out),
             *chosen],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=settings_environment(self.as_principal(department)))
        log.close()
        self.followers[department] = Follower(department, process, out)

    def wait_followers_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        for department, entry in self.followers.items():
            while not follower.read_status(entry.out, department).get("ready"):
                if entry.process.poll() is not None:
                    raise BenchError(f"the {department} subscriber exited with {entry.process.returncode}; "
                                     f"see {self.work / f'follower-{department}.log'}")
                if time.monotonic() > deadline:
                    raise BenchError(f"the {department} subscriber was not ready within {timeout:.0f} s")
                time.sleep(0.2)

    # -- running -----------------------------------------------------------------------
    def publisher(self):
        from govbus.bench.workload import LIBRARY, SOURCE, SOURCE_SYSTEM
        from govbus.producers.publisher import Publisher

        return Publisher(self.as_principal(SOURCE), SOURCE, LIBRARY, source_system=SOURCE_SYSTEM, names=self.names)

    def watch(self) -> ProcessWatch:
        watch = ProcessWatch()
        watch.add("publisher (bench driver)")
        for name, worker in self.workers.items():
            watch.add(name, worker.process.pid)
        for department, entry in self.followers.items():
            watch.add(f"subscriber {department}", entry.process.pid)
        watch.add_broker(self.broker_pids)
        return watch

    def batch_counts(self) -> dict[str, dict[str, int]]:
        """Per processor: the batches (transactions) and events its loop has handled so far,
        from its worker's /health."""
        return {name: {"batches": loop.get("batches", 0), "events": loop.get("events", 0)}
                for name, loop in self._loops().items()}

    def batch_timings(self) -> dict[str, dict[str, Any]]:
        """Per processor: p50/p99/max seconds of its recent batches' handling and commit."""
        return {name: {phase: loop[phase] for phase in ("handle_s", "commit_s") if phase in loop}
                for name, loop in self._loops().items()}

    def loop_stats(self) -> dict[str, dict[str, Any]]:
        """Per batched processor, what its worker's /health says of its loop (batches, events, lag …)."""
        return self._loops()

    def _loops(self) -> dict[str, dict[str, Any]]:
        loops: dict[str, dict[str, Any]] = {}
        for worker in self.workers.values():
            with urllib.request.urlopen(worker.health_url, timeout=10) as answer:  # noqa: S310 - our own worker
                loops.update(json.load(answer).get("loops") or {})
        return loops

    def applied_counts(self) -> dict[str, int]:
        return {d: follower.read_status(e.out, d).get("applied", 0) for d, e in self.followers.items()}

    def wait_applied(self, counts: dict[str, int], timeout: float) -> bool:
        """Until each subscriber has applied at least its count; False if time ran out."""
        deadline = time.monotonic() + timeout
        while True:
            now = self.applied_counts()
            if all(now.get(department, 0) >= count for department, count in counts.items()):
                return True
            for name, worker in self.workers.items():
                if worker.process.poll() is not None:
                    raise BenchError(f"the {name} worker died; see {worker.log_path}")
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def applied(self) -> dict[str, dict[str, int]]:
        """Per department: event id → applied at (ms)."""
        return {department: follower.read_applied(entry.out, department) for department, entry in self.followers.items()}

    def routed(self) -> dict[str, dict[str, int]]:
        """Per department: event id → when the router wrote its delivery (ms)."""
        return {department: follower.read_applied(entry.out, department, column=2)
                for department, entry in self.followers.items()}

    def accepted(self, event_ids: set[str]) -> dict[str, int]:
        """event id → when the gate accepted it (ms), read back from ``shared.population``."""
        from govbus.schemas.framing import ACCEPTED_AT, header_map

        consumer = clients.consumer(self.settings)
        found: dict[str, int] = {}
        try:
            topic = self.names.shared("population")
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
            consumer.assign(partitions)
            consumer.seek_to_beginning()
            ends = consumer.end_offsets(partitions)
            while any(consumer.position(tp) < ends[tp] for tp in partitions):
                for records in consumer.poll(timeout_ms=1000, max_records=5000).values():
                    for record in records:
                        headers = header_map(record.headers)
                        event_id = headers.get("ce_id", b"").decode()
                        if event_id in event_ids and ACCEPTED_AT in headers:
                            found[event_id] = int(headers[ACCEPTED_AT])
        finally:
            consumer.close()
        return found

    def hops(self, published: dict[str, float]) -> dict[str, Any]:
        """Where the time goes, per hop: publish → accepted by the gate → routed → applied."""
        from govbus.bench.measure import percentiles

        accepted, routed, applied = self.accepted(set(published)), self.routed(), self.applied()
        gate = [accepted[e] / 1000 - published[e] for e in published if e in accepted]
        router, subscriber = [], []
        for department in applied:
            for event_id in published:
                if event_id in accepted and routed[department].get(event_id) and event_id in applied[department]:
                    router.append(routed[department][event_id] / 1000 - accepted[event_id] / 1000)
                    subscriber.append((applied[department][event_id] - routed[department][event_id]) / 1000)
        return {"publish_to_accepted_s": percentiles(gate), "accepted_to_routed_s": percentiles(router),
                "routed_to_applied_s": percentiles(subscriber)}

    def stop(self) -> None:
        for entry in self.followers.values():
            if entry.process.poll() is None:
                entry.process.terminate()
        for entry in self.followers.values():
            try:
                entry.process.wait(30)
            except subprocess.TimeoutExpired:
                entry.process.kill()
        for worker in self.workers.values():
            worker.stop()


def freshness(published: dict[str, float], applied: dict[str, dict[str, int]]) -> tuple[list[float], dict[str, Any]]:
    """Seconds from the publish call to applied in a store, for every (event, department);
    and how many published events each department has not applied."""
    delays, missing = [], {}
    for department, times in applied.items():
        found = 0
        for event_id, published_at in published.items():
            applied_at = times.get(event_id)
            if applied_at is not None:
                delays.append(applied_at / 1000 - published_at)
                found += 1
        missing[department] = len(published) - found
    return delays, missing


def shared_pipeline(context: Any) -> Pipeline:
    """The four-department pipeline, started once per run and shared by the scenarios that
    measure the bus in steady state (end to end, offered load); stopped with the context."""
    pipeline = context.shared.get("pipeline")
    if pipeline is None:
        context.echo("bringing up the bus: topics, ACLs, four subscriptions, gate, router, four subscribers …")
        started = time.monotonic()
        pipeline = Pipeline(context.admin_settings("bus"), context.passwords(), context.work / "bus",
                            broker_pids=context.broker_pids())
        context.shared["pipeline"] = pipeline
        context.cleanups.append(pipeline.stop)
        pipeline.start()
        context.echo(f"bus ready in {time.monotonic() - started:.0f} s")
        warm_up(pipeline, min(WARM_UP_EVENTS, 2 * context.sizes.events), context.echo,
                settle=context.sizes.events >= 1000)  # not in the smoke test's tiny runs
    return pipeline


def warm_up(pipeline: Pipeline, count: int, echo: Any, settle: bool = True) -> None:
    """Changes through the whole bus before anything is measured. Why: a broker just started
    runs interpreted Java until its JIT compiler has caught up; in the first minute the
    compiler took more CPU than the broker's request handlers (jstack's per-thread CPU, bench
    at 50 events/s), on the same two cores as the bus. A broker that serves a province runs
    for months: the bench measures it warm. A burst of `count` changes, then (`settle`, a
    local broker) paced rounds until the compiler threads use less than
    ``SETTLED_COMPILER_CORES`` of a core: a burst alone had left the compiler at half a core
    for the first offered rate (0.47 in its first 15 s, 0.11 after 45 s)."""
    from govbus.bench import workload

    started = time.monotonic()
    _through(pipeline, workload.population_changes(count, seed=3), None)
    rounds, compiling = until_compiled(pipeline.broker_pids if settle else [], lambda number: _through(
        pipeline, workload.population_changes(SETTLE_RATE * SETTLE_ROUND_S, seed=4 + number), SETTLE_RATE))
    echo(f"warmed up with {count + rounds * SETTLE_RATE * SETTLE_ROUND_S} changes in {time.monotonic() - started:.0f} s"
         + (f"; the broker's JIT compiler at {compiling:.2f} of a core" if compiling is not None else ""))


def until_compiled(broker_pids: list[int], one_round: Callable[[int], None]) -> tuple[int, float | None]:
    """`one_round(number)` again and again until the local broker's JIT compiler threads use
    less than ``SETTLED_COMPILER_CORES`` of a core over a round, for at most
    ``WARM_UP_SECONDS``: the rounds run and the compiler's last share of a core (None: no local
    broker, nothing run). Every figure that counts the broker is measured warm: the bus's and
    the topology ceiling's alike."""
    started, rounds, compiling = time.monotonic(), 0, None
    while broker_pids and time.monotonic() - started < WARM_UP_SECONDS:
        before, moment = compiler_seconds(broker_pids), time.monotonic()
        one_round(rounds)
        rounds += 1
        compiling = (compiler_seconds(broker_pids) - before) / (time.monotonic() - moment)
        if compiling < SETTLED_COMPILER_CORES:
            break
    return rounds, compiling


def _through(pipeline: Pipeline, records: list[dict[str, Any]], rate: float | None) -> None:
    """Publish `records` and wait until every store applied them."""
    before = pipeline.applied_counts()
    publish_all(pipeline, records, rate=rate)
    if not pipeline.wait_applied({department: before[department] + len(records) for department in before},
                                 timeout=max(120.0, len(records) / 50)):
        raise BenchError(f"the warm-up's {len(records)} changes were not all applied in time")


def compiler_seconds(pids: list[int]) -> float:
    """CPU seconds the JIT compiler threads of the broker's JVMs used so far (Linux: each
    thread's name is in /proc; 0 elsewhere)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            for thread in psutil.Process(pid).threads():
                name = Path(f"/proc/{pid}/task/{thread.id}/comm")
                if name.exists() and name.read_text().startswith(("C1 Compiler", "C2 Compiler")):
                    total += thread.user_time + thread.system_time
        except (psutil.Error, OSError):
            continue
    return total


def paced(items: Iterable[Any], rate: float | None) -> Iterator[Any]:
    """`items` one after another at `rate` per second from the first (at once without a rate):
    an offered load that does not drift when one send is slow."""
    first = time.time()
    for index, item in enumerate(items):
        if rate:
            delay = first + index / rate - time.time()
            if delay > 0:
                time.sleep(delay)
        yield item


def publish_all(pipeline: Pipeline, records: list[dict[str, Any]], rate: float | None = None) -> tuple[dict[str, float], float, float]:
    """Publish through the SDK (at `rate` events/s, else as fast as it goes); return
    event id → publish time (s since the epoch), the first publish time and the last ack time."""
    published: dict[str, float] = {}
    # A source's publishing process holds little; the bench's holds every scenario's records.
    # Frozen, they are not walked by the collector while it publishes: its full collections
    # (about 50 ms each, 18 in one offered-load run) had held up sends the bench counted as
    # the bus's latency.
    collector.tune()
    with pipeline.publisher() as publisher:
        publisher.connect()  # a source publishes from a connected client: its start-up is not freshness
        first = time.time()
        for record in paced(records, rate):
            moment = time.time()
            result = publisher.publish(record)
            if not result.accepted:
                raise BenchError(f"the bench's own record was refused: {result.violations}")
            published[result.event_id] = moment
        report = publisher.flush()
        if report.failures:
            raise BenchError(f"{len(report.failures)} publishes failed, e.g. {report.failures[0]}")
        return published, first, time.time()
