"""Schema evolution checks, with the Apache `avro` package's reader/writer checker.

Subscribers upgrade at their own pace, so each version of a library must be able to read
what the previous version wrote (backward) and the previous version must be able to read
what the new one writes (forward), for every pair of versions: full transitive
compatibility.
The checker is an independent implementation from fastavro, which the codec uses; a schema
that both accept is one the whole bus can live with.
"""

from __future__ import annotations

import json

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from .registry import SchemaRegistry, SchemaVersion, default_registry


def apache_schema(version: SchemaVersion) -> avro.schema.Schema:
    """The expanded schema parsed by the Apache implementation."""
    return avro.schema.parse(json.dumps(version.schema))


def reading_problems(reader: SchemaVersion, writer: SchemaVersion) -> list[str]:
    """Why `reader` cannot read data written with `writer` (empty when it can)."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(
        apache_schema(reader), apache_schema(writer))
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    locations = sorted(result.locations - {"/"}) or ["/"]
    where = ", ".join(field_path(reader.schema, location) for location in locations)
    reasons = "; ".join(sorted(result.messages)) or ", ".join(
        kind.name for kind in result.incompatibilities)
    return [f"{reader.library} v{reader.version} cannot read data written by "
            f"v{writer.version} ({reader.path.name} against {writer.path.name}) "
            f"at {where}: {reasons}"]


def field_path(schema: dict, location: str) -> str:
    """Turn the checker's location (`/fields/9/type/fields/7/type/1`) into field names
    (`data.household_address`), so that the message says which field breaks."""
    names: list[str] = []
    node: object = schema
    steps = [step for step in location.split("/") if step]
    for step, following in zip(steps, steps[1:] + [""]):
        if isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        elif isinstance(node, dict) and step in node:
            node = node[step]
        else:
            break
        if step.isdigit() and following == "type" and isinstance(node, dict) and "name" in node:
            names.append(node["name"])
    return "field " + ".".join(names) if names else location


def check_library(registry: SchemaRegistry, library: str) -> list[str]:
    """Backward and forward problems between every older and newer version (transitive:
    a subscriber may lag more than one version behind)."""
    versions = [registry.get(library, number) for number in registry.versions(library)]
    problems: list[str] = []
    for index, older in enumerate(versions):
        for newer in versions[index + 1:]:
            problems += reading_problems(newer, older)
            problems += reading_problems(older, newer)
    return problems


def check_all(registry: SchemaRegistry | None = None) -> list[str]:
    """Human-readable problems for every library; an empty list means all is well."""
    registry = registry or default_registry()
    problems: list[str] = []
    for library in registry.libraries():
        problems += check_library(registry, library)
    return problems
