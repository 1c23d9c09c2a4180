"""The synthetic source exports, judged by the validator and by the domain's own facts."""

from __future__ import annotations

import itertools
import types
from collections import Counter
from datetime import date

import pytest

from govbus.producers.generate import generate
from govbus.producers.records import RESERVED_KEYS, to_event
from govbus.schemas import divisions, rules
from govbus.schemas.registry import default_registry
from govbus.schemas.validation import validate

LIBRARIES = ("population", "legal_entity", "credit", "certificate")
PUBLISHERS = [(library, department) for library in LIBRARIES
              for department in (None, *default_registry().departments(library))]


def verdicts(library: str, department: str | None, records) -> list[list]:
    """The validator's violations for each flat record, published as the generator means."""
    publisher = department or default_registry().departments(library)[0]
    return [validate(library, to_event(library, publisher, flat, "generator")) for flat in records]


def test_generator_streams_instead_of_building_a_list() -> None:
    stream = generate("population", 10**12, seed=1)
    assert isinstance(stream, types.GeneratorType)
    assert len(list(itertools.islice(stream, 5))) == 5


def test_same_seed_gives_the_same_records_and_another_seed_others() -> None:
    first = list(generate("legal_entity", 50, seed=7, invalid_share=0.3))
    assert first == list(generate("legal_entity", 50, seed=7, invalid_share=0.3))
    assert first != list(generate("legal_entity", 50, seed=8, invalid_share=0.3))


@pytest.mark.parametrize("library, department", PUBLISHERS)
def test_valid_records_pass_the_validator(library: str, department: str | None) -> None:
    found = verdicts(library, department, generate(library, 400, seed=3, department=department))
    assert [v for v in found if v] == []


@pytest.mark.parametrize("library, department", PUBLISHERS)
def test_every_planted_fault_is_caught_by_the_validator(library: str, department: str | None) -> None:
    records = generate(library, 400, seed=4, invalid_share=1.0, department=department)
    assert all(verdicts(library, department, records))


def test_invalid_share_is_the_share_of_rejected_records() -> None:
    rejected = sum(1 for v in verdicts("credit", None, generate("credit", 4000, seed=5, invalid_share=0.25)) if v)
    assert 0.22 < rejected / 4000 < 0.28


def test_faults_cover_every_kind_the_validator_knows() -> None:
    records = generate("population", 3000, seed=6, invalid_share=1.0)
    kinds = Counter(v.rule for found in verdicts("population", None, records) for v in found)
    assert {"citizen_id", "division_code", "not_in_future", "marital_status", "sex", "required",
            "not_before", "sha256_hex", "unknown_field", "not_after_recorded"} <= set(kinds)


def test_department_export_holds_only_its_fields_and_the_key() -> None:
    allowed = {"citizen_id", "marital_status", "marriage_registration_date"} | RESERVED_KEYS
    for flat in generate("population", 100, seed=2, department="civil_affairs"):
        assert set(flat) <= allowed and "citizen_id" in flat


def test_deletions_name_only_the_entity() -> None:
    flat = next(generate("certificate", 1, seed=2, op="delete"))
    assert set(flat) - RESERVED_KEYS == {"certificate_number"}


def test_people_are_plausible() -> None:
    for flat in generate("population", 500, seed=9):
        assert rules.citizen_id_birth_date(flat["citizen_id"]).isoformat() == flat["date_of_birth"]
        assert flat["household_region"] in divisions.current_codes()
        assert 2 <= len(flat["name"]) <= 4 and all("\u4e00" <= c <= "\u9fff" for c in flat["name"])
        if flat["marriage_registration_date"]:
            married = date.fromisoformat(flat["marriage_registration_date"])
            assert married.year - date.fromisoformat(flat["date_of_birth"]).year >= 22


def test_records_are_generated_one_by_one_so_a_province_sized_count_streams() -> None:
    """A count of ten million gives its first records at once: nothing is built up front
    (timed asserts fail on a loaded machine; speed is the bench's business)."""
    records = generate("population", 10_000_000, seed=1, invalid_share=0.1)
    first = list(itertools.islice(records, 1_000))
    assert len(first) == 1_000 and len({record["citizen_id"] for record in first}) > 900
