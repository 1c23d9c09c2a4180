"""The schemas of the base libraries, loaded from `schemas/<library>/v<N>.avsc`.

A version file is an Avro record with an `"envelope": "govbus.Envelope"` attribute and one
field, `data`. Loading expands it: the fields of `envelope.avsc` go first, so every file
resolves to one full, standalone schema that any Avro implementation can parse. The data
fields carry the sharing metadata (sharing class, authority, sensitivity, rule, mask); the
registry checks it on load and refuses a file with a message naming the file and field, so
that a wrong schema stops the bus at start-up instead of leaking a field later.

Departments and purposes are the catalog's business: pass `known_departments` to check
authorities; the purposes a field's `mask_for` may name are the catalog's
(`topics/departments.yaml`, their one home) unless `purposes` are given.

Why one module of about 300 lines: loading, composing and looking up versions by fingerprint are one registry's state; split, each part would need the others' caches.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from . import evolution, masks, rules

SHARING_CLASSES = ("unconditional", "conditional", "not_shared")
SENSITIVITIES = ("public", "internal", "personal", "sensitive")
OPERATIONS = ("UPSERT", "DELETE", "SNAPSHOT")
ENVELOPE_NAME = "govbus.Envelope"
SCHEMA_DIRECTORY = Path(__file__).parent
NOT_LIBRARIES = frozenset({"writers", "__pycache__"})  # folders beside the libraries' (writers: see writers.py)
_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")


class SchemaError(ValueError):
    """A schema file is malformed or its field metadata is wrong."""


@dataclass(frozen=True, slots=True)
class FieldPolicy:
    """What the bus needs to know about one data field: who owns it and who may see it."""

    name: str
    avro_type: Any  # the non-null branch of the field's union, as JSON
    sharing: str
    authority: str
    sensitivity: str
    rule: str | None = None
    mask: str | None = None
    mask_for: frozenset[str] = frozenset()
    mask_all: bool = False  # "mask_for": "all"
    required_on: frozenset[str] = frozenset()
    not_before: str | None = None
    doc: str = ""
    reviewed_changes: tuple[dict[str, Any], ...] = ()  # see evolution.py: changes to sharing, authority, mask


    def mask_for_purpose(self, purpose: str) -> str | None:
        """The mask rule to apply for a subscription with this purpose, or None."""
        if self.mask and (self.mask_all or purpose in self.mask_for):
            return self.mask
        return None


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One version of one library's schema, expanded and parsed."""

    library: str
    version: int
    path: Path
    schema: dict[str, Any]  # the expanded JSON
    parsed: Any  # fastavro's parsed form
    canonical: str  # Avro parsing canonical form
    fingerprint: bytes  # CRC-64-AVRO of `canonical`, in the spec's (little-endian) byte order
    fields: dict[str, FieldPolicy]
    entity_key: str
    cross_checks: tuple[str, ...]


def load_envelope(directory: Path = SCHEMA_DIRECTORY) -> dict[str, Any]:
    path = directory / "envelope.avsc"
    envelope = _read_json(path)
    if f"{envelope.get('namespace')}.{envelope.get('name')}" != ENVELOPE_NAME:
        raise SchemaError(f"{path}: the envelope record must be named {ENVELOPE_NAME}")
    return envelope


def expand(schema: dict[str, Any], envelope: dict[str, Any], path: Path | str = "?") -> dict[str, Any]:
    """The full schema: envelope fields first, then the file's own fields."""
    if schema.get("envelope") != ENVELOPE_NAME:
        raise SchemaError(f"{path}: needs \"envelope\": \"{ENVELOPE_NAME}\"")
    full = {key: value for key, value in schema.items() if key != "envelope"}
    full["fields"] = copy.deepcopy(envelope["fields"]) + schema.get("fields", [])
    return full


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise SchemaError(f"{path}: cannot read the schema: {error}") from error


def _field_policy(field: dict[str, Any], where: str, known_departments: frozenset[str] | None,
                  purposes: frozenset[str]) -> FieldPolicy:
    def fail(message: str) -> SchemaError:
        return SchemaError(f"{where}: {message}")

    branches = field.get("type")
    if not (isinstance(branches, list) and len(branches) == 2 and branches[0] == "null"
            and "default" in field and field["default"] is None):
        raise fail('every data field must be ["null", T] with "default": null')
    sharing, authority = field.get("sharing"), field.get("authority")
    if sharing not in SHARING_CLASSES:
        raise fail(f"sharing {sharing!r} must be one of {', '.join(SHARING_CLASSES)}")
    if not isinstance(authority, str) or not authority:
        raise fail("needs an authority (the one authoritative department id)")
    if known_departments is not None and authority not in known_departments:
        raise fail(f"authority {authority!r} is not a known department")
    if field.get("sensitivity") not in SENSITIVITIES:
        raise fail(f"sensitivity {field.get('sensitivity')!r} must be one of {', '.join(SENSITIVITIES)}")
    if field.get("rule") is not None and field["rule"] not in rules.RULES:
        raise fail(f"rule {field['rule']!r} is not defined in rules.RULES")
    mask, mask_for = field.get("mask"), field.get("mask_for")
    if (mask is None) != (mask_for is None):
        raise fail('"mask" and "mask_for" go together')
    if mask is not None and mask not in masks.MASKS:
        raise fail(f"mask {mask!r} is not defined in schemas/masks.py MASKS "
                   f"(known: {', '.join(sorted(masks.MASKS))})")
    if mask_for is not None and mask_for != "all" and not (
            isinstance(mask_for, list) and set(mask_for) <= purposes):
        raise fail(f'mask_for must be "all" or a list of purposes from {", ".join(sorted(purposes))}')
    reviewed = field.get(evolution.MARKER, [])
    for problem in evolution.marker_problems(reviewed):
        raise fail(problem)
    required_on = field.get("required_on", [])
    if not set(required_on) <= {"UPSERT", "SNAPSHOT"}:
        raise fail("required_on may only list UPSERT and SNAPSHOT")
    return FieldPolicy(
        name=field["name"], avro_type=branches[1], sharing=sharing, authority=authority,
        sensitivity=field["sensitivity"], rule=field.get("rule"), mask=mask,
        mask_for=frozenset(mask_for) if isinstance(mask_for, list) else frozenset(),
        mask_all=mask_for == "all", required_on=frozenset(required_on),
        not_before=field.get("not_before"), doc=field.get("doc", ""), reviewed_changes=tuple(reviewed))


def _data_record(schema: dict[str, Any], path: Path) -> dict[str, Any]:
    fields = schema.get("fields", [])
    if [field.get("name") for field in fields] != ["data"] or not isinstance(fields[0].get("type"), dict):
        raise SchemaError(f"{path}: a version file has exactly one field, data, holding a record")
    return fields[0]["type"]


def _check_references(record: dict[str, Any], fields: dict[str, FieldPolicy], path: Path) -> None:
    key = record.get("entity_key")
    if key not in fields or fields[key].avro_type != "string":
        raise SchemaError(f"{path}: entity_key {key!r} must name a string data field")
    for name in record.get("cross_checks", []):
        if name not in rules.CROSS_CHECKS:
            raise SchemaError(f"{path}: cross check {name!r} is not defined in rules.CROSS_CHECKS")
    for policy in fields.values():
        other = fields.get(policy.not_before) if policy.not_before else None
        if policy.not_before and (other is None or other.avro_type != policy.avro_type):
            raise SchemaError(f"{path}: field {policy.name}: not_before {policy.not_before!r} "
                              "must name a data field of the same type")


def catalog_purposes() -> tuple[str, ...]:
    """The purposes declared in the catalog this process uses (``GOVBUS_CATALOG_DIR``)."""
    from govbus.settings import get_settings
    from govbus.topics.catalog import declared_purposes

    return declared_purposes(get_settings().catalog_dir)


def load_version(path: Path, library: str, version: int, envelope: dict[str, Any],
                 known_departments: frozenset[str] | None = None,
                 purposes: Iterable[str] | None = None) -> SchemaVersion:
    """Read, check and parse one version file (`purposes`: the catalog's when None)."""
    purposes = catalog_purposes() if purposes is None else purposes
    raw = _read_json(path)
    full, record = expand(raw, envelope, path), _data_record(raw, path)
    envelope_names = {field["name"] for field in envelope["fields"]}
    fields: dict[str, FieldPolicy] = {}
    for field in record.get("fields", []):
        where = f"{path}: field {field.get('name')}"
        if field.get("name") in envelope_names or field.get("name") in fields:
            raise SchemaError(f"{where}: the name is taken by the envelope or another field")
        fields[field["name"]] = _field_policy(field, where, known_departments, frozenset(purposes))
    _check_references(record, fields, path)
    try:
        parsed = parse_schema(full)
    except Exception as error:  # fastavro raises several types; the message is what matters
        raise SchemaError(f"{path}: not a valid Avro schema: {error}") from error
    canonical = to_parsing_canonical_form(parsed)
    return SchemaVersion(
        library=library, version=version, path=path, schema=full, parsed=parsed,
        canonical=canonical, fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
        fields=fields, entity_key=record["entity_key"],
        cross_checks=tuple(record.get("cross_checks", [])))


class SchemaRegistry:
    """Every version of every library found under `directory`, indexed for the codec."""

    def __init__(self, directory: Path | str = SCHEMA_DIRECTORY,
                 known_departments: Iterable[str] | None = None,
                 purposes: Iterable[str] | None = None) -> None:
        self.directory = Path(directory)
        departments = frozenset(known_departments) if known_departments is not None else None
        purposes = tuple(catalog_purposes() if purposes is None else purposes)
        envelope = load_envelope(self.directory)
        self._versions: dict[str, dict[int, SchemaVersion]] = {}
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        for library_dir in sorted(p for p in self.directory.iterdir()
                                  if p.is_dir() and p.name not in NOT_LIBRARIES):
            for path in sorted(library_dir.glob("*.avsc")):
                match = _VERSION_FILE.match(path.name)
                if match is None:
                    raise SchemaError(f"{path}: version files are named v<N>.avsc")
                loaded = load_version(path, library_dir.name, int(match[1]), envelope,
                                      departments, purposes)
                self._add(loaded)
        problems = [problem for library in self.libraries() for problem in self._evolution_problems(library)]
        if problems:
            raise SchemaError("\n".join(problems))

    def _evolution_problems(self, library: str) -> list[str]:
        """Why a version may not follow its predecessor (see evolution.py): checked at load,
        so that the bus never runs with an incompatible or unreviewed version."""
        versions = [self._versions[library][number] for number in self.versions(library)]
        return [problem for older, newer in zip(versions, versions[1:])
                for problem in evolution.evolution_problems(older, newer)]

    def _add(self, loaded: SchemaVersion) -> None:
        clash = self._by_fingerprint.get(loaded.fingerprint)
        if clash is not None:
            raise SchemaError(f"{loaded.path}: same canonical schema as {clash.path}")
        self._versions.setdefault(loaded.library, {})[loaded.version] = loaded
        self._by_fingerprint[loaded.fingerprint] = loaded

    def libraries(self) -> tuple[str, ...]:
        return tuple(sorted(self._versions))

    def versions(self, library: str) -> tuple[int, ...]:
        return tuple(sorted(self._library(library)))

    def latest(self, library: str) -> SchemaVersion:
        versions = self._library(library)
        return versions[max(versions)]

    def get(self, library: str, version: int | None = None) -> SchemaVersion:
        """One version; the latest when `version` is None."""
        if version is None:
            return self.latest(library)
        try:
            return self._library(library)[version]
        except KeyError:
            raise KeyError(f"library {library!r} has no schema version {version}; "
                           f"known: {list(self.versions(library))}") from None

    def by_fingerprint(self, fingerprint_bytes: bytes) -> SchemaVersion | None:
        """The version whose CRC-64-AVRO fingerprint this is, or None."""
        return self._by_fingerprint.get(bytes(fingerprint_bytes))

    def policy(self, library: str, version: int | None = None) -> dict[str, FieldPolicy]:
        """Field name → FieldPolicy (of the latest version unless one is given)."""
        return self.get(library, version).fields

    def entity_key(self, library: str) -> str:
        return self.latest(library).entity_key

    def authoritative_fields(self, library: str, department: str) -> tuple[str, ...]:
        """The data fields for which `department` is the one source, in schema order."""
        return tuple(name for name, policy in self.policy(library).items()
                     if policy.authority == department)

    def departments(self, library: str) -> tuple[str, ...]:
        """Every department that is authoritative for some field, key owner first."""
        fields = self.policy(library)
        owners = [fields[self.entity_key(library)].authority]
        owners += [p.authority for p in fields.values() if p.authority not in owners]
        return tuple(dict.fromkeys(owners))

    def _library(self, library: str) -> dict[int, SchemaVersion]:
        try:
            return self._versions[library]
        except KeyError:
            raise KeyError(f"unknown library {library!r}; known: {list(self.libraries())}") from None


@cache
def default_registry() -> SchemaRegistry:
    """The registry of the packaged schemas, loaded once per process."""
    return SchemaRegistry()
