"""The console's views and login without a broker: subscriptions judged by the bus's own rules,
folded into what the reader knows, and arranged for people."""

from __future__ import annotations

import asyncio
import base64
from datetime import date, datetime, timedelta, timezone

import pytest

from govbus.console import views
from govbus.console.commands import governance_settings, login_for, loopback
from govbus.console.live import Knowledge
from govbus.console.web import BasicLogin
from govbus.errors import GovbusError
from govbus.processors.governance.subscriptions import SubscriptionRequest, approve, evaluate
from govbus.schemas.registry import default_registry
from govbus.settings import PROJECT_ROOT, Settings
from govbus.topics.catalog import load_catalog

CATALOG = load_catalog(PROJECT_ROOT / "topics")
REGISTRY = default_registry()
NOW = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)


def subscription(department: str, fields: tuple[str, ...], purpose: str = "work_reference", *,
                 number: int = 0, until: date | None = None, ago: timedelta = timedelta(hours=2)):
    asked = SubscriptionRequest(department=department, library="population", fields=fields, purpose=purpose,
                                until=until)
    return evaluate(asked, CATALOG, REGISTRY, NOW - ago, subscription_id=f"sub-{department}-{number}")


def knowing(*subscriptions) -> Knowledge:
    return Knowledge(subscriptions={s.id: s for s in subscriptions})


def test_the_lineage_has_one_row_per_subscribed_field_with_the_schemas_class_authority_and_mask() -> None:
    pending = subscription("civil_affairs", ("citizen_id", "household_address"))
    rows = views.lineage(knowing(pending), CATALOG, REGISTRY, NOW, views.LineageFilter())["rows"]
    assert [(row["field"], row["sharing"], row["authority"], row["mask"], row["state"]) for row in rows] == [
        ("citizen_id", "unconditional", "public_security", "identifier", "pending"),
        ("household_address", "conditional", "public_security", "address", "pending")]


def test_a_life_event_asked_for_is_a_lineage_row_with_the_class_and_authority_of_what_it_reveals() -> None:
    asked = SubscriptionRequest(department="education", library="population", events=("death",),
                                purpose="administrative_basis", filters=("region=6101..",))
    deaths = evaluate(asked, CATALOG, REGISTRY, NOW - timedelta(hours=1), subscription_id="sub-deaths")
    (row,) = views.lineage(knowing(deaths), CATALOG, REGISTRY, NOW, views.LineageFilter())["rows"]
    assert (row["field"], row["sharing"], row["authority"], row["state"]) == (
        "event:death", "conditional", "health", "pending")
    assert row["filters"] == ["household_region=6101.."]


def test_an_approval_past_its_until_date_reads_as_expired() -> None:
    lapsed = subscription("health", ("citizen_id", "name"), "administrative_basis", until=date(2026, 2, 1),
                          ago=timedelta(days=60))
    assert lapsed.state == "approved"
    (row, _) = views.lineage(knowing(lapsed), CATALOG, REGISTRY, NOW, views.LineageFilter())["rows"]
    assert row["state"] == "expired"


def test_the_field_filter_answers_who_receives_a_field_and_the_graph_follows_it() -> None:
    address = approve(subscription("civil_affairs", ("citizen_id", "household_address")), "public_security", NOW)
    other = subscription("health", ("citizen_id", "name"), "administrative_basis")
    found = views.lineage(knowing(address, other), CATALOG, REGISTRY, NOW,
                          views.LineageFilter(field="population.household_address"))
    assert [(row["department"], row["state"]) for row in found["rows"]] == [("civil_affairs", "approved")]
    assert found["graph"]["departments"] == ["civil_affairs"]
    assert (found["matched"], found["total"]) == (1, 4)
    by_state = views.lineage(knowing(address, other), CATALOG, REGISTRY, NOW, views.LineageFilter(state="approved"))
    assert by_state["matched"] == 4, "the unconditional request was approved by the bus at once"


def test_requests_wait_under_each_authority_still_to_approve() -> None:
    both = subscription("health", ("citizen_id", "household_address", "marital_status"), "administrative_basis")
    partly = approve(both, "civil_affairs", NOW - timedelta(hours=1))
    groups = views.waiting_requests([partly], NOW)
    assert [(group["authority"], group["count"], group["oldest_seconds"]) for group in groups] == [
        ("public_security", 1, 7200.0)]


def test_the_lineage_of_three_thousand_subscriptions_is_bounded_rows_capped_and_the_graph_by_the_catalog() -> None:
    """What keeps the page fast at a province's scale is its size, not a stopwatch (timed
    asserts fail on a loaded machine): the rows sent are capped, the graph grows with the
    catalog's fields, never with the subscriptions."""
    many = [subscription(department, ("citizen_id", "name", "household_address"), number=number)
            for number in range(1000) for department in ("civil_affairs", "health", "tax")]
    found = views.lineage(knowing(*many), CATALOG, REGISTRY, NOW, views.LineageFilter(department="health"))
    assert found["matched"] == 3000 and len(found["rows"]) == views.ROW_LIMIT
    assert len(found["graph"]["edges"]) < 30, "the graph is bounded by the catalog, not by the subscriptions"


def test_loopback_needs_no_login_and_any_other_address_asks_for_a_long_password() -> None:
    assert loopback("127.0.0.1") and loopback("::1") and loopback("localhost") and not loopback("0.0.0.0")
    settings = Settings(console_password="twelve-chars")
    assert login_for(settings, "127.0.0.1") is None
    assert login_for(settings, "0.0.0.0") == ("governance", "twelve-chars")
    assert login_for(settings, "127.0.0.1", asked=True) == ("governance", "twelve-chars")
    with pytest.raises(GovbusError, match="GOVBUS_CONSOLE_PASSWORD"):
        login_for(Settings(console_password="short"), "0.0.0.0")
    with pytest.raises(GovbusError, match="--no-login only on 127.0.0.1"):
        login_for(settings, "0.0.0.0", asked=False)


def test_the_console_reads_as_governance_never_as_admin() -> None:
    assert governance_settings(Settings(sasl_username="health", sasl_password="x")).sasl_username == "governance"
    assert governance_settings(Settings(sasl_username="health", sasl_password="x")).sasl_password is None
    with pytest.raises(GovbusError, match="never as admin"):
        governance_settings(Settings(sasl_username="admin", sasl_password="the-admins"))


def _status(login: BasicLogin, path: str, authorization: str | None = None) -> int:
    sent: list[dict] = []
    headers = [(b"authorization", authorization.encode())] if authorization else []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    asyncio.run(login({"type": "http", "path": path, "headers": headers, "method": "GET"}, receive, send))
    return sent[0]["status"]


def test_the_login_admits_only_its_name_and_password_and_leaves_health_open() -> None:
    async def application(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    login = BasicLogin(application, "governance", "a-long-password")
    good = "Basic " + base64.b64encode(b"governance:a-long-password").decode()
    wrong = "Basic " + base64.b64encode(b"governance:a-long-passwore").decode()
    assert _status(login, "/api/lineage", good) == 200
    assert _status(login, "/api/lineage", wrong) == 401
    assert _status(login, "/api/lineage", "Basic not-base64!") == 401
    assert _status(login, "/api/lineage") == 401
    assert _status(login, "/health") == 200


def _records(entities: list[str]) -> list[dict]:
    from govbus.processors.governance import audit

    chain = audit.AuditChain("population/0")
    part = audit.delivery(department="health", subscription="sub-1", purpose="administrative_basis",
                          fields=["citizen_id", "name"], masked=[])
    return [chain.record_change("population", {"entity_id": entity, "event_id": f"e{number}", "version": 1,
                                               "op": "UPSERT"}, [part], NOW + timedelta(seconds=number))
            for number, entity in enumerate(entities)]


def _knowing_records(records: list[dict]) -> Knowledge:
    knowledge = Knowledge(records=records)
    for position, record in enumerate(records):
        knowledge.by_entity.setdefault(record["entity_id"], []).append(position)
    return knowledge


def test_an_entitys_trace_is_audit_query_with_each_delivery_marked_by_the_chains_verification() -> None:
    from govbus.processors.governance import audit

    records = _records(["a", "b", "a", "a"])
    intact = _knowing_records(records)
    traced = views.trace(intact, audit.verify(records), "a")
    assert [row["event_id"] for row in traced["rows"]] == ["e0", "e2", "e3"] == \
        [row["event_id"] for row in audit.query(records, entity_id="a")]
    assert {row["chain_state"] for row in traced["rows"]} == {"verified"}
    altered = [dict(record) for record in records]
    altered[2]["deliveries"] = [{**altered[2]["deliveries"][0], "purpose": "work_reference"}]  # changed afterwards
    states = [row["chain_state"] for row in views.trace(_knowing_records(altered), audit.verify(altered), "a")["rows"]]
    assert states[0] == "verified" and states[1].startswith("broken here") and states[2].startswith("not verified")
