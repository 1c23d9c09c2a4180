"""The event validator: envelope, fields_set, operations, types, rules and relations."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govbus.schemas.validation import Validator, _is_uuid, validate

NOW = datetime(2024, 6, 1, 9, 0, tzinfo=timezone.utc)
CITIZEN = "11010519491231002X"


def population_event(**changes: object) -> dict:
    data = {"citizen_id": CITIZEN, "name": "张三", "sex": "female", "date_of_birth": date(1949, 12, 31)}
    event = {"event_id": str(uuid.uuid4()), "entity_id": CITIZEN, "op": "UPSERT",
             "fields_set": list(data), "source_department": "public_security",
             "source_system": "hukou", "sequence": 3, "valid_from": NOW - timedelta(days=1),
             "recorded_at": NOW, "data": data}
    event.update(changes)
    return event


def rules_broken(event: dict, library: str = "population") -> set[tuple[str, str]]:
    return {(violation.field, violation.rule) for violation in validate(library, event)}


def test_complete_event_from_the_authority_has_no_violations() -> None:
    assert validate("population", population_event()) == []


def test_partial_update_from_another_department_has_no_violations() -> None:
    event = population_event(source_department="civil_affairs", fields_set=["marital_status"],
                             data={"marital_status": "married"})
    assert validate("population", event) == []


def test_violation_names_field_value_rule_and_message() -> None:
    event = population_event(source_department="civil_affairs", fields_set=["marital_status"],
                             data={"marital_status": "cohabiting"})
    [violation] = validate("population", event)
    assert (violation.field, violation.value, violation.rule) == ("marital_status", "cohabiting", "marital_status")
    assert "expected one of" in violation.message


def test_field_not_in_the_schema_is_reported() -> None:
    event = population_event()
    event["fields_set"].append("blood_type")
    event["data"]["blood_type"] = "A"
    assert ("blood_type", "unknown_field") in rules_broken(event)


def test_value_for_a_field_that_fields_set_does_not_list_is_reported() -> None:
    event = population_event()
    event["data"]["ethnicity"] = "汉族"
    assert ("ethnicity", "unlisted_value") in rules_broken(event)


def test_field_listed_twice_is_reported() -> None:
    event = population_event()
    event["fields_set"].append("name")
    assert ("name", "duplicate_field") in rules_broken(event)


def test_delete_needs_only_entity_id_and_sequence() -> None:
    assert validate("population", population_event(op="DELETE", fields_set=[], data={})) == []
    assert ("fields_set", "delete_has_fields") in rules_broken(population_event(op="DELETE"))


def test_upsert_without_fields_is_reported() -> None:
    event = population_event(fields_set=[], data={}, source_department="civil_affairs")
    assert rules_broken(event) == {("fields_set", "empty_fields_set")}


def test_key_field_that_differs_from_entity_id_is_reported() -> None:
    event = population_event(entity_id="440524188001010014")
    assert ("citizen_id", "entity_key") in rules_broken(event)


def test_entity_id_is_checked_by_the_key_rule_even_on_delete() -> None:
    event = population_event(op="DELETE", fields_set=[], data={}, entity_id="110105194912310021")
    assert rules_broken(event) == {("entity_id", "citizen_id")}


def test_required_field_missing_from_an_authority_snapshot_is_reported() -> None:
    event = {**population_event(), "op": "SNAPSHOT"}
    del event["data"]["name"]
    event["fields_set"].remove("name")
    assert rules_broken(event) == {("name", "required")}


def test_a_partial_upsert_may_leave_required_fields_out() -> None:
    event = population_event()
    for name in ("name", "sex", "date_of_birth"):
        del event["data"][name]
        event["fields_set"].remove(name)
    assert rules_broken(event) == set()


def test_required_field_set_to_null_by_the_authority_is_reported() -> None:
    event = population_event()
    event["data"]["name"] = None
    assert rules_broken(event) == {("name", "required")}


def test_value_of_the_wrong_type_is_reported_without_running_its_rule() -> None:
    event = population_event()
    event["data"]["date_of_birth"] = "1949-12-31"
    assert rules_broken(event) == {("date_of_birth", "type")}


def test_domain_rules_run_on_set_fields() -> None:
    event = population_event()
    event["fields_set"].append("household_region")
    event["data"]["household_region"] = "999999"
    assert rules_broken(event) == {("household_region", "division_code")}


def test_death_before_birth_is_reported() -> None:
    event = population_event()
    event["fields_set"].append("date_of_death")
    event["data"]["date_of_death"] = date(1940, 1, 1)
    assert rules_broken(event) == {("date_of_death", "not_before")}


def test_birth_date_and_sex_must_agree_with_the_identity_number() -> None:
    event = population_event()
    event["data"].update(date_of_birth=date(1950, 1, 1), sex="male")
    assert rules_broken(event) == {("date_of_birth", "citizen_id_consistency"),
                                   ("sex", "citizen_id_consistency")}


def test_valid_from_after_recorded_at_is_reported() -> None:
    event = population_event(valid_from=NOW + timedelta(hours=1))
    assert rules_broken(event) == {("valid_from", "not_after_recorded")}


def test_recorded_at_in_the_future_is_reported() -> None:
    event = population_event(recorded_at=datetime.now(timezone.utc) + timedelta(hours=1), valid_from=None)
    assert rules_broken(event) == {("recorded_at", "not_in_future")}


def test_naive_timestamps_are_reported() -> None:
    event = population_event(recorded_at=datetime(2024, 6, 1, 9, 0), valid_from=None)
    assert rules_broken(event) == {("recorded_at", "type")}


@pytest.mark.parametrize("field, value", [("event_id", "not-a-uuid"), ("sequence", -1),
                                          ("op", "MERGE"), ("source_system", "")])
def test_malformed_envelope_fields_are_reported(field: str, value: object) -> None:
    assert field in {name for name, _ in rules_broken(population_event(**{field: value}))}


def test_unknown_department_is_reported_when_the_catalog_is_given() -> None:
    validator = Validator(known_departments={"public_security"})
    event = population_event(source_department="weather_bureau", fields_set=["marital_status"],
                             data={"marital_status": "married"})
    assert [v.rule for v in validator.validate("population", event)] == ["unknown_department"]


def test_every_problem_is_reported_at_once() -> None:
    event = population_event(sequence=-1, event_id="x")
    event["data"]["sex"] = "unknown"
    assert len(validate("population", event)) == 3


def test_non_mapping_event_is_reported_not_raised() -> None:
    assert [v.rule for v in validate("population", ["not", "an", "event"])] == ["type"]


def test_money_in_fen_must_be_an_integer() -> None:
    data = {"record_id": "CR1", "kind": "administrative_penalty", "subject_name": "某公司",
            "decision_date": date(2024, 1, 2), "penalty_amount_fen": 12.5}
    event = {"event_id": str(uuid.uuid4()), "entity_id": "CR1", "op": "UPSERT",
             "fields_set": list(data), "source_department": "development_reform",
             "source_system": "credit", "sequence": 1, "valid_from": None, "recorded_at": NOW,
             "data": data}
    assert rules_broken(event, "credit") == {("penalty_amount_fen", "type")}


def _uuid_as_before(value: object) -> bool:
    """The event-id check as it was before its fast path: whatever ``uuid.UUID`` reads, at 32 or 36 characters."""
    if not isinstance(value, str) or len(value) not in (32, 36):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.uuids().map(str), st.uuids().map(lambda u: u.hex.upper()), st.uuids().map(lambda u: "{" + u.hex + "}--"),
                 st.text(alphabet="0123456789abcdefABCDEF-{}_ gurn:", min_size=30, max_size=38), st.text(max_size=40)))
def test_the_event_id_check_accepts_exactly_what_a_uuid_parser_reads(value: str) -> None:
    assert _is_uuid(value) == _uuid_as_before(value)
