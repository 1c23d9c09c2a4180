"""Objections without a broker: who owns them, the state machine, pseudonyms, values."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from govbus.consumers.corrections import parse_correction, pseudonym
from govbus.consumers.objections import (Objection, ObjectionError, answer_event, check_answer, encode, fold,
                                         owner_of, raised_event, select)
from govbus.processors.router.projection import Projector
from govbus.processors.governance.subscriptions import Subscription, Transition
from govbus.schemas.registry import default_registry

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)


def raised(objection_id: str = "obj-1", *, by: str = "health", field: str = "marital_status",
           owner: str = "civil_affairs", at: datetime = T0) -> dict:
    return raised_event(objection_id, library="population", entity_id="610102199001011234", field=field,
                        reason="registered divorced in 2023", by=by, owner=owner, at=at)


def answered(step: str, by: str = "civil_affairs", objection_id: str = "obj-1", minutes: int = 5) -> dict:
    details = {"correction_event_id": "ev-9"} if step == "resolved" else {"reason": "the record is right"}
    return answer_event(objection_id, step, by=by, at=T0 + timedelta(minutes=minutes), **details)


# -- the owner is the field's one authoritative source (一数一源) -------------------------
@pytest.mark.parametrize(("library", "field", "owner"), [
    ("population", "marital_status", "civil_affairs"), ("population", "date_of_death", "health"),
    ("population", "name", "public_security")])
def test_the_owner_is_the_fields_authority(library: str, field: str, owner: str) -> None:
    assert owner_of(library, field) == owner


def test_every_shared_non_key_field_has_a_known_department_as_owner() -> None:
    registry = default_registry()
    for library in registry.libraries():
        for name, policy in registry.policy(library).items():
            if policy.sharing != "not_shared" and name != registry.entity_key(library):
                assert owner_of(library, name) == policy.authority


@pytest.mark.parametrize(("library", "field", "message"), [
    ("population", "biometric_digest", "not shared"), ("population", "shoe_size", "has no field"),
    ("weather", "name", "unknown library"), ("population", "citizen_id", "is the key")])
def test_objecting_to_what_cannot_be_objected_to_is_refused_early(library: str, field: str, message: str) -> None:
    with pytest.raises(ObjectionError, match=message):
        owner_of(library, field)


# -- the state machine: raised → resolved | rejected, answered by the owner only, once ----
def test_an_objection_is_open_until_the_owner_resolves_it() -> None:
    opened = fold([raised()])["obj-1"]
    assert (opened.state, opened.owner, opened.raised_by) == ("open", "civil_affairs", "health")
    closed = fold([raised(), answered("resolved")])["obj-1"]
    assert (closed.state, closed.answered_by, closed.correction_event_id) == ("resolved", "civil_affairs", "ev-9")
    assert [step["step"] for step in closed.steps] == ["raised", "resolved"], "every step is recorded"


def test_a_rejection_keeps_its_reason() -> None:
    closed = fold([encode(raised()), encode(answered("rejected"))])["obj-1"]
    assert (closed.state, closed.answer, closed.correction_event_id) == ("rejected", "the record is right", None)


def test_an_answer_by_another_department_changes_nothing() -> None:
    assert fold([raised(), answered("resolved", by="public_security")])["obj-1"].state == "open"


def test_the_first_answer_wins_and_later_ones_are_ignored() -> None:
    folded = fold([raised(), answered("rejected"), answered("resolved", minutes=6)])["obj-1"]
    assert folded.state == "rejected" and len(folded.steps) == 2


def test_an_answer_before_its_objection_and_unreadable_events_are_skipped() -> None:
    folded = fold([answered("resolved"), b"not json", b'{"step": "raised"}', raised()])
    assert list(folded) == ["obj-1"] and folded["obj-1"].state == "open"


def test_a_raise_with_an_existing_id_does_not_reopen() -> None:
    folded = fold([raised(), answered("resolved"), raised(by="tax")])["obj-1"]
    assert (folded.state, folded.raised_by) == ("resolved", "health")


@given(st.lists(st.sampled_from(["resolved", "rejected"]), max_size=4),
       st.lists(st.sampled_from(["civil_affairs", "health", "tax"]), min_size=4, max_size=4))
def test_state_only_ever_leaves_open_once_and_only_by_the_owner(steps: list[str], answerers: list[str]) -> None:
    events = [raised()] + [answered(step, by=by, minutes=i) for i, (step, by) in enumerate(zip(steps, answerers))]
    folded = fold(events)["obj-1"]
    valid = [(step, by) for step, by in zip(steps, answerers) if by == "civil_affairs"]
    assert folded.state == (valid[0][0] if valid else "open")
    assert len(folded.steps) == 1 + bool(valid)


def test_answering_a_closed_objection_or_as_someone_else_says_why() -> None:
    opened = fold([raised()])["obj-1"]
    with pytest.raises(ObjectionError, match="only civil_affairs may answer"):
        check_answer(opened, "health")
    closed = fold([raised(), answered("resolved")])["obj-1"]
    with pytest.raises(ObjectionError, match="already resolved"):
        check_answer(closed, "civil_affairs")


def test_listing_filters_by_owner_raiser_and_state_oldest_first() -> None:
    folded = fold([raised("obj-2", at=T0 + timedelta(hours=1)), raised("obj-1"),
                   raised("obj-3", by="tax", field="date_of_death", owner="health"), answered("rejected", objection_id="obj-2")])
    objections: list[Objection] = list(folded.values())
    assert [o.id for o in select(objections, owner="civil_affairs")] == ["obj-1", "obj-2"]
    assert [o.id for o in select(objections, raised_by="tax")] == ["obj-3"]
    assert [o.id for o in select(objections, state="rejected")] == ["obj-2"]
    with pytest.raises(ObjectionError, match="open, resolved, rejected"):
        select(objections, state="pending")


# -- pseudonyms and values ------------------------------------------------------------------
def test_pseudonyms_are_computed_exactly_as_the_router_does() -> None:
    subscription = Subscription(id="sub-7", department="civil_affairs", library="population",
                                fields=("citizen_id", "name"), purpose="work_reference", filters=(), until=None,
                                owner="public_security", state="approved",
                                history=(Transition(state="requested", by="civil_affairs", at=T0),
                                         Transition(state="approved", by="public_security", at=T0)))
    projector = Projector.for_subscription(subscription, default_registry(), b"secret")
    real = "610102199001011234"
    assert projector.pseudonym(real) == pseudonym(b"secret", "sub-7", real) != real


def test_correction_values_are_text_for_text_fields_and_json_otherwise() -> None:
    fields = default_registry().policy("population")
    assert parse_correction(fields["marital_status"], "42") == "42"
    assert parse_correction(fields["date_of_death"], "2024-05-01") == "2024-05-01", "dates stay ISO text"
    assert parse_correction(fields["former_names"], '["张山"]') == ["张山"]
