"""The simulation, step by step, on a real secured broker.

1. *The province* (``province.plan``): departments, the catalog that registers them (written to
   a folder every process reads), the subscriptions; the sources' load and a day's changes
   (``workload``) and what the design makes of them (``workload.expect``).
2. *Provisioning*, timed: every department, the processors, the authority processor and
   governance as SCRAM principals of their own (``principals.ensure``, as ``departments
   add``), the catalog's topics and the ACLs derived from it (``apply_catalog``, as ``topics
   apply`` and ``acl apply``) — by the admin super user, which does nothing else on the bus.
3. *The bus*: the gate and the router as ``govbus-processors``, the authority processor as
   ``govbus-authority``; every subscription requested by its department and approved by each
   conditional field's authority, each logged in as itself (``processors/governance/control.py``); a
   subscriber process per department (``govbus.bench.follower``) applying to its SQLite store.
4. *The load*, library by library (each source's snapshots, the key's authority first), the
   router's CPU (``/proc`` via psutil, of its worker process) and events (its ``/health``)
   measured per library against that library's subscriptions; then *the day*, published at an
   even pace over `day_seconds`, its freshness measured from publish to applied.
5. *Counting and checking*: topics, partitions and ACLs asked of the broker, messages counted
   by reading every topic, each against the capacity model at the loaded sizes; every
   subscriber's store against the projection of the golden records (``govbus.entitlement``)
   and its life-event log against the events it was owed.

Why one module of about 360 lines: the simulation's steps run in order against one broker; one module reads as the run it is.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from govbus import clients
from govbus.bench import follower
from govbus.bench.harness import Pipeline, paced
from govbus.bench.measure import ProcessWatch, percentiles
from govbus.broker.provision import free_port
from govbus.errors import GovbusError
from govbus.processes import ProcessorProcess
from govbus.processors.governance import control
from govbus.processors.governance.subscriptions import Subscription
from govbus.producers.publisher import Publisher
from govbus.schemas.registry import default_registry
from govbus.security import credentials, principals
from govbus.settings import Settings
from govbus.simulate import model, province, workload
from govbus.simulate.province import Planned, ProvincePlan
from govbus.simulate.workload import Event, Expected, Receiver, Sources
from govbus.topics import apply as topic_apply
from govbus.topics.names import TopicNames

SOURCE_SYSTEM = "govbus-simulate"
SUBSCRIBING_THREADS = 6  # departments asking at once (the authority processor folds them in turn)
QUIET_S = 2.0  # the bus counts as done with a phase once nothing moved for this long
IDLE_SAMPLE_S = 3.0
PHASE_TIMEOUT_S = 600.0


class SimulationError(GovbusError):
    """The simulation could not set something up or a phase did not finish; the message says which."""


@dataclass(frozen=True)
class Options:
    scale: float
    entities: int
    seed: int
    day_seconds: float
    per_department: int = model.SUBSCRIPTIONS_PER_DEPARTMENT  # subscriptions each department makes


@dataclass
class Simulation:
    """One run: `settings` reach the broker as admin under the run's prefix."""

    settings: Settings
    options: Options
    work: Path
    broker_pids: list[int] = field(default_factory=list)
    echo: Callable[[str], None] = print
    passwords: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    idle_router_cpu: float = 0.0  # CPU seconds per second of the router with nothing to route

    # -- the province --------------------------------------------------------------------
    def prepare(self) -> None:
        """Generate the province and point every process at its catalog."""
        from govbus.topics.catalog import load_catalog

        registry = default_registry()
        base = load_catalog(self.settings.catalog_dir)
        self.plan: ProvincePlan = province.plan(base, self.options.scale, self.options.seed, self.options.per_department)
        folder = province.write_catalog(self.plan.catalog, self.settings.catalog_dir, self.work / "catalog")
        self.settings = self.settings.model_copy(update={"catalog_dir": folder})
        if load_catalog(folder).departments.keys() != self.plan.catalog.departments.keys():
            raise SimulationError(f"the catalog written to {folder} does not list the province's departments")
        self.sources = Sources(self.plan, registry, self.options.seed)
        self.full = model.entities_at(self.options.scale)
        self.loaded = workload.split(self.full, self.options.entities)
        self.day_sizes = {library: round(count) for library, count in model.changes_a_day(self.full).items()}
        self.load_events = self.sources.load(self.loaded)
        self.echo(f"province at scale {self.options.scale}: {len(self.plan.departments)} departments "
                  f"({len(self.plan.simulated)} beyond the catalog's), {len(self.plan.subscriptions)} subscriptions; "
                  f"full sizes {self.full}, loaded {self.loaded}, a day's changes {self.day_sizes}")

    def login(self, principal: str) -> Settings:
        return self.settings.logged_in_as(principal, self.passwords.get(principal, ""))

    @property
    def names(self) -> TopicNames:
        return TopicNames(self.settings.topic_prefix)

    # -- provisioning --------------------------------------------------------------------
    def provision(self) -> None:
        """Principals, then topics and ACLs; each timed."""
        started = time.monotonic()
        admin = clients.admin(self.settings)
        try:
            for name in self.principal_names():
                self.passwords[name] = principals.ensure(admin, self.settings.home, name).password
        finally:
            admin.close()
        made = time.monotonic()
        changes = topic_apply.apply_catalog(self.settings, self.plan.catalog, self.names)
        done = time.monotonic()
        self.figures["provisioning"] = {"principals": len(self.passwords), "principals_s": made - started,
                                        "topics_made": len(changes), "topics_and_acls_s": done - made,
                                        "total_s": done - started}
        self.echo(f"provisioned {len(self.passwords)} principals in {made - started:.1f} s, "
                  f"{len(changes)} topics and their ACLs in {done - made:.1f} s")

    def principal_names(self) -> list[str]:
        return [credentials.PROCESSORS, credentials.AUTHORITY, credentials.GOVERNANCE, *self.plan.catalog.departments]

    # -- the bus -------------------------------------------------------------------------
    def start_bus(self) -> Pipeline:
        """Gate, router and authority processor, each its own worker process, started at once."""
        pipeline = Pipeline(self.settings, self.passwords, self.work / "bus",
                            departments=tuple(self.plan.catalog.departments), broker_pids=self.broker_pids)
        pipeline.work.mkdir(parents=True, exist_ok=True)
        authority = ProcessorProcess(self.login(credentials.AUTHORITY).model_copy(update={"processor_port": free_port()}),
                                     ["authority"], pipeline.work / "authority.log")
        with ThreadPoolExecutor(3) as pool:
            started = [pool.submit(pipeline.start_worker, "gate"), pool.submit(pipeline.start_worker, "router"),
                       pool.submit(authority.start, 180)]
            for each in started:
                each.result()
        pipeline.workers["authority"] = authority
        self.echo("processors ready: gate and router (govbus-processors), authority (govbus-authority)")
        return pipeline

    def subscribe(self, pipeline: Pipeline) -> dict[str, Subscription]:
        """Every planned request by its department, every approval by its authority, each as
        itself; several departments at once."""
        started = time.monotonic()
        with ThreadPoolExecutor(SUBSCRIBING_THREADS) as pool:
            made = list(pool.map(self._subscribe_one, self.plan.subscriptions))
        seconds = time.monotonic() - started
        acts = sum(1 + len(subscription.approved_by - {"govbus"}) for subscription in made)
        self.echo(f"{len(made)} subscriptions requested and approved ({acts} acts, each by its own principal) "
                  f"in {seconds:.1f} s; the router takes them up …")
        settled = time.monotonic()
        self._wait_router_book(pipeline, len(made))
        shared = {library.library: library.shared_partitions for library in model.Shape.of(self.plan.catalog).libraries}
        backfills = sum(shared[subscription.library] for subscription in made)
        took = time.monotonic() - settled
        self.figures["provisioning"].update(subscriptions=len(made), subscription_acts=acts, subscriptions_s=seconds,
                                            backfills=backfills, backfills_s=took)
        self.echo(f"the router settled {backfills} (subscription, partition) backfills of empty libraries in "
                  f"{took:.1f} s")
        return {subscription.id: subscription for subscription in made}

    def _subscribe_one(self, planned: Planned) -> Subscription:
        subscription = control.request(self.login(planned.request.department), planned.request)
        for authority in subscription.awaiting:
            subscription = control.approve(self.login(authority), subscription.id)
        if subscription.state != "approved":
            raise SimulationError(f"{planned.request.department}'s {planned.profile.name} subscription is "
                                  f"{subscription.state}: {subscription.decision.reason}")
        return subscription

    def _wait_router_book(self, pipeline: Pipeline, wanted: int) -> None:
        """Until the router holds every subscription and owes no backfill (so no change of the
        load comes both as a backfill and live)."""
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        while True:
            counts = ((pipeline.workers["router"].health() or {}).get("counts") or {}).get("router") or {}
            if counts.get("subscriptions_active", 0) >= wanted and counts.get("backfills_owed") == 0:
                return
            if time.monotonic() > deadline:
                raise SimulationError(f"the router did not take up {wanted} subscriptions (it says {counts})")
            time.sleep(0.5)

    def start_subscribers(self, pipeline: Pipeline, subscriptions: dict[str, Subscription]) -> None:
        """One subscriber process per department, for the libraries it subscribes to."""
        libraries: dict[str, set[str]] = {}
        for subscription in subscriptions.values():
            libraries.setdefault(subscription.department, set()).add(subscription.library)
        for department, its in sorted(libraries.items()):
            pipeline.start_follower(department, tuple(sorted(its)))
        pipeline.wait_followers_ready(timeout=PHASE_TIMEOUT_S)
        self.echo(f"{len(libraries)} subscriber processes ready, each logged in as its department")

    # -- publishing ----------------------------------------------------------------------
    def load(self, pipeline: Pipeline, receivers: list[Receiver], expected: Expected) -> list[dict[str, Any]]:
        """The libraries' load, one library at a time, with the router's cost per event."""
        phases = []
        for library in self.loaded:
            events = [event for event in self.load_events if event.library == library]
            workload.expect(self.sources, events, receivers, expected)
            phases.append(self._measured(pipeline, library, events, receivers))
        return phases

    def _measured(self, pipeline: Pipeline, library: str, events: list[Event],
                  receivers: list[Receiver]) -> dict[str, Any]:
        """Publish one library's load (the key's authority first: the other sources' changes
        find its record, with its region) and measure the router over it. The router's CPU
        while it waits is taken off (`idle_router_cpu`), so what is left is its cost of routing."""
        watch = self._watch(pipeline).start()
        before, deliveries_before = pipeline.batch_counts(), self._router_deliveries(pipeline)
        started = time.monotonic()
        groups = [group for _, group in workload.events_by_source(events)]
        self.publish(groups[0])
        self.wait_gate(pipeline, before["gate"]["events"] + len(groups[0]))
        self.publish([event for group in groups[1:] for event in group])
        self.wait_quiet(pipeline)
        seconds = time.monotonic() - started
        cpu = watch.stop()
        routed = pipeline.batch_counts()["router"]["events"] - before["router"]["events"]
        delivered = self._router_deliveries(pipeline).get(library, 0) - deliveries_before.get(library, 0)
        router_cpu = max(0.0, cpu["router"]["cpu_seconds"] - self.idle_router_cpu * seconds)
        phase = {"library": library, "subscriptions": sum(1 for r in receivers if r.library == library),
                 "events": len(events), "routed_events": routed, "deliveries": delivered,
                 "deliveries_per_event": delivered / max(1, routed), "seconds": seconds,
                 "router_cpu_s": router_cpu, "router_cpu_s_with_idle": cpu["router"]["cpu_seconds"],
                 "gate_cpu_s": cpu["gate"]["cpu_seconds"],
                 "router_us_per_event": 1e6 * router_cpu / max(1, routed),
                 "router_us_per_delivery": 1e6 * router_cpu / max(1, delivered)}
        self.echo(f"  {library:<13} {len(events):>6} events, {delivered:>7} deliveries to {phase['subscriptions']} "
                  f"subscriptions in {seconds:.0f} s; router {phase['router_us_per_event']:.0f} µs/event")
        return phase

    def measure_idle(self, pipeline: Pipeline, seconds: float = IDLE_SAMPLE_S) -> None:
        """The router's CPU per second while nothing comes (polling, its subscription watch,
        /health), to take off each phase's measurement."""
        watch = self._watch(pipeline).start()
        time.sleep(seconds)
        self.idle_router_cpu = watch.stop()["router"]["cpu_seconds"] / seconds
        self.figures["idle_router_cpu_per_s"] = self.idle_router_cpu

    def wait_gate(self, pipeline: Pipeline, events: int, timeout: float = PHASE_TIMEOUT_S) -> None:
        """Until the gate has read `events` in all and has no lag."""
        deadline = time.monotonic() + timeout
        while True:
            gate = pipeline.loop_stats().get("gate") or {}
            if gate.get("events", 0) >= events and not gate.get("lag"):
                return
            if time.monotonic() > deadline:
                raise SimulationError(f"the gate read {gate.get('events')} of {events} events within {timeout:.0f} s")
            time.sleep(0.2)

    def _watch(self, pipeline: Pipeline) -> ProcessWatch:
        watch = ProcessWatch()
        for name in ("gate", "router"):
            watch.add(name, pipeline.workers[name].process.pid)
        return watch

    @staticmethod
    def _router_deliveries(pipeline: Pipeline) -> dict[str, int]:
        counts = ((pipeline.workers["router"].health() or {}).get("counts") or {}).get("router") or {}
        return dict(counts.get("deliveries") or {})

    def publish(self, events: list[Event], pace: float | None = None) -> dict[str, float]:
        """Publish `events` in order, each by its source (at `pace` events/s, else at once):
        event id → when it was published."""
        publishers: dict[tuple[str, str], Publisher] = {}
        published: dict[str, float] = {}
        try:
            for event in paced(events, pace):
                published[self._publish_one(publishers, event)] = time.time()
        finally:
            failures = [failure for publisher in publishers.values() for failure in publisher.flush().failures]
            for publisher in publishers.values():
                publisher.close()
        if failures:
            raise SimulationError(f"{len(failures)} publishes failed, e.g. {failures[0]}")
        return published

    def _publish_one(self, publishers: dict[tuple[str, str], Publisher], event: Event) -> str:
        key = (event.library, event.source)
        if key not in publishers:
            publishers[key] = Publisher(self.login(event.source), event.source, event.library, names=self.names,
                                        source_system=SOURCE_SYSTEM)
        result = publishers[key].publish(event.record)
        if not result.accepted:
            raise SimulationError(f"the simulation's own {event.library} record from {event.source} was refused: "
                                  f"{result.violations[0].field}: {result.violations[0].rule}")
        return str(result.event_id)

    def day(self, pipeline: Pipeline, receivers: list[Receiver], expected: Expected) -> dict[str, float]:
        """A day's changes over the loaded entities, at an even pace over `day_seconds`."""
        events = self.sources.day(self.day_sizes)
        workload.expect(self.sources, events, receivers, expected)
        pace = len(events) / self.options.day_seconds if self.options.day_seconds > 0 else None
        self.echo(f"a day's {len(events)} changes ({sum(1 for e in events if e.life_event)} life events), "
                  f"published over {self.options.day_seconds:.0f} s …")
        published = self.publish(events, pace)
        self.wait_quiet(pipeline)
        self.figures["day"] = {"changes": len(events), "life_events": sum(1 for e in events if e.life_event),
                               "pace_per_s": pace}
        return published

    def wait_quiet(self, pipeline: Pipeline, timeout: float = PHASE_TIMEOUT_S) -> None:
        """Until the gate and the router have no lag and nothing (they, or a subscriber) moved
        for `QUIET_S`: every published event has gone as far as it goes."""
        deadline, last, still_since = time.monotonic() + timeout, None, time.monotonic()
        while True:
            loops = pipeline.loop_stats()
            now = ({name: (loop.get("events"), loop.get("lag")) for name, loop in loops.items()},
                   pipeline.applied_counts())
            lagging = any(loop.get("lag") for loop in loops.values())
            if now != last or lagging:
                last, still_since = now, time.monotonic()
            elif time.monotonic() - still_since >= QUIET_S:
                return
            for name, worker in pipeline.workers.items():
                if worker.process is not None and worker.process.poll() is not None:
                    raise SimulationError(f"the {name} worker died; see {worker.log_path}")
            if time.monotonic() > deadline:
                raise SimulationError(f"the bus did not settle within {timeout:.0f} s (loops {loops})")
            time.sleep(0.5)

    # -- freshness -----------------------------------------------------------------------
    @staticmethod
    def freshness(pipeline: Pipeline, published: dict[str, float]) -> dict[str, Any]:
        """Publish → applied and routed → applied over every delivery of the day's changes."""
        to_applied, routed_to_applied = [], []
        for department, entry in pipeline.followers.items():
            applied = follower.read_applied(entry.out, department)
            routed = follower.read_applied(entry.out, department, column=2)
            for event_id, at in published.items():
                if event_id in applied:
                    to_applied.append(applied[event_id] / 1000 - at)
                    if routed.get(event_id):
                        routed_to_applied.append((applied[event_id] - routed[event_id]) / 1000)
        return {"publish_to_applied_s": percentiles(to_applied), "routed_to_applied_s": percentiles(routed_to_applied)}


def receivers_of(subscriptions: dict[str, Subscription]) -> list[Receiver]:
    """The approved subscriptions as the expectation sees them (filters as stored: resolved)."""
    found = []
    for subscription in subscriptions.values():
        prefix = None
        if subscription.filters:
            value = subscription.filters[0].split("=", 1)[1]
            prefix = value[:-2] if value.endswith("..") else value
        found.append(Receiver(subscription.id, subscription.library, frozenset(subscription.fields),
                              frozenset(subscription.events), prefix))
    return found


def work_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="govbus-simulate-"))

