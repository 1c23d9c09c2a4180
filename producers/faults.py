"""Faults that the generator plants in flat records, one per faulty record.

Each kind is one the validator is known to catch, chosen from those that apply to the
record at hand (its fields, its operation, the publishing department). The record is
not marked: whether the validator finds the fault is exactly what tests check.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from govbus.schemas import rules
from govbus.schemas.registry import SchemaVersion

UNKNOWN_DIVISION = "990101"  # no province has code 99
ENUM_RULES = frozenset({"sex", "ethnicity", "marital_status", "education_level", "entity_status",
                        "tax_status", "certificate_status", "credit_record_kind"})
Fault = Callable[[dict[str, Any]], None]


def _break_check_character(value: str) -> str:
    alphabet = "0123456789X" if value[:17].isdigit() else rules.CREDIT_CHARSET
    return value[:-1] + next(char for char in alphabet if char != value[-1])


def _move_to_unknown_division(value: str, rule: str) -> str:
    if rule == "citizen_id":
        birth = rules.citizen_id_birth_date(value) or date(1980, 1, 1)
        return rules.make_citizen_id(UNKNOWN_DIVISION, birth, int(value[14:17]))
    if rule == "credit_code":
        return rules.make_credit_code(value[0], value[1], UNKNOWN_DIVISION, value[8:16])
    return UNKNOWN_DIVISION


class FaultInjector:
    """Plants one applicable fault in a flat record, drawing from the generator's stream."""

    def __init__(self, schema: SchemaVersion, publisher: str, rng: random.Random, start: date) -> None:
        self.rng, self.start, self.key = rng, start, schema.entity_key
        fields = schema.fields.values()
        self.by_rule = {p.name: p.rule for p in fields if p.rule}
        self.required = {p.name: p.required_on for p in fields if p.authority == publisher}
        self.ordered = [(p.name, p.not_before) for p in fields if p.not_before]

    def candidates(self, flat: dict[str, Any]) -> list[Fault]:
        """Every fault that applies to this record."""
        op = str(flat.get("op", "upsert")).upper()
        present = [n for n, v in flat.items() if v is not None and (op != "DELETE" or n == self.key)]
        faults: list[Fault] = [self._valid_after_recorded]
        for name in present:
            rule = self.by_rule.get(name)
            if rule in ("citizen_id", "credit_code"):
                faults.append(lambda record, n=name: self._check_character(record, n))
            if rule in ("citizen_id", "credit_code", "division_code"):
                faults.append(lambda record, n=name, r=rule: self._unknown_division(record, n, r))
            if rule == "not_in_future":
                faults.append(lambda record, n=name: self._future_date(record, n))
            if rule in ENUM_RULES:
                faults.append(lambda record, n=name: record.__setitem__(n, "unknown"))
            if rule == "sha256_hex":
                faults.append(lambda record, n=name: record.__setitem__(n, record[n][:-1]))
            if self.required.get(name):  # left out of a partial upsert is fine; cleared is not
                faults.append(lambda record, n=name: record.__setitem__(n, None))
        if op != "DELETE":
            faults.append(lambda record: record.__setitem__("remark", "备注"))
            for name, other in self.ordered:
                if flat.get(name) is not None and flat.get(other) is not None:
                    faults.append(lambda record, n=name, o=other: self._before(record, n, o))
        return faults

    def inject(self, flat: dict[str, Any]) -> None:
        self.rng.choice(self.candidates(flat))(flat)

    def _check_character(self, record: dict[str, Any], name: str) -> None:
        record[name] = _break_check_character(record[name])

    def _unknown_division(self, record: dict[str, Any], name: str, rule: str) -> None:
        record[name] = _move_to_unknown_division(record[name], rule)

    def _future_date(self, record: dict[str, Any], name: str) -> None:
        record[name] = date.fromordinal(date(2090, 1, 1).toordinal() + self.rng.randrange(3650)).isoformat()

    def _before(self, record: dict[str, Any], name: str, other: str) -> None:
        earlier = date.fromisoformat(record[other]) - timedelta(days=self.rng.randrange(1, 3650))
        record[name] = earlier.isoformat()

    def _valid_after_recorded(self, record: dict[str, Any]) -> None:
        recorded = date.fromisoformat(str(record["recorded_at"])[:10])
        record["valid_from"] = (recorded + timedelta(days=30)).isoformat()
