"""The application channel: requests judged against catalog and schema, and the state machine."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from govbus.processors.governance import subscriptions
from govbus.processors.governance.subscriptions import (
    BUS, RowFilter, SubscriptionError, SubscriptionRequest, approve, describe, evaluate, expire, fold,
    from_json, key, parse_filters, refuse, revoke, to_json,
)
from govbus.schemas.registry import default_registry
from govbus.settings import PROJECT_ROOT
from govbus.topics.catalog import load_catalog

CATALOG = load_catalog(PROJECT_ROOT / "topics")
REGISTRY = default_registry()
NOW = datetime(2025, 3, 1, 9, 30, tzinfo=timezone.utc)


def request(**overrides: object) -> SubscriptionRequest:
    values: dict[str, object] = {"department": "civil_affairs", "library": "population",
                                 "fields": ("citizen_id", "name", "sex"), "purpose": "administrative_basis"}
    values.update(overrides)
    return SubscriptionRequest.model_validate(values)


def judged(**overrides: object) -> subscriptions.Subscription:
    return evaluate(request(**overrides), CATALOG, REGISTRY, NOW, subscription_id="sub-test")


def test_a_request_for_unconditional_fields_only_is_approved_by_the_bus_at_once() -> None:
    subscription = judged()
    assert subscription.state == "approved" and subscription.automatic
    assert subscription.decision.by == BUS and subscription.decision.at == NOW
    assert [step.state for step in subscription.history] == ["requested", "approved"]


def test_a_conditional_field_waits_for_its_authority_not_the_library_owner() -> None:
    subscription = judged(department="health", fields=("citizen_id", "marital_status"))
    assert subscription.state == "requested" and subscription.owner == "public_security"
    assert subscription.authorities == ("civil_affairs",) == subscription.awaiting
    assert "marital_status" in subscription.decision.reason and "civil_affairs" in subscription.decision.reason
    with pytest.raises(SubscriptionError, match="public_security is not the authority .* only civil_affairs may approve"):
        approve(subscription, "public_security", NOW)
    with pytest.raises(SubscriptionError, match="governance is not the authority"):
        approve(subscription, "governance", NOW)
    approved = approve(subscription, "civil_affairs", NOW + timedelta(hours=1))
    assert approved.state == "approved" and not approved.automatic
    assert (approved.decision.by, approved.decision.at) == ("civil_affairs", NOW + timedelta(hours=1))
    assert approved.purpose == "administrative_basis"


def test_fields_of_two_authorities_need_both_approvals_and_either_may_refuse() -> None:
    pending = judged(department="health", fields=("citizen_id", "marital_status", "household_address"))
    assert set(pending.authorities) == {"civil_affairs", "public_security"}
    half = approve(pending, "public_security", NOW)
    assert half.state == "requested" and half.awaiting == ("civil_affairs",)
    with pytest.raises(SubscriptionError, match="already approved"):
        approve(half, "public_security", NOW)
    assert approve(half, "civil_affairs", NOW).state == "approved"
    assert refuse(half, "civil_affairs", NOW, "not for this purpose").state == "refused"


def test_a_decision_by_someone_without_the_right_is_recorded_as_refused_and_changes_nothing() -> None:
    pending = judged(department="health", fields=("citizen_id", "marital_status"))
    kept = subscriptions.decide(pending, "approved", "tax", NOW, act="act-1")
    assert kept.state == "requested" and kept.history == pending.history
    (refusal,) = kept.refusals
    assert (refusal.by, refusal.wanted, refusal.act) == ("tax", "approved", "act-1")
    assert "tax is not the authority" in refusal.reason and "act-1" in kept.acts()
    assert from_json(to_json(kept)) == kept


def test_a_request_in_another_departments_name_is_refused_naming_the_author() -> None:
    forged = subscriptions.judge(request(department="tax"), CATALOG, REGISTRY, NOW, "sub-x", author="health")
    assert forged.state == "refused"
    assert "health wrote a request in the name of tax" in forged.decision.reason


def test_governance_may_refuse_or_revoke_on_policy_but_not_approve() -> None:
    pending = judged(department="health", fields=("citizen_id", "marital_status"))
    refused = refuse(pending, "governance", NOW, "policy: no marital status for this purpose")
    assert (refused.state, refused.decision.by) == ("refused", "governance")
    assert revoke(judged(), "governance", NOW, "policy").state == "revoked"


def test_a_not_shared_field_is_refused_at_request_time_naming_the_rule() -> None:
    subscription = judged(fields=("citizen_id", "biometric_digest"))
    assert subscription.state == "refused" and subscription.decision.by == BUS
    assert "biometric_digest is not shared (不予共享)" in subscription.decision.reason
    assert "sharing=not_shared" in subscription.decision.reason


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"library": "weather"}, "unknown library 'weather'; known: certificate, credit, legal_entity, population"),
    ({"fields": ("citizen_id", "shoe_size")}, "unknown field(s) shoe_size in library population"),
    ({"purpose": "curiosity"}, "unknown purpose 'curiosity'"),
    ({"department": "space_agency"}, "unknown department 'space_agency'"),
    ({"until": date(2025, 2, 28)}, "until 2025-02-28 is in the past"),
    ({"filters": ("household_region",)}, "write field=value or field=prefix.."),
    ({"filters": ("biometric_digest=ab..",)}, "biometric_digest is not shared"),
])
def test_a_request_that_cannot_be_granted_is_refused_with_the_reason(overrides: dict, reason: str) -> None:
    subscription = judged(**overrides)
    assert subscription.state == "refused"
    assert reason in subscription.decision.reason


def test_a_filter_on_a_conditional_field_needs_the_owner_like_the_field_itself() -> None:
    assert judged(filters=("household_region=6101..",)).state == "approved"
    assert judged(filters=("residence_region=6101..",)).state == "requested"


def test_the_authority_refuses_only_with_a_reason_and_a_refusal_is_final() -> None:
    pending = judged(fields=("marital_status",))
    with pytest.raises(SubscriptionError, match="needs a reason"):
        refuse(pending, "civil_affairs", NOW, "  ")
    refused = refuse(pending, "civil_affairs", NOW, "purpose does not justify marital status")
    assert refused.state == "refused" and refused.decision.reason.startswith("purpose does not")
    with pytest.raises(SubscriptionError, match="is refused; it cannot become approved"):
        approve(refused, "civil_affairs", NOW)


def test_the_authority_the_subscriber_or_governance_may_revoke_but_nobody_else() -> None:
    granted = approve(judged(department="health", fields=("citizen_id", "marital_status")), "civil_affairs", NOW)
    for outsider in ("tax", "public_security"):
        with pytest.raises(SubscriptionError, match="may not revoke"):
            revoke(granted, outsider, NOW)
    assert revoke(granted, "health", NOW).state == "revoked"
    revoked = revoke(granted, "civil_affairs", NOW, "no longer needed")
    assert (revoked.state, revoked.decision.by, revoked.decision.reason) == ("revoked", "civil_affairs",
                                                                            "no longer needed")
    with pytest.raises(SubscriptionError, match="is revoked"):
        revoke(revoked, "civil_affairs", NOW)


def test_an_approval_expires_after_its_until_date_in_china_time() -> None:
    granted = judged(until=date(2025, 3, 31))
    last_moment = datetime(2025, 3, 31, 23, 59, tzinfo=subscriptions.CHINA_TIME)
    assert granted.state_at(last_moment) == "approved" and granted.active_at(last_moment)
    after = last_moment + timedelta(minutes=1)
    assert granted.state_at(after) == "expired" and not granted.active_at(after)
    with pytest.raises(SubscriptionError, match="has not expired"):
        expire(granted, last_moment)
    assert expire(granted, after).state == "expired"
    row = describe(granted, after)
    assert (row["state"], row["decided_by"], row["decided_at"]) == ("expired", BUS, NOW)


def test_a_subscription_event_round_trips_through_json_and_the_topic_keeps_the_latest() -> None:
    pending = judged(fields=("marital_status",), filters=("household_region=6101..",), until=date(2026, 1, 1))
    assert from_json(to_json(pending)) == pending
    approved = approve(pending, "civil_affairs", NOW)
    other = judged()
    other_key = b"sub-other"
    events = [(key(pending), to_json(pending)), (other_key, to_json(other.model_copy(update={"id": "sub-other"}))),
              (key(approved), to_json(approved)), (other_key, None)]
    current = fold(events)
    assert list(current) == ["sub-test"] and current["sub-test"].state == "approved"


def test_row_filters_are_prefix_or_equality_and_all_must_hold() -> None:
    filters = parse_filters(["household_region=6101..", "sex=female"])
    assert filters == (RowFilter("household_region", "6101", True), RowFilter("sex", "female", False))
    assert parse_filters("household_region=6101..,sex=female") == filters
    assert [str(row) for row in filters] == ["household_region=6101..", "sex=female"]
    person = {"household_region": "610102", "sex": "female"}
    assert all(row.matches(person) for row in filters)
    assert not filters[0].matches({"household_region": "620102"})
    assert not filters[1].matches({"sex": "female2"})
    assert not filters[0].matches({"household_region": None})
    assert RowFilter("former_names", "张", True).matches({"former_names": ["李四", "张三"]})


def test_the_acls_open_a_delivery_topic_only_while_a_subscription_is_active_by_the_clock() -> None:
    from govbus.topics import acls
    from govbus.topics.names import TopicNames

    names = TopicNames("t.")
    approved = judged(until=NOW.date())
    reads = acls.Grant("civil_affairs", "READ", "TOPIC", names.deliver("civil_affairs", "population"))
    assert reads in acls.desired(CATALOG, names, [approved], NOW)
    assert reads not in acls.desired(CATALOG, names, [approved], approved.expires_at), \
        "closed at its until, even before the expiry is on the record"
    assert reads not in acls.desired(CATALOG, names, [revoke(approved, "civil_affairs", NOW)], NOW)


def test_a_departments_view_ends_when_its_last_subscription_to_the_library_ends() -> None:
    from govbus.consumers.access import capped, ended_at

    expiring = judged(until=NOW.date())
    lasting = evaluate(request(), CATALOG, REGISTRY, NOW, subscription_id="sub-lasting")
    later = expiring.expires_at + timedelta(hours=2)
    assert ended_at([expiring], "civil_affairs", "population", NOW) is None, "active"
    assert ended_at([expiring], "civil_affairs", "population", later) == expiring.expires_at
    assert ended_at([expiring, lasting], "civil_affairs", "population", later) is None, "another still active"
    revoked = revoke(lasting, "civil_affairs", NOW + timedelta(hours=1))
    assert ended_at([expiring, revoked], "civil_affairs", "population", later) == expiring.expires_at, "the later end"
    assert ended_at([judged(department="health", fields=("citizen_id", "marital_status"))],
                    "health", "population", later) is None, "never approved: nothing ended"
    assert capped(later, expiring.expires_at) == expiring.expires_at
    assert capped(NOW, expiring.expires_at) == NOW
