"""The topic catalog: YAML files validated into one typed model.

A base library is added by dropping ``<library>.yaml`` into the catalog folder (and its
schema into ``schemas/``); no code changes. ``departments.yaml`` registers departments and
purposes; ``bus.yaml`` holds the per-library topic defaults and the bus's own topics.
A bad file is refused with the file, the field and the reason.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from govbus.errors import GovbusError
from govbus.topics.names import TopicNames

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
TopicKind = Literal["ingest", "shared", "state", "dlq", "audit_heads", "deliver"]
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


class Library(_Strict):
    library: Identifier
    name: Names
    owner: Identifier
    partitions: int = Field(ge=1)
    replication_factor: int = Field(ge=1)
    freshness: Freshness
    sources: dict[Identifier, Source] = Field(min_length=1)
    topics: dict[TopicKind, TopicTemplate] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _owner_is_a_source(self) -> Library:
        if self.owner not in self.sources:
            raise ValueError(f"owner {self.owner!r} must also be listed under sources")
        return self


class Departments(_Strict):
    departments: dict[Identifier, Names] = Field(min_length=1)
    purposes: dict[Identifier, Names] = Field(min_length=1)


class Bus(_Strict):
    library_topics: dict[TopicKind, TopicTemplate]
    min_insync_replicas: int = Field(ge=1)
    topics: dict[str, TopicTemplate]


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

    def _library_topic(self, library: Library, kind: TopicKind, name: str) -> TopicSpec:
        default = self.bus.library_topics.get(kind, TopicTemplate())
        override = library.topics.get(kind, TopicTemplate())
        config = {**default.config, **override.config}
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
            specs.append(self._library_topic(library, "audit_heads", names.audit_heads(library.library)))
        replication = max((lib.replication_factor for lib in self.libraries.values()), default=1)
        for topic, template in self.bus.topics.items():
            specs.append(TopicSpec(name=names.bus(topic), partitions=template.partitions or 1,
                                   replication_factor=replication, config=_config_strings(template.config)))
        return specs

    def delivery_topic(self, names: TopicNames, department: str, library: str) -> TopicSpec:
        return self._library_topic(self.library(library), "deliver", names.deliver(department, library))


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
