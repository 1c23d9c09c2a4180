"""The application channel: requests judged against catalog and schema, and the state machine."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from govbus.processors import subscriptions
from govbus.processors.subscriptions import (
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


def test_a_request_with_a_conditional_field_waits_for_the_library_owner() -> None:
    subscription = judged(fields=("citizen_id", "marital_status"))
    assert subscription.state == "requested" and subscription.owner == "public_security"
    assert "marital_status" in subscription.decision.reason
    with pytest.raises(SubscriptionError, match="only the owner public_security"):
        approve(subscription, "civil_affairs", NOW)
    approved = approve(subscription, "public_security", NOW + timedelta(hours=1))
    assert approved.state == "approved" and not approved.automatic
    assert (approved.decision.by, approved.decision.at) == ("public_security", NOW + timedelta(hours=1))
    assert approved.purpose == "administrative_basis"


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


def test_the_owner_refuses_only_with_a_reason_and_a_refusal_is_final() -> None:
    pending = judged(fields=("marital_status",))
    with pytest.raises(SubscriptionError, match="needs a reason"):
        refuse(pending, "public_security", NOW, "  ")
    refused = refuse(pending, "public_security", NOW, "purpose does not justify marital status")
    assert refused.state == "refused" and refused.decision.reason.startswith("purpose does not")
    with pytest.raises(SubscriptionError, match="is refused; it cannot become approved"):
        approve(refused, "public_security", NOW)


def test_the_owner_or_the_subscriber_may_revoke_but_nobody_else() -> None:
    granted = judged()
    with pytest.raises(SubscriptionError, match="may revoke"):
        revoke(granted, "tax", NOW)
    assert revoke(granted, "civil_affairs", NOW).state == "revoked"
    revoked = revoke(granted, "public_security", NOW, "no longer needed")
    assert (revoked.state, revoked.decision.by, revoked.decision.reason) == ("revoked", "public_security",
                                                                            "no longer needed")
    with pytest.raises(SubscriptionError, match="is revoked"):
        revoke(revoked, "public_security", NOW)


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
    approved = approve(pending, "public_security", NOW)
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
