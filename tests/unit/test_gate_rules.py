"""The gate's decision: one number one source, conflicts, ordering, redelivery, deletes."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govbus.processors.gate.decide import CORRECTIONS_SYSTEM, Outcome, Reason, Status, decide
from govbus.processors.gate.golden import Golden, GoldenFormat
from govbus.schemas.registry import default_registry

POLICIES = default_registry().policy("population")
KEY = "citizen_id"
CITIZEN = "11010519491231002X"
T0 = datetime(2024, 3, 1, 8, 0, tzinfo=timezone.utc)


def event(department: str, sequence: int, op: str = "UPSERT", event_id: str | None = None,
          **fields: object) -> dict:
    data = dict.fromkeys(POLICIES)
    data.update(fields)
    return {"event_id": event_id or f"{department}-{sequence}", "entity_id": CITIZEN, "op": op,
            "fields_set": list(fields), "source_department": department,
            "source_system": "test", "sequence": sequence,
            "valid_from": T0 + timedelta(days=sequence),
            "recorded_at": T0 + timedelta(days=sequence, hours=1), "data": data}


def run(*events: dict, golden: Golden | None = None) -> list[Outcome]:
    outcomes = []
    for item in events:
        outcome = decide(POLICIES, KEY, golden, item["source_department"], item)
        golden = outcome.golden
        outcomes.append(outcome)
    return outcomes


def conflicts_of(outcomes: list[Outcome]) -> list[dict]:
    return [conflict for outcome in outcomes for conflict in outcome.conflicts]


def test_authoritative_value_is_kept_and_one_conflict_raised_when_another_department_disagrees():
    civil, police = run(event("civil_affairs", 1, marital_status="married"),
                        event("public_security", 1, marital_status="unmarried"))
    assert civil.status is Status.APPLIED and police.status is Status.UNCHANGED
    assert police.shared_change is None
    assert police.golden.values["marital_status"] == "married"
    [conflict] = police.conflicts
    assert conflict["authoritative_department"] == "civil_affairs"
    assert conflict["authoritative_value"] == "married"
    assert conflict["authoritative_recorded_at"] == T0 + timedelta(days=1, hours=1)
    assert conflict["reported_department"] == "public_security"
    assert conflict["reported_value"] == "unmarried"
    assert conflict["reported_event_id"] == "public_security-1"
    assert conflict["reported_valid_from"] == T0 + timedelta(days=1)


def test_conflict_is_raised_when_the_authority_arrives_after_a_differing_report():
    police, civil = run(event("public_security", 1, marital_status="unmarried"),
                        event("civil_affairs", 4, marital_status="married"))
    assert police.conflicts == [] and "marital_status" not in police.golden.values
    assert police.golden.claims["marital_status"]["public_security"].value == "unmarried"
    [conflict] = civil.conflicts
    assert (conflict["reported_event_id"], conflict["authoritative_event_id"]) == (
        "public_security-1", "civil_affairs-4")
    assert civil.golden.values["marital_status"] == "married"


@pytest.mark.parametrize("civil_first", [True, False])
def test_equal_values_raise_no_conflict(civil_first):
    events = [event("civil_affairs", 1, marital_status="married"),
              event("public_security", 1, marital_status="married")]
    assert conflicts_of(run(*(events if civil_first else events[::-1]))) == []


def test_repeating_the_same_report_raises_no_second_conflict():
    outcomes = run(event("civil_affairs", 1, marital_status="married"),
                   event("public_security", 1, marital_status="unmarried"),
                   event("public_security", 2, marital_status="unmarried"),
                   event("civil_affairs", 2, marital_status="married"))
    assert len(conflicts_of(outcomes)) == 1


def test_new_disagreements_are_raised_once_each():
    outcomes = run(event("civil_affairs", 1, marital_status="married"),
                   event("public_security", 1, marital_status="unmarried"),
                   event("public_security", 2, marital_status="divorced"),  # a new report
                   event("civil_affairs", 2, marital_status="widowed"))  # a new authoritative value
    pairs = [(c["reported_value"], c["authoritative_value"]) for c in conflicts_of(outcomes)]
    assert pairs == [("unmarried", "married"), ("divorced", "married"), ("divorced", "widowed")]


def test_a_null_report_drops_the_claim_and_raises_nothing():
    outcomes = run(event("public_security", 1, marital_status="unmarried"),
                   event("public_security", 2, marital_status=None),
                   event("civil_affairs", 1, marital_status="married"))
    assert conflicts_of(outcomes) == [] and outcomes[-1].golden.claims == {}


def test_non_authoritative_values_are_never_applied():
    [outcome] = run(event("public_security", 1, name="张三", marital_status="married",
                          education_level="bachelor"))
    assert outcome.golden.values == {"name": "张三"}
    assert outcome.shared_change["changed"] == ["name"]
    assert outcome.shared_change["data"]["marital_status"] is None


def test_the_key_sent_by_another_department_is_not_kept_as_a_claim():
    [outcome] = run(event("civil_affairs", 1, citizen_id=CITIZEN, marital_status="married"))
    assert outcome.golden.claims == {} and outcome.golden.values == {"marital_status": "married"}


def test_null_from_the_authority_clears_and_unset_fields_are_untouched():
    *_, last = run(event("public_security", 1, name="张三", ethnicity="汉族"),
                   event("public_security", 2, ethnicity=None))
    assert last.golden.values == {"name": "张三", "ethnicity": None}
    assert last.shared_change["changed"] == ["ethnicity"]
    assert last.shared_change["data"]["name"] == "张三"


def test_each_value_keeps_when_it_became_true_and_was_recorded():
    *_, last = run(event("public_security", 1, name="张三", sex="male"),
                   event("public_security", 2, name="张三", sex="female"))
    stamps = last.golden.stamps
    assert (stamps["name"].event_id, stamps["name"].valid_from) == ("public_security-1", T0 + timedelta(days=1))
    assert (stamps["sex"].event_id, stamps["sex"].recorded_at) == (
        "public_security-2", T0 + timedelta(days=2, hours=1))


def test_version_grows_only_when_something_changes():
    outcomes = run(event("public_security", 1, name="张三"),
                   event("public_security", 2, name="张三"),
                   event("civil_affairs", 1, marital_status="married"),
                   event("public_security", 3, name="李四"))
    assert [o.status for o in outcomes] == [Status.APPLIED, Status.UNCHANGED, Status.APPLIED, Status.APPLIED]
    assert [o.shared_change and o.shared_change["version"] for o in outcomes] == [1, None, 2, 3]
    assert outcomes[1].golden.marks["public_security"].sequence == 2


def test_older_sequence_is_stale_and_does_not_overwrite():
    *_, stale = run(event("public_security", 5, name="李四"), event("public_security", 4, name="张三"))
    assert stale.status is Status.STALE and stale.shared_change is None
    assert stale.golden.values["name"] == "李四"


def test_same_sequence_with_another_event_id_is_rejected():
    *_, duplicate = run(event("public_security", 1, name="张三"),
                        event("public_security", 1, event_id="other", name="李四"))
    assert duplicate.status is Status.REJECTED
    assert duplicate.rejection[0] is Reason.DUPLICATE_SEQUENCE
    assert duplicate.golden.values["name"] == "张三"


def test_redelivery_re_emits_the_same_outputs_after_later_changes():
    civil_event = event("civil_affairs", 1, marital_status="married")
    _, civil, later, again = run(event("public_security", 1, marital_status="unmarried"), civil_event,
                                 event("public_security", 2, name="张三"), civil_event)
    assert again.status is Status.REDELIVERED and again.golden is later.golden
    assert again.shared_change == civil.shared_change and again.conflicts == civil.conflicts
    assert again.shared_change["version"] == 1 and again.shared_change["data"]["name"] is None
    assert len(again.conflicts) == 1


def test_delete_by_the_owner_tombstones_and_later_events_continue_the_version():
    created, deleted, late, back = run(event("public_security", 1, name="张三"),
                                       event("public_security", 2, op="DELETE"),
                                       event("public_security", 1, name="张三"),
                                       event("public_security", 3, name="王五"))
    assert deleted.status is Status.APPLIED and deleted.golden.deleted
    assert deleted.golden.values == {} and deleted.shared_change["op"] == "DELETE"
    assert deleted.shared_change["version"] == 2 and deleted.shared_change["data"] is None
    assert late.status is Status.STALE
    assert back.shared_change["version"] == 3 and not back.golden.deleted


def test_redelivered_delete_re_emits_the_delete_change():
    delete = event("public_security", 2, op="DELETE")
    _, deleted, again = run(event("public_security", 1, name="张三"), delete, delete)
    assert again.status is Status.REDELIVERED and again.shared_change == deleted.shared_change


def test_delete_by_another_department_is_rejected():
    *_, outcome = run(event("public_security", 1, name="张三"), event("civil_affairs", 1, op="DELETE"))
    assert outcome.status is Status.REJECTED
    assert outcome.rejection[0] is Reason.NOT_AUTHORITATIVE_DELETE
    assert "public_security" in outcome.rejection[1]
    assert not outcome.golden.deleted and outcome.shared_change is None


def test_snapshot_is_marked_backfill_and_lists_all_current_fields():
    _, snapshot = run(event("civil_affairs", 1, marital_status="married"),
                      event("public_security", 1, op="SNAPSHOT", name="张三", sex="male"))
    change = snapshot.shared_change
    assert change["backfill"] is True and change["op"] == "SNAPSHOT"
    assert change["fields_set"] == ["marital_status", "name", "sex"]
    assert change["changed"] == ["name", "sex"]


def test_decide_leaves_its_input_untouched():
    [first] = run(event("civil_affairs", 1, marital_status="married"))
    before = GoldenFormat(POLICIES).dump(first.golden)
    run(event("public_security", 1, marital_status="single", name="张三"),
        event("civil_affairs", 2, marital_status="divorced"), golden=first.golden)
    assert GoldenFormat(POLICIES).dump(first.golden) == before


def test_golden_record_round_trips_through_json():
    outcomes = run(event("public_security", 1, name="张三", date_of_birth=date(1949, 12, 31),
                         former_names=["张大"], marital_status="unmarried"),
                   event("civil_affairs", 1, marital_status="married",
                         marriage_registration_date=date(1975, 5, 1)))
    golden_format = GoldenFormat(POLICIES)
    for golden in (outcomes[-1].golden, run(event("public_security", 2, op="DELETE"),
                                            golden=outcomes[-1].golden)[0].golden):
        plain = json.loads(json.dumps(golden_format.dump(golden)))
        assert golden_format.load(plain) == golden
    assert plain["deleted"] is True and plain["version"] == 3


# --- properties over event streams ------------------------------------------------------------

DEPARTMENTS = ("public_security", "civil_affairs", "health", "hr_social_security")
VALUES = {"name": ["张三", "李四", None], "sex": ["male", "female"],
          "marital_status": ["married", "unmarried", None],
          "date_of_death": [date(2020, 1, 1), date(2021, 1, 1), None]}


FIELD_VALUES = st.fixed_dictionaries(
    {}, optional={name: st.sampled_from(choices) for name, choices in VALUES.items()}).filter(bool)


@st.composite
def streams(draw: st.DrawFn, keep_department_order: bool = True) -> list[dict]:
    """Events of several departments, interleaved; re-deliveries of earlier events mixed in."""
    pending = {department: [event(department, sequence, **draw(FIELD_VALUES))
                            for sequence in range(1, draw(st.integers(0, 5)) + 1)]
               for department in DEPARTMENTS}
    sent: list[dict] = []
    while any(pending.values()):
        if sent and draw(st.integers(0, 4)) == 0:
            sent.append(sent[draw(st.integers(0, len(sent) - 1))])
            continue
        left = [department for department, events in pending.items() if events]
        department = left[draw(st.integers(0, len(left) - 1))]
        position = 0 if keep_department_order else draw(st.integers(0, len(pending[department]) - 1))
        sent.append(pending[department].pop(position))
    return sent


def expected_values(stream: list[dict]) -> dict:
    """Per field, the authority's events in arrival order, skipping any not newer than the last."""
    values: dict = {}
    last_sequence: dict[str, int] = {}
    for item in stream:
        department = item["source_department"]
        if item["sequence"] <= last_sequence.get(department, 0):
            continue
        last_sequence[department] = item["sequence"]
        for name in item["fields_set"]:
            if POLICIES[name].authority == department:
                values[name] = item["data"][name]
    return values


@settings(max_examples=300, deadline=None)
@given(streams(keep_department_order=True) | streams(keep_department_order=False))
def test_golden_values_follow_each_fields_authority_in_sequence_order(stream):
    outcomes = run(*stream)
    golden = outcomes[-1].golden if outcomes else None
    assert (golden.values if golden else {}) == expected_values(stream)
    applied = [o.shared_change["version"] for o in outcomes if o.status is Status.APPLIED]
    assert applied == list(range(1, len(applied) + 1))
    raised = [c["conflict_id"] for o in outcomes if o.status is not Status.REDELIVERED for c in o.conflicts]
    assert len(raised) == len(set(raised))


@settings(max_examples=200, deadline=None)
@given(streams())
def test_redelivering_every_event_changes_neither_the_record_nor_the_versions(stream):
    once = run(*stream)
    twice = run(*[item for item in stream for _ in range(2)])
    again = run(*stream, golden=once[-1].golden if once else None)
    assert [o.golden for o in twice[1::2]] == [o.golden for o in once]
    assert [o.shared_change for o in twice[1::2]] == [o.shared_change for o in twice[0::2]]
    published = {o.shared_change["version"]: o.shared_change for o in once if o.shared_change}
    for outcome in again:
        assert outcome.status in (Status.STALE, Status.REDELIVERED)
        assert outcome.shared_change is None or published[outcome.shared_change["version"]] == outcome.shared_change
    assert (again[-1].golden if again else None) == (once[-1].golden if once else None)


def test_a_correction_and_the_owners_next_real_change_are_both_applied() -> None:
    correction = {**event("civil_affairs", 1, marital_status="divorced"), "sequence": 1_733_000_000_000_000,
                  "source_system": CORRECTIONS_SYSTEM, "event_id": "correction-1"}
    first, corrected, following = run(event("civil_affairs", 1, marital_status="married"), correction,
                                      event("civil_affairs", 2, marital_status="remarried"))
    assert [o.status for o in (first, corrected, following)] == [Status.APPLIED] * 3
    assert following.golden.values["marital_status"] == "remarried"
    assert following.golden.marks["civil_affairs"].sequence == 2, "the source's own numbering is untouched"
    assert following.golden.marks["civil_affairs/corrections"].event_id == "correction-1"
    assert following.golden.version == 3


def test_corrections_keep_their_own_order_and_a_late_older_correction_is_stale() -> None:
    def correction(sequence: int, value: str) -> dict:
        return {**event("civil_affairs", sequence, marital_status=value), "source_system": CORRECTIONS_SYSTEM,
                "event_id": f"correction-{sequence}"}
    newer, older = run(correction(20, "divorced"), correction(10, "married"))
    assert (newer.status, older.status) == (Status.APPLIED, Status.STALE)
    assert older.golden.values["marital_status"] == "divorced"
