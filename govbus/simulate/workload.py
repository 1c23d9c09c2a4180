"""What the province's sources publish: the libraries' load, then a day's changes over it.

The load. A province at 1/100 still has 770,000 entities (``model.entities_at``): more than two
shared cores load, route and apply in the fifteen minutes the run may take. So the simulation
loads a *sample* of `entities` of them (split across the libraries in the province's
proportions, at least `MINIMUM_PER_LIBRARY` each), each as its sources' snapshots (population:
public security's identity, civil affairs' marital statuses, education's levels; legal
entities: market regulation's register and tax's statuses). The capacity model uses the full
scaled sizes for what grows with them (retained bytes, load and backfill hours); what the run
counts (topics, partitions, ACLs, messages) is compared with the model at the loaded sizes.

The day. The changes a day of the *full* scaled libraries (``model.changes_a_day``), each a
real kind of change by the department authoritative for it — registrations, moves, marriages,
deaths, schooling; companies registered, altered, deregistered, their tax status; credit
records; certificates issued, revoked, renewed — on entities of the loaded sample (one change
per entity, so no order between sources decides an outcome), published over `day_seconds`.

`expect` says, for every published event, what the design makes of it — independently of the
processors' code: whether the gate applies it, which subscriptions receive it (a region filter
on the image after it; a live change only when it touches a field or filter field of the
subscription; a source's snapshot always), which life events it is (by construction: a death
is a death), who receives those (a move out matched on the region left, and not a move within),
and whether it makes a sharing record. The simulation compares these with what was counted.

Why one module of about 440 lines: the generated load and the day's changes share the province's entity sample.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Callable

from govbus.producers.generate import generate, places_in
from govbus.schemas import rules
from govbus.schemas.registry import SchemaRegistry
from govbus.simulate.province import PROVINCE, ProvincePlan
from govbus.topics.catalog import Catalog

MINIMUM_PER_LIBRARY = 20
LOAD_SOURCES = {"population": ("public_security", "civil_affairs", "education"),
                "legal_entity": ("market_regulation", "tax"), "credit": ("development_reform",),
                "certificate": ("data_bureau",)}  # in load order: the key's authority first
TODAY = date.today()


@dataclass
class Event:
    """One record a source publishes, with what it is: load or day, the life event it makes."""

    library: str
    source: str
    record: dict[str, Any]
    phase: str  # load | day
    life_event: str | None = None

    @property
    def snapshot(self) -> bool:
        return self.record.get("op") == "snapshot"


@dataclass
class Expected:
    """What the design makes of the published events (see the module): per library and kind."""

    applied: Counter[str] = field(default_factory=Counter)  # library -> changes in shared.* (and state.*)
    accepted: Counter[str] = field(default_factory=Counter)  # library -> golden records written (state.*)
    deliveries: Counter[str] = field(default_factory=Counter)  # subscription id -> record deliveries
    events: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # subscription -> entity ids
    event_deliveries: Counter[str] = field(default_factory=Counter)  # library -> life-event deliveries
    record_deliveries: Counter[str] = field(default_factory=Counter)  # library -> record deliveries
    routed: Counter[str] = field(default_factory=Counter)  # library -> changes with a sharing record
    eligible: Counter[str] = field(default_factory=Counter)  # library -> (day change, subscription its filter lets by)
    day_deliveries: Counter[str] = field(default_factory=Counter)  # library -> deliveries of the day's changes


class Sources:
    """The sources' view of the province: every entity's current values, each source's last
    sequence per entity, and the events they publish."""

    def __init__(self, plan: ProvincePlan, registry: SchemaRegistry, seed: int) -> None:
        self.plan = plan
        self.catalog: Catalog = plan.catalog
        self.registry = registry
        self.rng = random.Random(seed)
        self.seed = seed
        self.images: dict[str, dict[str, dict[str, Any]]] = {library: {} for library in self.catalog.libraries}
        self.sequences: Counter[tuple[str, str, str]] = Counter()

    def key_field(self, library: str) -> str:
        return self.registry.entity_key(library)

    def region_of(self, library: str, image: Mapping[str, Any]) -> str | None:
        region_field = self.catalog.library(library).region_field
        return str(image[region_field]) if region_field and image.get(region_field) is not None else None

    # -- the load ------------------------------------------------------------------------
    def load(self, sizes: Mapping[str, int]) -> list[Event]:
        """Each library's sample as its sources' snapshots, in `LOAD_SOURCES` order."""
        events = []
        for library, count in sizes.items():
            keys = None
            for source in LOAD_SOURCES[library]:
                records = self._snapshots(library, source, count, keys)
                keys = keys or [record[self.key_field(library)] for record in records]
                events += [Event(library, source, record, "load") for record in records]
        return events

    def _snapshots(self, library: str, source: str, count: int, keys: list[str] | None) -> list[dict[str, Any]]:
        """`count` distinct entities (the same ones, in the same order, for every source of
        the library: one seed), as `source`'s snapshot records."""
        key, seen, found = self.key_field(library), set(), []
        for record in generate(library, 3 * count + 50, self.seed, department=source, op="snapshot", region=PROVINCE,
                               registry=self.registry):
            if record[key] in seen:
                continue
            seen.add(record[key])
            found.append(self._publishable(library, source, record))
            if len(found) == count:
                break
        if keys is not None and [record[key] for record in found] != keys:
            raise ValueError(f"{source}'s {library} export does not hold the entities of the library's first source")
        return found

    def _publishable(self, library: str, source: str, record: dict[str, Any]) -> dict[str, Any]:
        """The record as the source publishes it now (the publisher stamps `recorded_at`),
        numbered after the source's last change of that entity."""
        published = {name: value for name, value in record.items() if name != "recorded_at"}
        entity = str(record[self.key_field(library)])
        self.sequences[(library, source, entity)] += 1
        published["sequence"] = self.sequences[(library, source, entity)]
        return published

    # -- the day -------------------------------------------------------------------------
    def day(self, changes: Mapping[str, int]) -> list[Event]:
        """`changes[library]` changes of each library, over distinct entities, shuffled."""
        events = []
        for library, count in changes.items():
            pool = list(self.images[library])
            self.rng.shuffle(pool)
            kinds = DAY_KINDS[library]
            for _ in range(count):
                event = self._one_change(library, kinds, pool)
                if event is not None:
                    events.append(event)
        self.rng.shuffle(events)
        return events

    def _one_change(self, library: str, kinds: tuple[tuple[str, float], ...], pool: list[str]) -> Event | None:
        """A change of a kind drawn by share; another kind when no entity fits this one."""
        first = self.rng.choices([kind for kind, _ in kinds], weights=[share for _, share in kinds])[0]
        for kind in [first, *(kind for kind, _ in kinds if kind != first)]:
            made = MAKERS[kind](self, library, pool)
            if made is not None:
                return made
        return None

    def take(self, library: str, pool: list[str], fits: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        """An entity of the sample no change of the day has touched yet that `fits`."""
        for position, entity in enumerate(pool):
            image = self.images[library][entity]
            if fits(image):
                del pool[position]
                return image
        return None

    def change(self, library: str, source: str, image: Mapping[str, Any], values: dict[str, Any],
               life_event: str | None = None) -> Event:
        """`source`'s upsert of `values` for the entity of `image`."""
        key = self.key_field(library)
        record = {"op": "upsert", key: image[key], "valid_from": TODAY.isoformat(), **values}
        return Event(library, source, self._publishable(library, source, record), "day", life_event)

    def new_entity(self, library: str, source: str, adjust: Callable[[dict[str, Any]], dict[str, Any]]) -> Event:
        """A new entity (a registration, an issue) of `library`, its authority's whole record."""
        key = self.key_field(library)
        seed = self.rng.randrange(2**31)
        for record in generate(library, 50, seed, department=source, region=PROVINCE, registry=self.registry):
            if record[key] not in self.images[library]:
                record = adjust({**record, "valid_from": TODAY.isoformat()})
                self.images[library].setdefault(record[key], {})  # taken: no second new entity with its id
                return Event(library, source, self._publishable(library, source, record), "day")
        raise ValueError(f"could not draw a new {library} entity with an id not yet taken")


# -- the kinds of change of a day, per library: (maker, share of the library's changes) ---------
def _registration(sources: Sources, library: str, pool: list[str]) -> Event:
    return sources.new_entity(library, "public_security", lambda record: record)


def _move(sources: Sources, library: str, pool: list[str]) -> Event | None:
    """A household moved to another county of its city (户口迁移), between counties no
    department's population records are filtered to (see `unwatched_counties`)."""
    free = unwatched_counties(sources.plan, "population")
    image = sources.take(library, pool, lambda one: one.get("household_region") in free and
                          len(_neighbours(one["household_region"], free)) > 0)
    if image is None:
        return None
    target = sources.rng.choice(_neighbours(image["household_region"], free))
    address = f"{_place_name(target)}新区路{sources.rng.randrange(1, 400)}号"
    return sources.change(library, "public_security", image, {"household_region": target,
                                                               "household_address": address}, "moved_out")


def _neighbours(county: str, free: set[str]) -> list[str]:
    return sorted(other for other in free if other[:4] == county[:4] and other != county)


def _place_name(county: str) -> str:
    from govbus.schemas import divisions

    return (divisions.name_of(county[:4] + "00") or "") + (divisions.name_of(county) or "")


def _new_address(sources: Sources, library: str, pool: list[str]) -> Event | None:
    image = sources.take(library, pool, lambda one: bool(one.get("household_region")))
    if image is None:
        return None
    address = f"{_place_name(image['household_region'])}和平路{sources.rng.randrange(400, 800)}号"
    return sources.change(library, "public_security", image, {"household_address": address})


def _marriage(sources: Sources, library: str, pool: list[str]) -> Event | None:
    adult = (TODAY - timedelta(days=365 * 23)).isoformat()
    image = sources.take(library, pool, lambda one: one.get("marital_status") in ("unmarried", "divorced", "widowed")
                          and str(one.get("date_of_birth") or "9") < adult and not one.get("date_of_death"))
    if image is None:
        return None
    return sources.change(library, "civil_affairs", image, {"marital_status": "married",
                                                             "marriage_registration_date": TODAY.isoformat()},
                           "marriage")


def _death(sources: Sources, library: str, pool: list[str]) -> Event | None:
    image = sources.take(library, pool, lambda one: not one.get("date_of_death") and bool(one.get("date_of_birth")))
    if image is None:
        return None
    return sources.change(library, "health", image, {"date_of_death": TODAY.isoformat()}, "death")


def _schooling(sources: Sources, library: str, pool: list[str]) -> Event | None:
    levels = rules.EDUCATION_LEVELS
    image = sources.take(library, pool, lambda one: one.get("education_level") in levels[:-1])
    if image is None:
        return None
    return sources.change(library, "education", image,
                           {"education_level": levels[levels.index(image["education_level"]) + 1]})


def _company(sources: Sources, library: str, pool: list[str]) -> Event:
    return sources.new_entity(library, "market_regulation",
                               lambda record: {**record, "status": "in_business", "deregistration_date": None})


def _alteration(sources: Sources, library: str, pool: list[str]) -> Event | None:
    image = sources.take(library, pool, lambda one: bool(one.get("region")))
    if image is None:
        return None
    return sources.change(library, "market_regulation", image, {
        "legal_representative": image.get("legal_representative", "") + "明",
        "registered_address": f"{_place_name(image['region'])}中山路{sources.rng.randrange(800, 999)}号"})


def _deregistration(sources: Sources, library: str, pool: list[str]) -> Event | None:
    image = sources.take(library, pool, lambda one: one.get("status") in ("in_existence", "in_business"))
    if image is None:
        return None
    return sources.change(library, "market_regulation", image, {"status": "deregistered",
                                                                 "deregistration_date": TODAY.isoformat()},
                           "deregistered")


def _tax_status(sources: Sources, library: str, pool: list[str]) -> Event | None:
    image = sources.take(library, pool, lambda one: one.get("tax_registration_status") in ("normal", "suspended"))
    if image is None:
        return None
    status = "suspended" if image["tax_registration_status"] == "normal" else "normal"
    return sources.change(library, "tax", image, {"tax_registration_status": status})


def _credit_record(sources: Sources, library: str, pool: list[str]) -> Event:
    return sources.new_entity(library, "development_reform", lambda record: record)


def _credit_correction(sources: Sources, library: str, pool: list[str]) -> Event | None:
    image = sources.take(library, pool, lambda one: bool(one.get("content")))
    if image is None:
        return None
    return sources.change(library, "development_reform", image, {"content": image["content"] + "（更正）"})


def _certificate(sources: Sources, library: str, pool: list[str]) -> Event:
    return sources.new_entity(library, "data_bureau", lambda record: {
        **record, "status": "valid", "issue_date": TODAY.isoformat(),
        "expiry_date": TODAY.replace(year=TODAY.year + 5, day=min(TODAY.day, 28)).isoformat()})


def _revocation(sources: Sources, library: str, pool: list[str]) -> Event | None:
    image = sources.take(library, pool, lambda one: one.get("status") == "valid")
    if image is None:
        return None
    return sources.change(library, "data_bureau", image, {"status": "revoked"}, "revoked")


def _renewal(sources: Sources, library: str, pool: list[str]) -> Event | None:
    image = sources.take(library, pool, lambda one: one.get("status") == "valid" and bool(one.get("issue_date")))
    if image is None:
        return None
    renewed = TODAY.replace(year=TODAY.year + 6, day=min(TODAY.day, 28)).isoformat()
    return sources.change(library, "data_bureau", image, {"expiry_date": renewed})


MAKERS: dict[str, Callable[[Sources, str, list[str]], Event | None]] = {
    "registration": _registration, "move": _move, "new_address": _new_address, "marriage": _marriage,
    "death": _death, "schooling": _schooling, "company": _company, "alteration": _alteration,
    "deregistration": _deregistration, "tax_status": _tax_status, "credit_record": _credit_record,
    "credit_correction": _credit_correction, "certificate": _certificate, "revocation": _revocation,
    "renewal": _renewal,
}
DAY_KINDS: dict[str, tuple[tuple[str, float], ...]] = {
    "population": (("registration", 0.15), ("move", 0.30), ("new_address", 0.15), ("marriage", 0.15),
                   ("death", 0.10), ("schooling", 0.15)),
    "legal_entity": (("company", 0.40), ("alteration", 0.35), ("deregistration", 0.15), ("tax_status", 0.10)),
    "credit": (("credit_record", 0.90), ("credit_correction", 0.10)),
    "certificate": (("certificate", 0.80), ("revocation", 0.10), ("renewal", 0.10)),
}


def unwatched_counties(plan: ProvincePlan, library: str) -> set[str]:
    """The counties of the province that no record subscription of `library` is filtered to.

    Why moves stay among them: a change that takes an entity out of a record subscription's
    region leaves its row in that department's store (the router delivers nothing for a row
    that no longer matches, ``processors/router/projection.py``), and the store check would rightly
    call it a row too many. docs/capacity.md records this as a finding. A move within a city
    crosses no city's filter, so only the counties' filters matter."""
    watched = {request.filters[0].split("=", 1)[1].rstrip(".") for request in
               (planned.request for planned in plan.subscriptions)
               if request.library == library and request.fields and request.filters}
    return {place[0] for place in places_in(PROVINCE) if place[0] not in watched}


# -- what the design makes of it --------------------------------------------------------------
@dataclass(frozen=True)
class Receiver:
    """One approved subscription as the expectation sees it: its fields, events, region prefix."""

    id: str
    library: str
    fields: frozenset[str]
    events: frozenset[str]
    region: str | None  # the prefix of its region filter, None without one


def expect(sources: Sources, events: list[Event], receivers: list[Receiver], found: Expected | None = None) -> Expected:
    """Apply `events` to the province's images in order and say what each one makes."""
    found = found or Expected()
    by_library: dict[str, list[Receiver]] = defaultdict(list)
    for receiver in receivers:
        by_library[receiver.library].append(receiver)
    for event in events:
        _expect_one(sources, event, by_library[event.library], found)
    return found


def _expect_one(sources: Sources, event: Event, receivers: list[Receiver], found: Expected) -> None:
    library, key = event.library, sources.key_field(event.library)
    entity = str(event.record[key])
    before = sources.images[library].get(entity) or {}
    own = set(sources.registry.authoritative_fields(library, event.source))
    values = {name: value for name, value in event.record.items() if name in own}
    changed = {name for name, value in values.items() if before.get(name) != value and
               (name in before or value is not None)}
    after = {**before, **values}
    sources.images[library][entity] = after
    found.accepted[library] += 1
    if not changed:
        return
    found.applied[library] += 1
    region_field = sources.catalog.library(library).region_field
    delivered = 0
    for receiver in receivers:
        if receiver.fields and _receives(receiver, after, changed, event.snapshot, region_field):
            found.deliveries[receiver.id] += 1
            found.record_deliveries[library] += 1
            delivered += 1
        if event.life_event in receiver.events and _told(receiver, sources, library, before, after, event):
            found.events[receiver.id].add(entity)
            found.event_deliveries[library] += 1
            delivered += 1
    if delivered:
        found.routed[library] += 1
    if event.phase == "day":
        found.eligible[library] += sum(1 for receiver in receivers if _in_region(receiver, after, region_field))
        found.day_deliveries[library] += delivered


def _in_region(receiver: Receiver, image: Mapping[str, Any], region_field: str | None) -> bool:
    return receiver.region is None or str(image.get(region_field) or "").startswith(receiver.region)


def _receives(receiver: Receiver, after: Mapping[str, Any], changed: set[str], snapshot: bool,
              region_field: str | None) -> bool:
    """A record delivery: the filter holds on the image after, and a live change touches a
    field or the filter's field."""
    if not _in_region(receiver, after, region_field):
        return False
    triggers = receiver.fields | ({region_field} if receiver.region is not None and region_field else set())
    return snapshot or bool(triggers & changed)


def _told(receiver: Receiver, sources: Sources, library: str, before: Mapping[str, Any],
          after: Mapping[str, Any], event: Event) -> bool:
    """A life-event delivery: its region (the one left, for a move) in the filter; a move that
    stays in the filtered region is no move out."""
    if receiver.region is None:
        return True
    leaves = event.life_event == "moved_out"
    region = sources.region_of(library, before if leaves else after) or ""
    if not region.startswith(receiver.region):
        return False
    return not (leaves and (sources.region_of(library, after) or "").startswith(receiver.region))


def split(sizes: Mapping[str, int], total: int) -> dict[str, int]:
    """`total` loaded entities split across the libraries in proportion to `sizes`, at least
    `MINIMUM_PER_LIBRARY` each."""
    if total < MINIMUM_PER_LIBRARY * len(sizes):
        raise ValueError(f"--entities {total} is too few: load at least {MINIMUM_PER_LIBRARY} per library "
                         f"({MINIMUM_PER_LIBRARY * len(sizes)} in all)")
    whole = sum(sizes.values())
    return {library: max(MINIMUM_PER_LIBRARY, round(total * count / whole)) for library, count in sizes.items()}


def events_by_source(events: list[Event]) -> Iterator[tuple[tuple[str, str], list[Event]]]:
    """The events grouped by (library, source), in the order each group first appears."""
    groups: dict[tuple[str, str], list[Event]] = {}
    for event in events:
        groups.setdefault((event.library, event.source), []).append(event)
    yield from groups.items()
