"""Life events, without a broker: the rule of each declared event between the golden record
before and after a change; the gate names them once, on a live change that was applied (not on
a redelivery, a snapshot or an unrelated change); the router delivers each to the approved
subscriptions that asked for it, where its region filter holds, with its payload only."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from govbus.processors import lifeevents
from govbus.processors.governance import subscriptions as rules
from govbus.processors.gate.logic import GateLogic
from govbus.processors.lifeevents import Occurred
from govbus.processors.router.logic import RouterLogic, SubscriptionBook
from govbus.processors.governance.subscriptions import SubscriptionRequest
from govbus.producers.records import to_event
from govbus.schemas.codec import default_codec
from govbus.schemas.framing import (EVENT_DATE, LIFE_EVENT, LIFE_EVENTS, cloudevent_headers, entity_key,
                                    header_map)
from govbus.schemas.registry import default_registry
from govbus.settings import get_settings
from govbus.topics.catalog import LifeEvent
from govbus.topics.names import TopicNames

NAMES = TopicNames("")
SECRET = get_settings().key_secret.encode()
CITIZEN = "310104195305273787"
AT = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)


def population_events(catalog) -> dict[str, LifeEvent]:
    return catalog.library("population").life_events


def test_each_rule_holds_only_across_its_own_change(catalog) -> None:
    events = population_events(catalog)
    alive = {"household_region": "310104", "marital_status": "unmarried"}
    assert [o.event for o in lifeevents.derive(events, "household_region", alive,
                                               {**alive, "date_of_death": date(2026, 11, 30)},
                                               {"date_of_death"})] == ["death"]
    assert lifeevents.derive(events, "household_region", {**alive, "date_of_death": date(2026, 11, 30)},
                             {**alive, "date_of_death": date(2026, 11, 30)}, {"date_of_death"}) == [], "already dead"
    married = lifeevents.derive(events, "household_region", alive, {**alive, "marital_status": "married"},
                                {"marital_status"})
    assert [o.event for o in married] == ["marriage"]
    assert lifeevents.derive(events, "household_region", alive, {**alive, "marital_status": "married"},
                             {"name"}) == [], "a change that did not touch the field is no event"
    assert lifeevents.derive(events, "household_region", None, {"household_region": "610102"},
                             {"household_region"}) == [], "a first address is no move"


def test_a_move_carries_the_region_left_and_the_region_reached(catalog) -> None:
    (moved,) = lifeevents.derive(population_events(catalog), "household_region", {"household_region": "310104"},
                                 {"household_region": "610102"}, {"household_region"})
    assert moved == Occurred("moved_out", "310104", "610102", True)
    assert lifeevents.from_header(lifeevents.header([moved])) == [moved]


def test_a_catalog_naming_a_field_the_schema_lacks_is_refused(catalog) -> None:
    population = catalog.library("population")
    wrong = population.model_copy(update={"life_events": {"death": population.life_events["death"].model_copy(
        update={"payload": ("date_of_burial",)})}})
    broken = catalog.model_copy(update={"libraries": {**catalog.libraries, "population": wrong}})
    with pytest.raises(lifeevents.LifeEventError, match="date_of_burial"):
        lifeevents.check(broken, default_registry())
    lifeevents.check(catalog, default_registry())  # the shipped catalog names only known fields


def test_an_into_rule_needs_its_values_and_only_it_has_them() -> None:
    with pytest.raises(ValueError, match="values"):
        LifeEvent.model_validate({"doc": "x", "when": {"field": "status", "change": "into"}})
    with pytest.raises(ValueError, match="values"):
        LifeEvent.model_validate({"doc": "x", "when": {"field": "status", "change": "set", "values": ["a"]}})


# --- the gate ------------------------------------------------------------------------------

def sent(gate: GateLogic, department: str, record: dict[str, Any], golden: bytes | None):
    event = to_event("population", department, {"citizen_id": CITIZEN, **record}, "unit-test")
    key = entity_key(SECRET, "population", CITIZEN)
    value = default_codec().encode("population", event)
    step = gate.handle(NAMES.ingest("population", department), 0, 0, key, value,
                       cloudevent_headers(event, "population", 2, key), golden)
    shared = [output for output in step.outputs if output.topic == NAMES.shared("population")]
    named = [lifeevents.from_header(header_map(output.headers).get(LIFE_EVENTS)) for output in shared]
    return step, [o.event for each in named for o in each]


def person(**changes: Any) -> dict[str, Any]:
    return {"op": "upsert", "sequence": 1, "valid_from": "2026-11-01", "recorded_at": "2026-11-01T09:00:00+08:00",
            "name": "李梓子", "sex": "female", "date_of_birth": "1953-05-27", "household_region": "310104", **changes}


def test_the_gate_names_a_death_once_when_it_is_applied_and_not_on_its_redelivery(catalog) -> None:
    gate = GateLogic("population", catalog, default_codec(), NAMES, secret=SECRET)
    step, named = sent(gate, "public_security", person(), None)
    assert named == [], "a new person is no life event"
    death = {"op": "upsert", "sequence": 1, "valid_from": "2026-11-30", "recorded_at": "2026-11-30T18:00:00+08:00",
             "date_of_death": "2026-11-30", "event_id": "0b7c4f0e-0000-4000-8000-000000000001"}
    died, named = sent(gate, "health", death, step.golden)
    assert named == ["death"]
    again, named = sent(gate, "health", death, died.golden)
    assert again.status == "redelivered" and named == [], "a redelivery derives nothing"
    moved, named = sent(gate, "public_security", person(sequence=2, household_region="610102"), died.golden)
    assert named == ["moved_out"]
    snapshot, named = sent(gate, "public_security", person(op="snapshot", sequence=3, household_region="620102"),
                           moved.golden)
    assert named == [], "a source's snapshot (an initial load) is no real-world change"


def test_the_gate_sends_the_previous_values_of_the_changed_fields_to_the_router_only(catalog) -> None:
    from govbus.schemas.framing import FILTER_BEFORE

    gate = GateLogic("population", catalog, default_codec(), NAMES, secret=SECRET)
    first, _ = sent(gate, "public_security", person(), None)
    moved, _ = sent(gate, "public_security", person(sequence=2, household_region="610102"), first.golden)
    (shared,) = [o for o in moved.outputs if o.topic == NAMES.shared("population")]
    assert json.loads(header_map(shared.headers)[FILTER_BEFORE]) == {"household_region": "310104"}
    (new,) = [o for o in first.outputs if o.topic == NAMES.shared("population")]
    assert FILTER_BEFORE not in header_map(new.headers), "a new entity has no previous values"


# --- the router ----------------------------------------------------------------------------

def approved(catalog, events: tuple[str, ...], filters: tuple[str, ...] = (), purpose: str = "administrative_basis",
             department: str = "civil_affairs") -> rules.Subscription:
    request = SubscriptionRequest(department=department, library="population", purpose=purpose, events=events,
                                  filters=filters)
    subscription = rules.judge(request, catalog, default_registry(), AT)
    for authority in subscription.awaiting:
        subscription = rules.approve(subscription, authority, AT)
    assert subscription.state == "approved", subscription.history
    return subscription


def router(catalog, subscriptions: list[rules.Subscription]) -> RouterLogic:
    settings = get_settings()
    book = SubscriptionBook(settings, catalog, default_codec())
    book._ensure_delivery_topic = lambda subscription: None  # no broker here: the topic is not made
    book.apply([(rules.key(s), rules.to_json(s)) for s in subscriptions])
    return RouterLogic("population", settings, default_codec(), book)


def shared_death(region: str = "310104", left_for: str | None = None, event: str = "death"):
    data = {"citizen_id": CITIZEN, "name": "李梓子", "household_region": left_for or region,
            "date_of_death": date(2026, 11, 30)}
    record = {"event_id": "e-1", "entity_id": CITIZEN, "op": "UPSERT", "fields_set": ["date_of_death"],
              "source_department": "health", "source_system": "unit-test", "sequence": 4,
              "valid_from": datetime(2026, 11, 30, tzinfo=timezone.utc), "recorded_at": AT, "data": data}
    value = default_codec().encode("population", record)
    occurred = Occurred(event, region, left_for, left_for is not None)
    return value, [(LIFE_EVENTS, lifeevents.header([occurred])), ("ce_id", b"e-1"), ("ce_type", b"change")]


def test_the_router_delivers_a_death_to_the_subscription_of_its_region_with_the_payload_only(catalog) -> None:
    here = approved(catalog, ("death",), ("region=3101..",))
    elsewhere = approved(catalog, ("death",), ("region=6101..",), department="education")
    assert here.filters == ("household_region=3101..",), "region means the library's own region field"
    value, headers = shared_death()
    outputs, _ = router(catalog, [here, elsewhere]).route(value, headers, 0, 7, int(AT.timestamp() * 1000), "genesis")
    deliveries = [o for o in outputs if o.topic.startswith("deliver.")]
    assert [o.topic for o in deliveries] == [NAMES.deliver("civil_affairs", "population")]
    (delivery,) = deliveries
    got = header_map(delivery.headers)
    assert got[LIFE_EVENT] == b"death" and got[EVENT_DATE] == b"2026-11-30"
    assert got["ce_type"] == b"cn.gov.govbus.population.death.v1" and got["ce_id"] != b"e-1"
    assert LIFE_EVENTS not in got, "the gate's header is not passed on"
    _, decoded = default_codec().decode(delivery.value)
    assert {k: v for k, v in decoded["data"].items() if v is not None} == {"date_of_death": date(2026, 11, 30)}
    assert decoded["fields_set"] == ["date_of_death"] and decoded["entity_id"] == CITIZEN
    (record,) = [json.loads(o.value) for o in outputs if o.topic == NAMES.bus("audit.deliveries")]
    assert record["deliveries"] == [{"department": "civil_affairs", "subscription": here.id,
                                     "purpose": "administrative_basis", "fields": ["date_of_death"], "masked": [],
                                     "event": "death"}]


def test_a_move_within_the_filtered_region_is_not_a_move_out_of_it(catalog) -> None:
    leaving = approved(catalog, ("moved_out",), ("region=3101..",))
    logic = router(catalog, [leaving])
    value, headers = shared_death("310104", "310115", "moved_out")
    assert not [o for o in logic.route(value, headers, 0, 7, 0, "genesis")[0] if o.topic.startswith("deliver.")]
    value, headers = shared_death("310104", "610102", "moved_out")
    (delivery,) = [o for o in logic.route(value, headers, 0, 8, 0, "genesis")[0] if o.topic.startswith("deliver.")]
    _, decoded = default_codec().decode(delivery.value)
    assert all(v is None for v in decoded["data"].values()), "moved_out says where from, never where to"


def test_without_an_event_subscription_a_change_naming_an_event_delivers_none(catalog) -> None:
    fields_only = rules.judge(SubscriptionRequest(department="tax", library="population", purpose="administrative_basis",
                                                  fields=("name",)), catalog, default_registry(), AT)
    value, headers = shared_death()
    outputs, _ = router(catalog, [fields_only]).route(value, headers, 0, 7, 0, "genesis")
    assert all(header_map(o.headers).get(LIFE_EVENT) is None for o in outputs)


def test_an_unknown_event_is_refused_naming_the_known_ones(catalog) -> None:
    refused = rules.judge(SubscriptionRequest(department="tax", library="population", purpose="administrative_basis",
                                              events=("birth",)), catalog, default_registry(), AT)
    assert refused.state == "refused" and "unknown life event(s) birth" in refused.decision.reason
    assert "death" in refused.decision.reason


def test_a_death_waits_for_the_authority_of_the_death_date(catalog) -> None:
    pending = rules.judge(SubscriptionRequest(department="tax", library="population", purpose="administrative_basis",
                                              events=("death",)), catalog, default_registry(), AT)
    assert pending.state == "requested" and pending.awaiting == ("health",)


def test_a_request_without_fields_or_events_is_refused_by_its_form() -> None:
    with pytest.raises(ValueError, match="fields, life events, or both"):
        SubscriptionRequest(department="tax", library="population", purpose="administrative_basis")


def test_the_catalog_refuses_an_unknown_change_kind() -> None:
    with pytest.raises(ValueError, match="change"):
        LifeEvent.model_validate({"doc": "x", "when": {"field": "status", "change": "vanished"}})
