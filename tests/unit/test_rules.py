"""Domain rules: identifiers per the national standards, enum-like values, masks, divisions."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from govbus.schemas import divisions, rules

# Published examples: GB 11643-1999's own sample numbers, and the credit codes of well-known
# companies (Tencent, Huawei, Alibaba) plus GB 32100's example. Independent of our code.
KNOWN_CITIZEN_IDS = ["11010519491231002X", "440524188001010014"]
KNOWN_CREDIT_CODES = ["9144030071526726XG", "914403001922038216", "91330100716105852F",
                      "91350100M000100Y43"]

regions = st.sampled_from(divisions.county_codes())
births = st.dates(min_value=date(1900, 1, 1), max_value=date(2020, 12, 31))


@st.composite
def citizen_ids(draw: st.DrawFn) -> str:
    return rules.make_citizen_id(draw(regions), draw(births), draw(st.integers(0, 999)))


@st.composite
def credit_codes(draw: st.DrawFn) -> str:
    authority = draw(st.sampled_from(sorted(rules.REGISTRATION_AUTHORITIES)))
    entity_type = draw(st.sampled_from(rules.REGISTRATION_AUTHORITIES[authority]))
    body = draw(st.text(alphabet=rules.CREDIT_CHARSET, min_size=8, max_size=8))
    return rules.make_credit_code(authority, entity_type, draw(regions), body)


@pytest.mark.parametrize("number", KNOWN_CITIZEN_IDS)
def test_published_citizen_ids_pass(number: str) -> None:
    assert rules.check_citizen_id(number) is None


@pytest.mark.parametrize("code", KNOWN_CREDIT_CODES)
def test_published_credit_codes_pass(code: str) -> None:
    assert rules.check_credit_code(code) is None


def test_identity_number_with_wrong_check_digit_is_rejected() -> None:
    assert "check character" in rules.check_citizen_id("110105194912310021")


def test_identity_number_with_lower_case_x_is_rejected() -> None:
    assert rules.check_citizen_id("11010519491231002x") is not None


def test_identity_number_with_unknown_region_is_rejected() -> None:
    number = rules.make_citizen_id("990101", date(1980, 1, 1), 123)
    assert "region 990101" in rules.check_citizen_id(number)


def test_identity_number_with_impossible_birth_date_is_rejected() -> None:
    body = "11010519810230123"
    assert "not a valid date" in rules.check_citizen_id(body + rules.citizen_id_check_char(body))


def test_identity_number_born_in_the_future_is_rejected() -> None:
    number = rules.make_citizen_id("110101", rules.today() + timedelta(days=2), 1)
    assert "future" in rules.check_citizen_id(number)


def test_identity_number_tells_birth_date_and_sex() -> None:
    assert rules.citizen_id_birth_date("11010519491231002X") == date(1949, 12, 31)
    assert rules.citizen_id_sex("11010519491231002X") == "female"  # 17th digit 2: even
    assert rules.citizen_id_sex("440524188001010014") == "male"  # 17th digit 1: odd


@given(citizen_ids())
def test_any_generated_identity_number_passes(number: str) -> None:
    assert rules.check_citizen_id(number) is None


@given(citizen_ids(), st.integers(0, 17), st.sampled_from("0123456789X"))
def test_any_single_character_change_of_an_identity_number_fails(number: str, position: int,
                                                                  char: str) -> None:
    changed = number[:position] + char + number[position + 1:]
    if changed != number:
        assert rules.check_citizen_id(changed) is not None


@given(credit_codes())
def test_any_generated_credit_code_passes(code: str) -> None:
    assert rules.check_credit_code(code) is None


@given(credit_codes(), st.integers(0, 17), st.sampled_from(rules.CREDIT_CHARSET))
def test_any_single_character_change_of_a_credit_code_fails(code: str, position: int, char: str) -> None:
    changed = code[:position] + char + code[position + 1:]
    if changed != code:
        assert rules.check_credit_code(changed) is not None


@pytest.mark.parametrize("letter", "IOZSV")
def test_credit_code_with_a_letter_outside_the_31_character_set_is_rejected(letter: str) -> None:
    assert "except I, O, Z, S, V" in rules.check_credit_code("91440300" + letter + "1526726XG")


def test_credit_code_with_unassigned_registration_authority_is_rejected() -> None:
    assert "registration authority" in rules.check_credit_code("B144030071526726XG")


def test_credit_code_with_entity_type_foreign_to_its_authority_is_rejected() -> None:
    code = rules.make_credit_code("9", "9", "440300", "71526726")
    assert "entity type 9" in rules.check_credit_code(code)


def test_credit_code_with_wrong_organisation_check_is_rejected() -> None:
    body = "914403007152672" + "6" + "0"  # GB 11714 check of 71526726 is X, not 0
    assert "GB 11714" in rules.check_credit_code(body + rules.credit_code_check_char(body))


def test_organisation_code_check_follows_gb_11714() -> None:
    assert rules.organisation_code_check_char("71526726") == "X"
    assert rules.organisation_code_check_char("19220382") == "1"


def test_region_field_rejects_abolished_and_unknown_divisions() -> None:
    assert rules.check_division_code("110101") is None
    assert "abolished" in rules.check_division_code("110103")
    assert "not a known" in rules.check_division_code("999999")


def test_division_table_has_all_34_provincial_divisions() -> None:
    provinces = [d for d in divisions.divisions().values() if d.level == "province"]
    assert len(provinces) == 34
    assert divisions.name_of("620102") == "城关区" and divisions.name_of("460100") == "海口市"


@pytest.mark.parametrize("rule, good, bad", [
    ("marital_status", "married", "cohabiting"), ("sex", "female", "f"),
    ("ethnicity", "汉族", "汉"), ("entity_status", "licence_revoked", "吊销"),
    ("certificate_status", "revoked", "void"), ("credit_record_kind", "dishonesty_list", "blacklist"),
])
def test_enum_like_rules_accept_only_their_values(rule: str, good: str, bad: str) -> None:
    assert rules.RULES[rule](good) is None
    assert "expected one of" in rules.RULES[rule](bad)


def test_there_are_56_ethnic_groups() -> None:
    assert len(set(rules.ETHNICITIES)) == 56


def test_sha256_rule_wants_64_lower_case_hex_characters() -> None:
    assert rules.check_sha256_hex("ab" * 32) is None
    assert rules.check_sha256_hex("AB" * 32) is not None
    assert rules.check_sha256_hex("ab" * 31) is not None


def test_not_in_future_judges_dates_in_china_time_and_datetimes_with_skew() -> None:
    assert rules.check_not_in_future(rules.today()) is None
    assert rules.check_not_in_future(rules.today() + timedelta(days=1)) is not None
    assert rules.check_not_in_future(datetime.now(timezone.utc) + timedelta(minutes=1)) is None
    assert rules.check_not_in_future(datetime.now(timezone.utc) + timedelta(hours=1)) is not None


def test_citizen_id_consistency_reports_birth_date_and_sex_that_disagree() -> None:
    data = {"citizen_id": "11010519491231002X", "date_of_birth": date(1950, 1, 1), "sex": "male"}
    fields = {field for field, _, _ in rules.citizen_id_consistency(data)}
    assert fields == {"date_of_birth", "sex"}


def test_today_turns_at_midnight_in_china_standard_time(monkeypatch) -> None:
    """`today` is worked out once a day; the day it gives still turns at CST midnight."""
    import time as clock
    from datetime import datetime as moment

    midnight = moment(2026, 12, 8, tzinfo=rules.CHINA_TIME).timestamp()  # 16:00 UTC the day before
    monkeypatch.setattr(rules, "_today", (0.0, rules.date.min))
    days = []
    for now in (midnight - 3600, midnight - 0.001, midnight, midnight + 86_399):
        monkeypatch.setattr(clock, "time", lambda now=now: now)
        days.append(rules.today().isoformat())
    assert days == ["2026-12-07", "2026-12-07", "2026-12-08", "2026-12-08"]
