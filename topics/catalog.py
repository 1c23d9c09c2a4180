"""The topic catalog: YAML files validated into one typed model.

A base library is added by dropping ``<library>.yaml`` into the catalog folder (and its
schema into ``schemas/``); no code changes. ``departments.yaml`` registers departments and
purposes; ``bus.yaml`` holds the per-library topic defaults and the bus's own topics.
A bad file is refused with the file, the field and the reason.

Why one module of about 320 lines: the catalog's typed model and its cross-file checks (sources, authorities, purposes) are one validation; split, a check would lose sight of the files it relates.
"""

from __future__ import annotations

import re
from datetime import timedelta
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from govbus.errors import GovbusError
from govbus.security.credentials import GOVERNANCE
from govbus.topics.names import TopicNames

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
TopicKind = Literal["ingest", "shared", "state", "dlq", "audit_heads", "deliver"]
PrincipalTopicKind = Literal["acts", "objections", "conflicts", "rejections"]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_RESERVED_FILES = {"departments.yaml", "bus.yaml"}
ModelT = TypeVar("ModelT", bound=BaseModel)


class CatalogError(GovbusError, ValueError):
    """A catalog file is wrong; the message names the file, the field and the reason."""


def parse_duration(value: object) -> object:
    """'500ms', '5s', '10m', '24h', '7d' (or a number of seconds) as a timedelta."""
    if isinstance(value, (int, float)):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration like 500ms, 5s, 10m, 24h or 7d")
        return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Names(_Strict):
    zh: str
    en: str


class Freshness(_Strict):
    max_source_lateness: Duration
    max_delivery_latency: Duration


class Source(_Strict):
    cadence: Duration = Field(description="How often the source publishes or sends a heartbeat at least.")


class TopicTemplate(_Strict):
    partitions: int | None = Field(None, ge=1)
    config: dict[str, str | int] = Field(default_factory=dict)


DEAD_LETTER_RETENTION = timedelta(days=90)
# A dead letter can outlive its retention by the age of its log segment (the broker deletes
# whole segments; ``segment.ms`` is 7 days by default): the replay marks outlive it by more.
REPLAY_MARK_MARGIN = timedelta(days=30)


class DeadLetters(_Strict):
    """How long ``dlq.<library>`` keeps a dead letter: long enough for the operators to fix its
    cause and replay it, not for ever — it holds the original event, personal data included,
    which the ingest topic itself keeps only 7 days. ``forever`` keeps every one."""

    retention: Duration | Literal["forever"] = DEAD_LETTER_RETENTION

    def retention_ms(self, margin: timedelta = timedelta(0)) -> int:
        """``retention.ms`` for the topic (-1 for ever), `margin` added."""
        if self.retention == "forever":
            return -1
        return int((self.retention + margin).total_seconds() * 1000)


def _no_dlq_retention_ms(topics: Mapping[str, TopicTemplate]) -> None:
    """One home for the dead letters' retention: ``dead_letters.retention``, not the topic config."""
    if "retention.ms" in topics.get("dlq", TopicTemplate()).config:
        raise ValueError("dlq: set how long dead letters are kept with dead_letters: {retention: …}, "
                         "not with retention.ms in the topic config")


class LifeEventRule(_Strict):
    """How a life event shows in one field, comparing the golden record before and after a change:
    ``set`` — it had no value and now has one (a death date recorded); ``changed`` — it had a
    value and now has another or none (a household moved); ``into`` — it now has one of
    `values` and before had none of them (a company deregistered or its licence revoked)."""

    field: Identifier
    change: Literal["set", "changed", "into"]
    values: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _values_with_into(self) -> LifeEventRule:
        if (self.change == "into") != bool(self.values):
            raise ValueError("list values: [...] with change: into, and only then")
        return self


class LifeEvent(_Strict):
    """A life event derived from a library's changes (``processors/lifeevents.py``): that
    something happened to an entity, and nothing more than its `payload` fields (最小必要).
    `date`: the field whose value is the day it happened (else the change's valid_from);
    `region`: which image's region a subscription's region filter is matched against
    (``before`` for a move out of a region)."""

    doc: str
    when: LifeEventRule
    payload: tuple[Identifier, ...] = ()
    date: Identifier | None = None
    region: Literal["before", "after"] = "after"

    def fields(self) -> tuple[str, ...]:
        """Every field the event reveals something of: what its subscribers must be entitled to."""
        return tuple(dict.fromkeys([self.when.field, *self.payload, *([self.date] if self.date else [])]))


class Library(_Strict):
    library: Identifier
    name: Names
    owner: Identifier
    partitions: int = Field(ge=1)
    replication_factor: int = Field(ge=1)
    freshness: Freshness
    sources: dict[Identifier, Source] = Field(min_length=1)
    topics: dict[TopicKind, TopicTemplate] = Field(default_factory=dict)
    dead_letters: DeadLetters | None = None  # this library's own, else the bus's
    region_field: Identifier | None = None  # the field a subscription's `region=` filter means here
    life_events: dict[Identifier, LifeEvent] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _owner_is_a_source(self) -> Library:
        if self.owner not in self.sources:
            raise ValueError(f"owner {self.owner!r} must also be listed under sources")
        _no_dlq_retention_ms(self.topics)
        return self


class Departments(_Strict):
    departments: dict[Identifier, Names] = Field(min_length=1)
    purposes: dict[Identifier, Names] = Field(min_length=1)


class Bus(_Strict):
    library_topics: dict[TopicKind, TopicTemplate]
    min_insync_replicas: int = Field(ge=1)
    topics: dict[str, TopicTemplate]
    principal_topics: dict[PrincipalTopicKind, TopicTemplate] = Field(default_factory=dict)
    dead_letters: DeadLetters = DeadLetters()

    @model_validator(mode="after")
    def _one_home_for_dead_letter_retention(self) -> Bus:
        _no_dlq_retention_ms(self.library_topics)
        return self


class TopicSpec(BaseModel):
    """One topic as the catalog wants it on the cluster."""

    model_config = ConfigDict(frozen=True)
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


class Catalog(BaseModel):
    """Everything the catalog folder says, cross-checked."""

    model_config = ConfigDict(frozen=True)
    departments: dict[str, Names]
    purposes: dict[str, Names]
    libraries: dict[str, Library]
    bus: Bus

    def library(self, library: str) -> Library:
        try:
            return self.libraries[library]
        except KeyError:
            raise CatalogError(f"unknown library {library!r}; the catalog has {', '.join(sorted(self.libraries))}") from None

    def require_department(self, department: str) -> None:
        if department not in self.departments:
            raise CatalogError(f"unknown department {department!r}; the catalog has {', '.join(sorted(self.departments))}")

    def dead_letters(self, library: str) -> DeadLetters:
        """The library's dead-letter setting: its own file's, else ``bus.yaml``'s, else 90 days."""
        return self.library(library).dead_letters or self.bus.dead_letters

    def _library_topic(self, library: Library, kind: TopicKind, name: str) -> TopicSpec:
        default = self.bus.library_topics.get(kind, TopicTemplate())
        override = library.topics.get(kind, TopicTemplate())
        config = {**default.config, **override.config}
        if kind == "dlq":
            config["retention.ms"] = self.dead_letters(library.library).retention_ms()
        partitions = override.partitions or default.partitions or library.partitions
        return TopicSpec(name=name, partitions=partitions, replication_factor=library.replication_factor,
                         config=_config_strings(config))

    def topic_specs(self, names: TopicNames) -> list[TopicSpec]:
        """Every topic the catalog implies, except delivery topics (made on approval)."""
        specs: list[TopicSpec] = []
        for library in self.libraries.values():
            for department in library.sources:
                specs.append(self._library_topic(library, "ingest", names.ingest(library.library, department)))
            specs.append(self._library_topic(library, "shared", names.shared(library.library)))
            specs.append(self._library_topic(library, "state", names.state(library.library)))
            specs.append(self._library_topic(library, "dlq", names.dlq(library.library)))
            specs.append(self.replay_marks_topic(names, library.library))
            specs.append(self._library_topic(library, "audit_heads", names.audit_heads(library.library)))
        replication = max((lib.replication_factor for lib in self.libraries.values()), default=1)
        for topic, template in self.bus.topics.items():
            specs.append(TopicSpec(name=names.bus(topic), partitions=template.partitions or 1,
                                   replication_factor=replication, config=_config_strings(template.config)))
        return specs + self._principal_topics(names, replication)

    def acting_principals(self) -> list[str]:
        """Who says things to the bus through an acts topic: every department, and governance."""
        return [*self.departments, GOVERNANCE]

    def _principal_topics(self, names: TopicNames, replication: int) -> list[TopicSpec]:
        """``control.acts.<principal>`` (only it writes) and ``control.objections.<department>``
        (only it reads): one per principal, so that the broker, not a message field, says who."""
        wanted = [("acts", names.acts(principal)) for principal in self.acting_principals()]
        wanted += [("objections", names.objections_of(department)) for department in self.departments]
        wanted += [("conflicts", names.conflicts_of(department)) for department in self.departments]
        wanted += [("rejections", names.rejections_of(department)) for department in self.departments]
        specs = []
        for kind, name in wanted:
            template = self.bus.principal_topics.get(kind, TopicTemplate())  # type: ignore[call-overload]
            specs.append(TopicSpec(name=name, partitions=template.partitions or 1, replication_factor=replication,
                                   config=_config_strings(template.config)))
        return specs

    def replay_marks_topic(self, names: TopicNames, library: str) -> TopicSpec:
        """``dlq.<library>.replayed``: which dead letters ``govbus dlq replay`` re-sent
        (``processors/governance/replay.py``), kept longer than the dead letters they mark — a mark gone
        before its letter would let the letter be sent again."""
        of = self.library(library)
        retention = self.dead_letters(library).retention_ms(REPLAY_MARK_MARGIN)
        return TopicSpec(name=replay_marks_name(names, library), partitions=1, replication_factor=of.replication_factor,
                         config=_config_strings({"retention.ms": retention}))

    def delivery_topic(self, names: TopicNames, department: str, library: str) -> TopicSpec:
        return self._library_topic(self.library(library), "deliver", names.deliver(department, library))


def replay_marks_name(names: TopicNames, library: str) -> str:
    """The replay marks of ``dlq.<library>`` (under the dead-letter root, so governance reads
    it and ``acl apply`` reconciles it with the bus's other topics)."""
    return f"{names.dlq(library)}.replayed"


def _config_strings(config: dict[str, str | int]) -> dict[str, str]:
    return {key: str(value) for key, value in config.items()}


def load_catalog(directory: Path) -> Catalog:
    """Read and cross-check every file of the catalog folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CatalogError(f"{directory}: the catalog folder does not exist (set GOVBUS_CATALOG_DIR)")
    registry = _parse(directory / "departments.yaml", Departments)
    bus = _parse(directory / "bus.yaml", Bus)
    libraries: dict[str, Library] = {}
    for path in sorted(directory.glob("*.yaml")):
        if path.name in _RESERVED_FILES:
            continue
        library = _parse(path, Library)
        if library.library != path.stem:
            raise CatalogError(f"{path}: library: {library.library!r} must match the file name {path.stem!r}")
        for field, department in [("owner", library.owner), *(("sources", name) for name in library.sources)]:
            if department not in registry.departments:
                raise CatalogError(f"{path}: {field}: unknown department {department!r} (register it in departments.yaml)")
        libraries[library.library] = library
    if not libraries:
        raise CatalogError(f"{directory}: no library files (<library>.yaml) in the catalog")
    return Catalog(departments=registry.departments, purposes=registry.purposes, libraries=libraries, bus=bus)


def declared_purposes(directory: Path) -> tuple[str, ...]:
    """The purposes of use a subscription may declare, from ``departments.yaml`` alone: their
    one home, which the subscription rules and the schema registry (a field's ``mask_for``)
    both read, so that a purpose cannot be known to one and not the other."""
    return tuple(_parse(Path(directory) / "departments.yaml", Departments).purposes)


def _parse(path: Path, model: type[ModelT]) -> ModelT:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"{path}: missing; the catalog needs this file") from None
    except yaml.YAMLError as error:
        raise CatalogError(f"{path}: not valid YAML: {error}") from None
    try:
        return model.model_validate(content if content is not None else {})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or '(top level)'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise CatalogError(f"{path}: {problems}") from None
