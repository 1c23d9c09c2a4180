"""The capacity model: what a province (or the nation) on the bus needs, from the design's own rules.

`predict(shape, province)` gives the topics, partitions, ACLs, messages, bytes, retained bytes,
brokers and processor instances. Each count follows from one part of the design, and
``docs/capacity.md`` explains each formula from it:

- topics and partitions: ``Catalog.topic_specs`` (per library its ingest topic per source,
  ``shared``, ``state``, ``dlq``, ``dlq.….replayed``, ``audit.heads``; the bus's own topics;
  per principal ``control.acts`` and per department ``control.objections``/``conflicts``/
  ``rejections``) plus ``deliver.<department>.<library>`` per department and library with an
  approved subscription (made on approval);
- ACLs: ``topics/acls.py desired`` — fixed grants for the processors, the authority and
  governance, eleven per department, two per ingest topic, two per (department, library)
  with an active subscription;
- messages: the gate writes one shared change and one golden record per accepted change, the
  router one delivery per matching subscription (record or life event) and one sharing record
  per routed change to ``audit.deliveries``.

`Shape.of(catalog)` reads what the catalog fixes (partitions, sources, the bus's topics), so
the formulas count what ``topics apply`` makes; ``tests/unit/test_capacity_model.py`` holds
them against ``topic_specs`` and ``acls.desired`` for catalogs of other sizes. The simulation
(``govbus simulate``) compares them with what a real broker counted.

Why one module of about 420 lines: the capacity model's formulas depend on each other (topics → partitions → bytes); docs/capacity.md explains them in this order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from govbus.topics.catalog import Catalog
from govbus.topics.names import TopicNames

# -- a province and the nation (docs/capacity.md says where each figure comes from) ----------
PROVINCE_DEPARTMENTS = 2_500
NATIONAL_DEPARTMENTS = 252_000
PROVINCE_ENTITIES = {"population": 50_000_000, "legal_entity": 5_000_000, "credit": 2_000_000,
                     "certificate": 20_000_000}
NATIONAL_FACTOR = 28.2  # 1,410 million people / 50 million: the nation's libraries as 28.2 provinces
# Changes a day as a share of a library's entities (births, deaths, moves, marriages, education;
# registrations, alterations, deregistrations; new 双公示 records; certificates issued and revoked).
DAILY_CHANGE_SHARE = {"population": 0.00015, "legal_entity": 0.001, "credit": 0.00135, "certificate": 0.00055}
SUBSCRIPTIONS_PER_DEPARTMENT = 3

# -- what the ACL rules of topics/acls.py fix ---------------------------------------------------
SERVICE_ACLS = 45 + 21 + 17  # processors, authority processor, governance
ACLS_PER_DEPARTMENT = 11  # acts (2), objections (2), conflicts (2), rejections (2), subscriptions (2), group (1)
ACLS_PER_INGEST_TOPIC = 2  # its source's WRITE, DESCRIBE
ACLS_PER_READER = 2  # READ, DESCRIBE of deliver.<department>.<library> while a subscription is active
ACTING_PRINCIPALS_BEYOND_DEPARTMENTS = 1  # governance has an acts topic too

# -- sizes and costs (measured: docs/capacity.md names the run) ---------------------------------
MESSAGE_BYTES = {"ingest": 694, "shared": 990, "state": 3_096, "deliver": 948}  # key + value + headers
# A sharing record lists every delivery of its change: its size grows with the fan-out.
SHARING_RECORD_BYTES = 620  # the record itself (chain, hashes, the change's ids)
SHARING_BYTES_PER_DELIVERY = 184  # one listed delivery (department, subscription, fields, purpose)
MESSAGE_LIMIT_BYTES = 1_048_588  # Kafka's default message.max.bytes, which audit.deliveries keeps
RETENTION_DAYS = {"ingest": 7, "deliver": 30}  # shared.* and audit.deliveries are kept for ever
RETENTION_HORIZON_DAYS = 365  # what "for ever" is counted as: one year of the topics kept for ever
PARTITIONS_PER_BROKER = 4_000  # partition replicas per broker (see docs/capacity.md)
DISK_PER_BROKER = 4 * 10**12  # usable bytes per broker
PEAK_FACTOR = 5.0  # the busiest hour against the day's average
CORE_SHARE = 0.5  # a processor instance is sized to use half of one core at the peak
# Costs measured on 2 shared cores, re-fitted on 2026-12-07 (`govbus simulate --scale 0.01`,
# bench/results/20261207-053840-2core-simulate-0.01.md; `govbus bench --scenario initial_load
# --snapshot 1000000`, the slowest of the day's runs, 20261207-032554-2core-small.md). A
# simulation measures its own gate, router and settling costs and uses those; these are the
# defaults, and the one-off rates no simulation measures.
GATE_CPU_PER_EVENT = 0.00026  # s
ROUTER_CPU_PER_EVENT = 0.000101  # s: decoding a change, its sharing record, the batch
ROUTER_CPU_PER_DELIVERY = 0.000026  # s: one projection, encoding and send
BACKFILL_SETTLE_S = 0.014  # router seconds per (new subscription, partition), even of an empty library
BACKFILL_RECORDS_PER_S = 5_762  # one router backfilling a new subscription (bench, 1,000,000 entities)
LAZY_OBJECTION_SHARE = 0.1  # departments that ever raise or answer an objection (the lazy alternative)
LOAD_RECORDS_PER_S = 2_914  # an initial load through the gate into one store (bench, 2 cores)
DAY_SECONDS = 86_400


@dataclass(frozen=True)
class LibraryShape:
    """What the catalog fixes for one library: its source departments and each topic's partitions."""

    library: str
    sources: int
    ingest_partitions: int
    own_partitions: int  # shared + state + dlq + dlq.replayed + audit.heads
    deliver_partitions: int
    shared_partitions: int  # what the router backfills a new subscription by


@dataclass(frozen=True)
class Shape:
    """What the catalog fixes for the whole bus (none of it grows with departments but the
    per-principal topics, whose partitions per kind are here)."""

    libraries: tuple[LibraryShape, ...]
    bus_topics: int
    bus_partitions: int
    acts_partitions: int
    per_department_partitions: int  # objections + conflicts + rejections of one department
    replication: int
    source_departments: int = 0  # distinct sources (each a field's authority): who gets conflicts and rejections

    @classmethod
    def of(cls, catalog: Catalog) -> Shape:
        """The shape of `catalog`, read from the topics it specifies."""
        names = TopicNames()
        specs = {spec.name: spec for spec in catalog.topic_specs(names)}
        libraries = tuple(_library_shape(catalog, names, specs, library) for library in catalog.libraries)
        bus = [specs[names.bus(topic)] for topic in catalog.bus.topics]
        first = next(iter(catalog.departments))
        per_department = sum(specs[name].partitions for name in
                             (names.objections_of(first), names.conflicts_of(first), names.rejections_of(first)))
        sources = {department for library in catalog.libraries.values() for department in library.sources}
        return cls(libraries, len(bus), sum(spec.partitions for spec in bus), specs[names.acts(first)].partitions,
                   per_department, max(spec.replication_factor for spec in specs.values()), len(sources))

    def with_delivery_partitions(self, partitions: int) -> Shape:
        """The same bus with every delivery topic of `partitions` (an alternative: docs/capacity.md)."""
        return replace(self, libraries=tuple(replace(library, deliver_partitions=partitions)
                                             for library in self.libraries))

    @property
    def ingest_topics(self) -> int:
        return sum(library.sources for library in self.libraries)


def _library_shape(catalog: Catalog, names: TopicNames, specs: Mapping[str, Any], library: str) -> LibraryShape:
    of = catalog.library(library)
    own = [names.shared(library), names.state(library), names.dlq(library), f"{names.dlq(library)}.replayed",
           names.audit_heads(library)]
    ingest = specs[names.ingest(library, next(iter(of.sources)))].partitions
    deliver = catalog.delivery_topic(names, next(iter(catalog.departments)), library).partitions
    return LibraryShape(library, len(of.sources), ingest, sum(specs[name].partitions for name in own), deliver,
                        specs[names.shared(library)].partitions)


@dataclass(frozen=True)
class Province:
    """What varies between provinces, per library where it is per library. `changes` are the
    accepted changes of the period (a day, or a run), `fan_out` the deliveries per change
    (records and life events), `routed_share` the share of changes with at least one delivery
    (each has one sharing record). `readers` counts the (department, library) pairs whose
    subscription is active now (their read ACLs); `delivery_topics` every pair that ever had
    one approved (the topic stays after a revocation)."""

    departments: int
    delivery_topics: Mapping[str, int]
    subscriptions: Mapping[str, int]
    entities: Mapping[str, int]
    changes: Mapping[str, float]
    fan_out: Mapping[str, float]
    routed_share: Mapping[str, float]
    readers: int | None = None
    acts: int = 0  # governance acts of the period (subscription requests and decisions)
    new_subscriptions: int = 0  # approvals of the period, each backfilled partition by partition
    rejected_share: float = 0.0
    message_bytes: Mapping[str, float] = field(default_factory=lambda: dict(MESSAGE_BYTES))
    router_cpu_per_event: float = ROUTER_CPU_PER_EVENT
    router_cpu_per_delivery: float = ROUTER_CPU_PER_DELIVERY
    gate_cpu_per_event: float = GATE_CPU_PER_EVENT
    backfill_settle_s: float = BACKFILL_SETTLE_S

    def __post_init__(self) -> None:
        if self.departments < 1:
            raise ValueError(f"a province has at least one department, not {self.departments}")
        negative = [name for name, values in (("entities", self.entities), ("changes", self.changes),
                                              ("fan_out", self.fan_out), ("subscriptions", self.subscriptions))
                    if any(value < 0 for value in values.values())]
        if negative:
            raise ValueError(f"negative figures in {', '.join(negative)}")


@dataclass(frozen=True)
class Prediction:
    """The model's answer; every count per kind and in total, messages and bytes per period."""

    topics: dict[str, int]
    partitions: dict[str, int]
    partition_replicas: int
    acls: int
    messages: dict[str, float]
    bytes: dict[str, float]
    retained_bytes: dict[str, float]
    brokers: dict[str, int]
    processors: dict[str, int]
    hours: dict[str, float]
    largest_sharing_record_bytes: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def predict(shape: Shape, province: Province, lazy_principal_topics: bool = False) -> Prediction:
    """Topics, partitions, ACLs, messages, bytes, retention, brokers and processors (see the
    module). `lazy_principal_topics`: the alternative in which a department's objections,
    conflicts and rejections topics are made when first needed (``principal_topics``)."""
    topics = topic_counts(shape, province, lazy_principal_topics)
    partitions = partition_counts(shape, province, lazy_principal_topics)
    replicas = partitions["total"] * shape.replication
    messages = message_counts(province)
    volume = message_volume(messages, province)
    retained = retained_bytes(province, volume, shape.replication)
    largest = SHARING_RECORD_BYTES + SHARING_BYTES_PER_DELIVERY * max(province.fan_out.values(), default=0.0)
    return Prediction(topics, partitions, replicas, acl_count(shape, province, lazy_principal_topics), messages,
                      volume, retained,
                      brokers_needed(replicas, retained["total"]), processors_needed(province),
                      load_hours(shape, province), largest)


def principal_topics(shape: Shape, departments: int, lazy: bool = False) -> dict[str, int]:
    """Per kind, the topics of one principal each: ``control.acts`` for every department and
    governance; ``control.objections``/``conflicts``/``rejections`` for every department — or,
    lazily, conflicts and rejections for the source departments only (a field's authority is
    its source) and objections for `LAZY_OBJECTION_SHARE` of the departments."""
    acting = departments + ACTING_PRINCIPALS_BEYOND_DEPARTMENTS
    if not lazy:
        return {"acts": acting, "per_department": 3 * departments}
    sources = min(departments, shape.source_departments)
    return {"acts": acting, "per_department": 2 * sources + math.ceil(LAZY_OBJECTION_SHARE * departments)}


def topic_counts(shape: Shape, province: Province, lazy: bool = False) -> dict[str, int]:
    """Per kind: ingest (one per library and source), the libraries' own five, the bus's own,
    the principals' (``principal_topics``) and the delivery topics."""
    counts = {"ingest": shape.ingest_topics, "library": 5 * len(shape.libraries), "bus": shape.bus_topics,
              "principal": sum(principal_topics(shape, province.departments, lazy).values()),
              "deliver": sum(province.delivery_topics.values())}
    counts["total"] = sum(counts.values())
    return counts


def partition_counts(shape: Shape, province: Province, lazy: bool = False) -> dict[str, int]:
    """The same kinds, each topic counted with its partitions."""
    principal = principal_topics(shape, province.departments, lazy)
    per_topic = shape.per_department_partitions / 3
    counts = {"ingest": sum(library.sources * library.ingest_partitions for library in shape.libraries),
              "library": sum(library.own_partitions for library in shape.libraries),
              "bus": shape.bus_partitions,
              "principal": principal["acts"] * shape.acts_partitions + round(principal["per_department"] * per_topic),
              "deliver": sum(province.delivery_topics.get(library.library, 0) * library.deliver_partitions
                             for library in shape.libraries)}
    counts["total"] = sum(counts.values())
    return counts


def acl_count(shape: Shape, province: Province, lazy: bool = False) -> int:
    """The ACLs ``acls.desired`` makes (one ACL per principal, operation and resource): eleven
    per department, of which six are the READ and DESCRIBE of its objections, conflicts and
    rejections topics (two per such topic, lazily)."""
    readers = province.readers if province.readers is not None else sum(province.delivery_topics.values())
    per_department = ACLS_PER_DEPARTMENT * province.departments
    if lazy:
        per_department = (ACLS_PER_DEPARTMENT - 6) * province.departments + \
            2 * principal_topics(shape, province.departments, True)["per_department"]
    return SERVICE_ACLS + per_department + ACLS_PER_INGEST_TOPIC * shape.ingest_topics + ACLS_PER_READER * readers


def message_counts(province: Province) -> dict[str, float]:
    """Per topic kind, the messages of the period: each accepted change once on its ingest
    topic, once in ``shared`` and once in ``state``; `fan_out` deliveries each; one sharing
    record per routed change. A rejected event is on its ingest topic and a dead letter, and
    its copy in its source's ``control.rejections``; each governance act is on its author's
    ``control.acts`` and its outcome in ``control.subscriptions``."""
    changes = sum(province.changes.values())
    offered = changes / (1 - province.rejected_share) if province.rejected_share < 1 else changes
    counts = {"ingest": offered, "shared": changes, "state": changes,
              "deliver": sum(count * province.fan_out.get(library, 0.0) for library, count in province.changes.items()),
              "audit": sum(count * province.routed_share.get(library, 0.0) for library, count in province.changes.items()),
              "dlq": offered - changes, "control": 2 * province.acts + (offered - changes)}
    counts["total"] = sum(counts.values())
    return counts


def message_volume(messages: Mapping[str, float], province: Province) -> dict[str, float]:
    """Bytes of the period per kind: messages × their size; a sharing record's size grows
    with the deliveries it lists."""
    volume = {kind: count * province.message_bytes.get(kind, 0) for kind, count in messages.items()
              if kind not in ("total", "audit")}
    volume["audit"] = messages["audit"] * SHARING_RECORD_BYTES + messages["deliver"] * SHARING_BYTES_PER_DELIVERY
    volume["total"] = sum(volume.values())
    return volume


def retained_bytes(province: Province, volume: Mapping[str, float], replication: int) -> dict[str, float]:
    """Bytes on the brokers' disks at steady state, all replicas: ingest 7 days, deliveries
    30 days, shared changes and sharing records for ever (counted over one year), the golden
    records once per entity (compacted)."""
    kept = {kind: volume.get(kind, 0.0) * days for kind, days in RETENTION_DAYS.items()}
    kept["shared"] = volume.get("shared", 0.0) * RETENTION_HORIZON_DAYS
    kept["audit"] = volume.get("audit", 0.0) * RETENTION_HORIZON_DAYS
    kept["state"] = sum(province.entities.values()) * province.message_bytes.get("state", 0.0)
    kept = {kind: value * replication for kind, value in kept.items()}
    kept["total"] = sum(kept.values())
    return kept


def brokers_needed(replicas: int, retained: float) -> dict[str, int]:
    """Brokers for the partition replicas (``PARTITIONS_PER_BROKER`` each) and for the disk;
    never fewer than three (replication 3, one broker may fail)."""
    by_partitions = math.ceil(replicas / PARTITIONS_PER_BROKER)
    by_disk = math.ceil(retained / DISK_PER_BROKER)
    return {"by_partitions": by_partitions, "by_disk": by_disk, "needed": max(3, by_partitions, by_disk)}


def processors_needed(province: Province) -> dict[str, int]:
    """Gate and router instances for the busiest hour (`PEAK_FACTOR` × the day's average),
    each sized to half a core; at least two of each (one may fail)."""
    peak = sum(province.changes.values()) * PEAK_FACTOR / DAY_SECONDS
    deliveries = sum(count * province.fan_out.get(library, 0.0) for library, count in province.changes.items())
    fan_out = deliveries / max(1.0, sum(province.changes.values()))
    router_cost = province.router_cpu_per_event + province.router_cpu_per_delivery * fan_out
    return {"gate": max(2, math.ceil(peak * province.gate_cpu_per_event / CORE_SHARE)),
            "router": max(2, math.ceil(peak * router_cost / CORE_SHARE))}


def load_hours(shape: Shape, province: Province) -> dict[str, float]:
    """How long the one-off work takes at the measured rates: the initial load of every
    library; one new subscription's backfill of the largest library (no filter); and the
    router's settling of the period's approvals, shared partition by partition (`BACKFILL_SETTLE_S`)."""
    largest = max(province.entities.values(), default=0)
    partitions = {library.library: library.shared_partitions for library in shape.libraries}
    settled = sum(count * partitions.get(library, 1) for library, count in province.subscriptions.items())
    share = settled / max(1, sum(province.subscriptions.values()))
    return {"initial_load": sum(province.entities.values()) / LOAD_RECORDS_PER_S / 3600,
            "backfill_largest_library": largest / BACKFILL_RECORDS_PER_S / 3600,
            "approvals_settled": province.new_subscriptions * share * province.backfill_settle_s / 3600}


# -- a province at a scale ----------------------------------------------------------------------
def departments_at(scale: float, catalog_departments: int) -> int:
    """Departments of a province at `scale`: 2,500 × scale, and at least the catalog's own
    (the sources and the fields' authorities) plus two simulated, so that a province always
    has departments beyond the catalog's."""
    require_scale(scale)
    return max(round(PROVINCE_DEPARTMENTS * scale), catalog_departments + 2)


def entities_at(scale: float) -> dict[str, int]:
    """Each library's entities in a province at `scale`."""
    require_scale(scale)
    return {library: round(count * scale) for library, count in PROVINCE_ENTITIES.items()}


def changes_a_day(entities: Mapping[str, float]) -> dict[str, float]:
    """Each library's changes a day over `entities` (``DAILY_CHANGE_SHARE``)."""
    return {library: count * DAILY_CHANGE_SHARE.get(library, 0.0) for library, count in entities.items()}


def require_scale(scale: float) -> None:
    if not (0 < scale <= 1):
        raise ValueError(f"scale {scale} is not a share of a province: give a number in (0, 1], e.g. 0.01")


# -- from the simulation to a province and the nation -------------------------------------------
PROVINCE_REGIONS = {"province": 1, "city": 21, "county": 122}  # Guangdong: 21 prefecture-level cities, 122 counties
NATIONAL_REGIONS = {"nation": 1, "province": 31, "city": 333, "county": 2_844}
NATIONAL_LEVELS = {"nation": 0.01, "province": 0.09, "city": 0.30, "county": 0.60}  # of the departments


@dataclass(frozen=True)
class Measured:
    """What a simulation measured that the model carries to other sizes: per library, its share
    of the subscriptions, the departments reading it per department, and `touch` — the
    deliveries of a day's change per subscription whose region filter lets the entity by (how
    often a change touches what a subscription sees, or is the life event it asked for);
    message sizes per kind; CPU seconds of the gate per event and of the router per event
    and per delivery."""

    subscription_share: Mapping[str, float]
    readers_per_department: Mapping[str, float]
    touch: Mapping[str, float]
    message_bytes: Mapping[str, float] = field(default_factory=lambda: dict(MESSAGE_BYTES))
    gate_cpu_per_event: float = GATE_CPU_PER_EVENT
    router_cpu_per_event: float = ROUTER_CPU_PER_EVENT
    router_cpu_per_delivery: float = ROUTER_CPU_PER_DELIVERY
    backfill_settle_s: float = BACKFILL_SETTLE_S


def match_share(levels: Mapping[str, float], regions: Mapping[str, int]) -> float:
    """The share of a library's entities one subscription's region filter lets by, on average:
    a department serves one region of its level (all of them at the top level)."""
    return sum(share / regions[level] for level, share in levels.items())


def province_levels(departments: int, top_level: int) -> dict[str, float]:
    """The levels of a province's departments: `top_level` (the catalog's own) and a tenth of
    the rest at the province, three tenths at a city, six tenths at a county (``province.py``)."""
    rest = max(0, departments - top_level)
    return {"province": (top_level + 0.1 * rest) / departments, "city": 0.3 * rest / departments,
            "county": 0.6 * rest / departments}


def extrapolate(measured: Measured, departments: int, entities: Mapping[str, int], levels: Mapping[str, float],
                regions: Mapping[str, int]) -> Province:
    """A province (or the nation) of `departments` and `entities`, its subscriptions, readers
    and fan-out as the simulation measured them per department, a day's changes as the model's
    change shares say."""
    subscriptions = departments * SUBSCRIPTIONS_PER_DEPARTMENT
    per_library = {library: subscriptions * share for library, share in measured.subscription_share.items()}
    matched = match_share(levels, regions)
    fan_out = {library: measured.touch.get(library, 0.0) * count * matched for library, count in per_library.items()}
    return Province(departments=departments,
                    delivery_topics={library: round(departments * share)
                                     for library, share in measured.readers_per_department.items()},
                    subscriptions={library: round(count) for library, count in per_library.items()},
                    entities=dict(entities), changes=changes_a_day(entities), fan_out=fan_out,
                    routed_share={library: min(1.0, value) for library, value in fan_out.items()},
                    new_subscriptions=subscriptions,
                    message_bytes=dict(measured.message_bytes), gate_cpu_per_event=measured.gate_cpu_per_event,
                    router_cpu_per_event=measured.router_cpu_per_event,
                    router_cpu_per_delivery=measured.router_cpu_per_delivery,
                    backfill_settle_s=measured.backfill_settle_s)


def fit_costs(points: list[tuple[float, float, float]]) -> tuple[float, float] | None:
    """(seconds per event, seconds per delivery) that best explain `points` of (events,
    deliveries, CPU seconds) — least squares through the origin; None when the points cannot
    separate the two (fewer than two, all in proportion) or a cost comes out negative."""
    see = sum(e * e for e, _, _ in points)
    sdd = sum(d * d for _, d, _ in points)
    sed = sum(e * d for e, d, _ in points)
    sec = sum(e * c for e, _, c in points)
    sdc = sum(d * c for _, d, c in points)
    determinant = see * sdd - sed * sed
    if len(points) < 2 or determinant <= 1e-9 * max(1.0, see * sdd):
        return None
    per_event, per_delivery = (sec * sdd - sdc * sed) / determinant, (see * sdc - sed * sec) / determinant
    return (per_event, per_delivery) if per_event >= 0 and per_delivery >= 0 else None
