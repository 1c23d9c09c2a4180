"""The authority fold without a broker: the author is the acts topic's principal, and only the
principal with the right to an act has it applied; the others are recorded as refused."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from govbus.consumers import objections
from govbus.processors.governance import acts
from govbus.processors.governance import conflicts
from govbus.processors.governance import subscriptions as rules
from govbus.processors.governance.authority import AuthorityFold
from govbus.schemas.registry import default_registry
from govbus.settings import PROJECT_ROOT
from govbus.topics.catalog import load_catalog
from govbus.topics.names import TopicNames

NAMES = TopicNames("t.")
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)
CITIZEN = "610102199001011234"


def new_fold() -> AuthorityFold:
    return AuthorityFold(load_catalog(PROJECT_ROOT / "topics"), default_registry(), NAMES,
                         real_entity_id=lambda objection: CITIZEN)


def act(kind: str, **payload: object) -> bytes:
    return json.dumps(acts.build(kind, **payload)).encode()


def request_act(department: str = "health", fields: tuple[str, ...] = ("citizen_id", "marital_status"),
                subscription: str = "sub-1") -> bytes:
    asked = rules.SubscriptionRequest(department=department, library="population", fields=fields,
                                      purpose="administrative_basis")
    return act("subscription.request", subscription=subscription, request=asked.model_dump(mode="json"))


def subscription_of(records: list) -> rules.Subscription:
    (record,) = records
    assert record.topic == NAMES.bus("control.subscriptions")
    return rules.from_json(record.value)


def test_a_request_is_judged_as_its_author_and_a_forged_one_is_refused() -> None:
    fold = new_fold()
    pending = subscription_of(fold.handle("health", request_act(), T0))
    assert (pending.state, pending.authorities, pending.history[0].by) == ("requested", ("civil_affairs",), "health")
    forged = subscription_of(fold.handle("tax", request_act(department="health", subscription="sub-2"), T0))
    assert forged.state == "refused" and "tax wrote a request in the name of health" in forged.decision.reason


def test_only_the_fields_authority_approves_and_others_are_refused_on_the_record() -> None:
    fold = new_fold()
    fold.handle("health", request_act(), T0)
    by_owner = subscription_of(fold.handle("public_security", act("subscription.approve", subscription="sub-1"), T0))
    assert by_owner.state == "requested", "the library's owner is not the authority of marital_status"
    (refusal,) = by_owner.refusals
    assert (refusal.by, refusal.wanted) == ("public_security", "approved")
    assert "only civil_affairs may approve" in refusal.reason
    approved = subscription_of(fold.handle("civil_affairs", act("subscription.approve", subscription="sub-1"), T0))
    assert (approved.state, approved.decision.by) == ("approved", "civil_affairs")
    revoke = subscription_of(fold.handle("tax", act("subscription.revoke", subscription="sub-1"), T0))
    assert revoke.state == "approved" and "tax may not revoke" in revoke.refusals[-1].reason
    policy = subscription_of(fold.handle("governance", act("subscription.revoke", subscription="sub-1",
                                                           reason="policy"), T0))
    assert (policy.state, policy.decision.by) == ("revoked", "governance")


def test_an_act_already_folded_is_not_applied_again_after_a_restart() -> None:
    fold = new_fold()
    written = request_act()
    (record,) = fold.handle("health", written, T0)
    restarted = new_fold()
    restarted.learn_subscription(record.key, record.value)
    assert restarted.handle("health", written, T0) == []


def test_its_own_earlier_record_read_back_late_never_steps_a_decision_back() -> None:
    fold = new_fold()
    (requested,) = fold.handle("health", request_act(), T0)
    (approved,) = fold.handle("civil_affairs", act("subscription.approve", subscription="sub-1"), T0)
    fold.learn_subscription(requested.key, requested.value)  # the record reader catching up with its own writes
    assert fold.subscriptions["sub-1"].state == "approved"
    fold.learn_subscription(approved.key, approved.value)
    assert fold.subscriptions["sub-1"].state == "approved"
    operator = rules.from_json(approved.value)
    revoked = operator.model_copy(update={"state": "revoked", "history": (*operator.history, operator.history[-1].model_copy(
        update={"state": "revoked", "act": None}))})
    fold.learn_subscription(approved.key, rules.to_json(revoked))  # a later record (an operator's) is taken
    assert fold.subscriptions["sub-1"].state == "revoked"


def test_an_existing_subscription_id_is_never_overwritten_by_another_request() -> None:
    fold = new_fold()
    fold.handle("health", request_act(), T0)
    kept = subscription_of(fold.handle("tax", request_act(department="tax", fields=("citizen_id",)), T0))
    assert kept.department == "health" and "exists already" in kept.refusals[-1].reason


def raise_act(objection_id: str = "obj-1", field: str = "marital_status", **extra: object) -> bytes:
    return act("objection.raise", objection=objection_id, library="population", entity_id=CITIZEN, field=field,
               reason="divorced in 2023", subscription=None, event_id=None, **extra)


def steps(records: list) -> dict[str, dict]:
    return {record.topic: json.loads(record.value) for record in records}


def test_an_objection_is_owned_by_the_fields_authority_whatever_the_act_says() -> None:
    written = steps(new_fold().handle("health", raise_act(owner="tax", by="tax"), T0))
    assert set(written) == {NAMES.bus("control.objections"), NAMES.objections_of("health"),
                            NAMES.objections_of("civil_affairs")}
    recorded = written[NAMES.bus("control.objections")]
    assert (recorded["step"], recorded["by"], recorded["owner"]) == ("raised", "health", "civil_affairs")


def test_only_the_owner_answers_and_a_forged_answer_is_refused_to_its_author_only() -> None:
    fold = new_fold()
    fold.handle("health", raise_act(), T0)
    forged = steps(fold.handle("public_security", act("objection.reject", objection="obj-1", reason="no"), T0))
    assert set(forged) == {NAMES.bus("control.objections"), NAMES.objections_of("public_security")}
    assert forged[NAMES.objections_of("public_security")]["step"] == "refused"
    assert "only civil_affairs may answer" in forged[NAMES.objections_of("public_security")]["reason"]
    assert fold.objections["obj-1"].state == "open"
    answered = steps(fold.handle("civil_affairs", act("objection.reject", objection="obj-1", reason="verified"),
                                 T0 + timedelta(minutes=5)))
    assert answered[NAMES.objections_of("health")]["step"] == "rejected"
    assert fold.objections["obj-1"].answered_by == "civil_affairs"


def test_a_malformed_act_is_refused_with_its_reason_and_the_fold_goes_on() -> None:
    fold = new_fold()
    for author, value in (("health", b"not json"), ("health", act("objection.raise", objection="obj-x")),
                          ("health", raise_act(field="biometric_digest"))):
        written = steps(fold.handle(author, value, T0))
        assert written[NAMES.bus("control.objections")]["step"] == "refused"
    assert "not shared" in written[NAMES.bus("control.objections")]["reason"]
    fold.handle("health", raise_act("obj-2"), T0)
    assert fold.objections["obj-2"].state == "open"


def test_the_owners_copy_alone_names_the_entity_behind_a_pseudonym() -> None:
    written = steps(new_fold().handle("health", act(
        "objection.raise", objection="obj-1", library="population", entity_id="p-" + "a" * 32,
        field="marital_status", reason="wrong", subscription="sub-h", event_id=None), T0))
    assert written[NAMES.objections_of("civil_affairs")]["real_entity_id"] == CITIZEN
    assert "real_entity_id" not in written[NAMES.objections_of("health")]


def test_a_step_with_a_time_without_offset_is_skipped_and_the_others_still_fold() -> None:
    good = objections.raised_event("obj-1", library="population", entity_id=CITIZEN, field="name", reason="x",
                                   by="health", owner="public_security", at=T0)
    naive = {**good, "objection": "obj-2", "at": "2025-03-01T08:00:00"}
    folded = objections.fold([objections.encode(naive), objections.encode(good)])
    assert list(folded) == ["obj-1"]
    assert [o.id for o in objections.select(folded.values())] == ["obj-1"], "sorting works for everyone"


def conflict_record(identifier: str = "c-1") -> bytes:
    return json.dumps({"conflict_id": identifier, "entity_id": CITIZEN, "field": "marital_status",
                       "authoritative_department": "civil_affairs", "authoritative_value": "married",
                       "reported_department": "public_security", "reported_value": "unmarried"}).encode()


def test_a_conflict_goes_to_its_authority_alone_and_only_it_closes_it_once() -> None:
    fold = new_fold()
    (copy,) = fold.route_conflict(b"k", conflict_record())
    assert copy.topic == NAMES.conflicts_of("civil_affairs")
    forged = steps(fold.handle("public_security", act("conflict.verdict", conflict_id="c-1", verdict="kept"), T0))
    assert forged[NAMES.bus("control.verdicts")]["kind"] == "refused"
    assert "only civil_affairs gives its verdict" in forged[NAMES.conflicts_of("public_security")]["reason"]
    bad = steps(fold.handle("civil_affairs", act("conflict.verdict", conflict_id="c-1", verdict="maybe"), T0))
    assert "one of kept, corrected, source_told" in bad[NAMES.bus("control.verdicts")]["reason"]
    closed = steps(fold.handle("civil_affairs", act("conflict.verdict", conflict_id="c-1", verdict="kept",
                                                    note="checked the register"), T0))
    assert closed[NAMES.conflicts_of("civil_affairs")]["kind"] == "verdict"
    again = steps(fold.handle("civil_affairs", act("conflict.verdict", conflict_id="c-1", verdict="corrected"), T0))
    assert "closed already" in again[NAMES.bus("control.verdicts")]["reason"]
    department_view = conflicts.fold([conflict_record(), *[json.dumps(e).encode() for e in
                                                          (forged[NAMES.conflicts_of("public_security")],
                                                           closed[NAMES.conflicts_of("civil_affairs")])]])
    assert department_view["c-1"].verdict["verdict"] == "kept" and not department_view["c-1"].open


def test_an_approval_past_its_until_is_expired_by_the_clock_once_at_the_instant_it_ended() -> None:
    fold = new_fold()
    asked = rules.SubscriptionRequest(department="health", library="population", fields=("citizen_id", "name"),
                                      purpose="administrative_basis", until=T0.date())
    fold.handle("health", act("subscription.request", subscription="sub-1",
                              request=asked.model_dump(mode="json")), T0)
    assert fold.subscriptions["sub-1"].state == "approved"
    ends = fold.subscriptions["sub-1"].expires_at
    assert fold.expire_due(ends - timedelta(seconds=1)) == [], "not before its end"
    expired = subscription_of(fold.expire_due(ends + timedelta(seconds=1)))
    assert (expired.state, expired.decision.by, expired.decision.at) == ("expired", rules.BUS, ends)
    assert fold.expire_due(ends + timedelta(hours=1)) == [], "once"
    renewed = subscription_of(fold.handle("health", act("subscription.request", subscription="sub-2", request=asked.model_copy(
        update={"until": None}).model_dump(mode="json")), ends + timedelta(hours=1)))
    assert renewed.state == "approved", "a renewal is a new request through the same channel"
