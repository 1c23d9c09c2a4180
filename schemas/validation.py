"""Checks a change event before it is published and again at the gate.

`validate(library, event)` returns every problem found, not just the first, so that a
rejected event in the dead-letter topic tells its owner all that must be fixed at once.
What is checked:
- the envelope: types, a UUID event id, a known operation, a non-negative sequence,
  timezone-aware timestamps, `recorded_at` not in the future and `valid_from` not after it
  (both with `CLOCK_SKEW` of tolerance);
- `fields_set`: only schema fields, no duplicates, no value given for an unlisted field;
- per operation: DELETE carries no fields; UPSERT and SNAPSHOT set at least one, the key
  field (when set) equals `entity_id`, and when the event comes from a field's authority
  every field whose `required_on` lists the operation is set to a non-null value;
- every non-null set field: its Avro type, then its domain `rule`, `not_before` ordering
  and the record's `cross_checks` (see rules.py).
Authority (whether the department may set these fields at all) is the gate's own check.

Everything that depends only on the schema is computed once per library and version.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from . import rules
from .registry import FieldPolicy, SchemaRegistry, SchemaVersion, default_registry

CLOCK_SKEW = timedelta(minutes=5)
OPERATIONS = frozenset({"UPSERT", "DELETE", "SNAPSHOT"})
_LONG = range(-(2**63), 2**63)
_INT = range(-(2**31), 2**31)


@dataclass(frozen=True, slots=True)
class Violation:
    """One problem: the field (envelope or data field name), its value, what rule it broke."""

    field: str
    value: Any
    rule: str
    message: str


TypeCheck = Callable[[Any], bool]


def _is_integer(value: Any, bounds: range) -> bool:
    return type(value) is int and value in bounds


def _is_aware_datetime(value: Any) -> bool:
    return isinstance(value, datetime) and value.tzinfo is not None


def type_check(avro_type: Any) -> tuple[TypeCheck, str]:
    """A predicate for Python values of an Avro type, and the type's description."""
    logical = avro_type.get("logicalType") if isinstance(avro_type, dict) else None
    if logical == "date":
        return (lambda v: isinstance(v, date) and not isinstance(v, datetime)), "a date"
    if logical in ("timestamp-millis", "timestamp-micros"):
        return _is_aware_datetime, "a timezone-aware datetime"
    if isinstance(avro_type, dict) and avro_type.get("type") == "array":
        item_check, item_name = type_check(avro_type["items"])
        return (lambda v: isinstance(v, list) and all(map(item_check, v))), f"a list of {item_name}s"
    simple = avro_type.get("type") if isinstance(avro_type, dict) else avro_type
    checks: dict[str, tuple[TypeCheck, str]] = {
        "string": (lambda v: isinstance(v, str), "a string"),
        "long": (lambda v: _is_integer(v, _LONG), "a 64-bit integer"),
        "int": (lambda v: _is_integer(v, _INT), "a 32-bit integer"),
        "boolean": (lambda v: isinstance(v, bool), "a boolean"),
        "double": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
        "bytes": (lambda v: isinstance(v, bytes), "bytes"),
    }
    return checks.get(simple, (lambda v: True, str(simple)))


@dataclass(frozen=True, slots=True)
class _FieldCheck:
    name: str
    check: TypeCheck
    type_name: str
    rule_name: str | None
    rule: rules.Rule | None
    not_before: str | None


class LibraryValidator:
    """The checks of one library version, precomputed from its schema."""

    def __init__(self, schema: SchemaVersion, known_departments: Iterable[str] | None = None) -> None:
        self.schema = schema
        self.key = schema.entity_key
        self.departments = frozenset(known_departments) if known_departments is not None else None
        self.fields = {name: self._field_check(policy) for name, policy in schema.fields.items()}
        self.key_field = self.fields[self.key]
        self.cross_checks = [(name, rules.CROSS_CHECKS[name]) for name in schema.cross_checks]
        self.required: dict[tuple[str, str], tuple[str, ...]] = {}
        for policy in schema.fields.values():
            for op in policy.required_on:
                entry = (policy.authority, op)
                self.required[entry] = self.required.get(entry, ()) + (policy.name,)
        # A field required on some operation may be left out of a partial UPSERT, never cleared.
        self.never_cleared: dict[str, tuple[str, ...]] = {}
        for policy in schema.fields.values():
            if policy.required_on:
                self.never_cleared[policy.authority] = self.never_cleared.get(policy.authority, ()) + (policy.name,)

    @staticmethod
    def _field_check(policy: FieldPolicy) -> _FieldCheck:
        check, type_name = type_check(policy.avro_type)
        rule = rules.RULES[policy.rule] if policy.rule else None
        return _FieldCheck(policy.name, check, type_name, policy.rule, rule, policy.not_before)

    def validate(self, event: Mapping[str, Any]) -> list[Violation]:
        if not isinstance(event, Mapping):
            return [Violation("event", event, "type", "an event is a mapping of envelope fields")]
        found: list[Violation] = []
        key_ok = self._check_envelope(event, found)
        op, fields_set = event.get("op"), event.get("fields_set")
        data = event.get("data")
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            found.append(Violation("data", data, "type", "data must be a mapping of field values"))
            return found
        if not isinstance(fields_set, list) or not all(isinstance(n, str) for n in fields_set):
            found.append(Violation("fields_set", fields_set, "type", "fields_set must be a list of field names"))
            return found
        listed = self._check_listing(fields_set, data, found)
        if op == "DELETE":
            if fields_set:
                found.append(Violation("fields_set", fields_set, "delete_has_fields",
                                       "a DELETE carries no data fields"))
            return found
        if op in OPERATIONS and not fields_set:
            found.append(Violation("fields_set", fields_set, "empty_fields_set",
                                   f"an {op} must set at least one field"))
        proven = event.get("entity_id") if key_ok else None  # its key rule already passed
        checked = self._check_values(listed, data, found, proven)
        self._check_relations(event, checked, found)
        return found

    def _check_envelope(self, event: Mapping[str, Any], found: list[Violation]) -> bool:
        """Checks the envelope fields; True when entity_id passed the key's rule."""
        event_id, entity_id = event.get("event_id"), event.get("entity_id")
        key_ok = False
        if not _is_uuid(event_id):
            found.append(Violation("event_id", event_id, "uuid", "event_id must be a UUID string"))
        if not isinstance(entity_id, str) or not entity_id:
            found.append(Violation("entity_id", entity_id, "type", "entity_id must be a non-empty string"))
        elif self.key_field.rule is not None and (message := self.key_field.rule(entity_id)):
            found.append(Violation("entity_id", entity_id, self.key_field.rule_name or "", message))
        else:
            key_ok = True
        if event.get("op") not in OPERATIONS:
            found.append(Violation("op", event.get("op"), "type", "op must be UPSERT, DELETE or SNAPSHOT"))
        for name in ("source_department", "source_system"):
            if not isinstance(event.get(name), str) or not event.get(name):
                found.append(Violation(name, event.get(name), "type", f"{name} must be a non-empty string"))
        department = event.get("source_department")
        if self.departments is not None and isinstance(department, str) and department not in self.departments:
            found.append(Violation("source_department", department, "unknown_department",
                                   f"{department!r} is not a department in the catalog"))
        if not _is_integer(event.get("sequence"), range(0, 2**63)):
            found.append(Violation("sequence", event.get("sequence"), "type",
                                   "sequence must be a non-negative 64-bit integer"))
        self._check_times(event.get("valid_from"), event.get("recorded_at"), found)
        return key_ok

    @staticmethod
    def _check_times(valid_from: Any, recorded_at: Any, found: list[Violation]) -> None:
        latest = datetime.now(timezone.utc) + CLOCK_SKEW
        if not _is_aware_datetime(recorded_at):
            found.append(Violation("recorded_at", recorded_at, "type",
                                   "recorded_at must be a timezone-aware datetime"))
        elif recorded_at > latest:
            found.append(Violation("recorded_at", recorded_at, "not_in_future",
                                   "recorded_at is in the future: check the source system's clock"))
        if valid_from is None:
            return
        if not _is_aware_datetime(valid_from):
            found.append(Violation("valid_from", valid_from, "type",
                                   "valid_from must be null or a timezone-aware datetime"))
        elif _is_aware_datetime(recorded_at) and valid_from > recorded_at + CLOCK_SKEW:
            found.append(Violation("valid_from", valid_from, "not_after_recorded",
                                   "valid_from is after recorded_at: a fact is recorded once it is true"))

    def _check_listing(self, fields_set: list[str], data: Mapping[str, Any],
                       found: list[Violation]) -> list[str]:
        listed: list[str] = []
        seen: set[str] = set()
        for name in fields_set:
            if name not in self.fields:
                found.append(Violation(name, data.get(name), "unknown_field",
                                       f"{name!r} is not a field of {self.schema.library} v{self.schema.version}"))
            elif name in seen:
                found.append(Violation(name, data.get(name), "duplicate_field", f"{name!r} is listed twice"))
            else:
                listed.append(name)
            seen.add(name)
        for name, value in data.items():
            if value is not None and name not in seen:
                rule = "unknown_field" if name not in self.fields else "unlisted_value"
                found.append(Violation(name, value, rule,
                                       "a value is given for a field that fields_set does not list"))
        return listed

    def _check_values(self, listed: list[str], data: Mapping[str, Any],
                      found: list[Violation], proven_key: Any) -> dict[str, Any]:
        checked: dict[str, Any] = {}
        for name in listed:
            value = data.get(name)
            if value is None:
                continue
            field = self.fields[name]
            if not field.check(value):
                found.append(Violation(name, value, "type", f"{name} must be {field.type_name}"))
                continue
            if name == self.key and value == proven_key:
                pass
            elif field.rule is not None and (message := field.rule(value)) is not None:
                found.append(Violation(name, value, field.rule_name or "", message))
                continue
            checked[name] = value
        return checked

    def _check_relations(self, event: Mapping[str, Any], checked: dict[str, Any],
                         found: list[Violation]) -> None:
        data, fields_set = event.get("data") or {}, event["fields_set"]
        key_value = data.get(self.key)
        if self.key in fields_set and key_value is not None and key_value != event.get("entity_id"):
            found.append(Violation(self.key, key_value, "entity_key",
                                   f"{self.key} differs from entity_id {event.get('entity_id')!r}"))
        source, op = event.get("source_department"), event.get("op")
        required = self.required.get((source, op), ()) if isinstance(source, str) else ()
        for name in required:
            if data.get(name) is None:
                found.append(Violation(name, None, "required",
                                       f"{name} is required on {op} from its authority {source}"))
        for name in self.never_cleared.get(source, ()) if isinstance(source, str) else ():
            if name in fields_set and data.get(name) is None and name not in required:
                found.append(Violation(name, None, "required",
                                       f"{name} may not be cleared by {source}: every record needs it"))
        for name, value in checked.items():
            other = self.fields[name].not_before
            if other and other in checked and value < checked[other]:
                found.append(Violation(name, value, "not_before", f"{name} is before {other}"))
        for check_name, check in self.cross_checks:
            for field, value, message in check(checked):
                found.append(Violation(field, value, check_name, message))


# The canonical forms, told apart without building a UUID; other text is left to uuid.UUID.
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32}")


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str) or len(value) not in (32, 36):
        return False
    try:
        return bool(_CANONICAL_UUID.fullmatch(value)) or uuid.UUID(value) is not None
    except ValueError:
        return False


class Validator:
    """Validators for every library of a registry, built on first use."""

    def __init__(self, registry: SchemaRegistry | None = None,
                 known_departments: Iterable[str] | None = None) -> None:
        self.registry = registry or default_registry()
        self.known_departments = known_departments
        self._by_version: dict[tuple[str, int | None], LibraryValidator] = {}

    def for_library(self, library: str, version: int | None = None) -> LibraryValidator:
        found = self._by_version.get((library, version))
        if found is None:
            schema = self.registry.get(library, version)
            found = LibraryValidator(schema, self.known_departments)
            self._by_version[(library, version)] = found
        return found

    def validate(self, library: str, event: Mapping[str, Any], version: int | None = None) -> list[Violation]:
        return self.for_library(library, version).validate(event)


_default: Validator | None = None


def validate(library: str, event: Mapping[str, Any], version: int | None = None) -> list[Violation]:
    """Every problem of `event` against `library`'s schema (latest version unless given)."""
    global _default
    if _default is None:
        _default = Validator()
    return _default.validate(library, event, version)
