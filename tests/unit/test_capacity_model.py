"""The capacity model (govbus/simulate/model.py) counts what the bus's own code makes: topics and
partitions as ``Catalog.topic_specs`` plus the delivery topics, ACLs as ``acls.desired`` — for
catalogs of other sizes than the shipped one — and the province the simulation generates is
one every part of the bus accepts (its catalog folder, its records)."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from govbus.processors.governance import subscriptions as rules
from govbus.processors.governance.subscriptions import SubscriptionRequest
from govbus.producers.records import default_builder
from govbus.schemas.registry import default_registry
from govbus.schemas.validation import Validator
from govbus.settings import PROJECT_ROOT
from govbus.simulate import model, province, workload
from govbus.topics import acls
from govbus.topics.catalog import load_catalog
from govbus.topics.names import TopicNames

NAMES = TopicNames("p.")
FIELDS = {"population": ("citizen_id", "name"), "legal_entity": ("credit_code", "name"), "credit": ("record_id", "kind"),
          "certificate": ("certificate_number", "status")}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(PROJECT_ROOT / "topics")


def _widened(catalog, extra: int):
    departments = province.simulated_departments(extra, set(catalog.departments), random.Random(extra))
    return province.with_departments(catalog, departments)


def _approved(catalog, count: int, seed: int) -> list[rules.Subscription]:
    """`count` approved subscriptions of unconditional fields, of random departments and libraries."""
    rng, registry, now = random.Random(seed), default_registry(), datetime.now(timezone.utc)
    found = []
    for _ in range(count):
        library = rng.choice(sorted(FIELDS))
        request = SubscriptionRequest(department=rng.choice(sorted(catalog.departments)), library=library,
                                      fields=FIELDS[library], purpose="data_verification")
        found.append(rules.evaluate(request, catalog, registry, now))
    return found


def _province_of(catalog, subscriptions) -> model.Province:
    pairs = {(s.department, s.library) for s in subscriptions}
    per_library = {library: sum(1 for _, of in pairs if of == library) for library in catalog.libraries}
    return model.Province(departments=len(catalog.departments), delivery_topics=per_library, subscriptions={},
                          entities={}, changes={}, fan_out={}, routed_share={})


@pytest.mark.parametrize("extra", [0, 7, 60])
def test_topic_and_partition_counts_equal_the_catalogs_topics_plus_one_delivery_topic_per_department_and_library(
        catalog, extra: int) -> None:
    widened = _widened(catalog, extra)
    subscriptions = _approved(widened, 3 * len(widened.departments), seed=extra)
    prediction = model.predict(model.Shape.of(widened), _province_of(widened, subscriptions))

    specs = widened.topic_specs(NAMES)
    delivery = {widened.delivery_topic(NAMES, s.department, s.library).name:
                widened.delivery_topic(NAMES, s.department, s.library) for s in subscriptions}
    assert prediction.topics["total"] == len(specs) + len(delivery)
    assert prediction.partitions["total"] == sum(spec.partitions for spec in [*specs, *delivery.values()])
    assert prediction.topics["deliver"] == len(delivery)


@pytest.mark.parametrize("extra", [0, 7, 60])
def test_acl_count_equals_what_acls_desired_grants_for_the_departments_and_active_subscriptions(catalog, extra: int) -> None:
    widened = _widened(catalog, extra)
    subscriptions = _approved(widened, 3 * len(widened.departments), seed=100 + extra)

    counted = model.acl_count(model.Shape.of(widened), _province_of(widened, subscriptions))

    assert counted == len(acls.desired(widened, NAMES, subscriptions))


def test_messages_are_one_shared_and_one_golden_record_per_change_the_fan_out_in_deliveries_and_a_record_per_routed_change(
        catalog) -> None:
    shape = model.Shape.of(catalog)
    changes = {"population": 1000, "credit": 10}
    prediction = model.predict(shape, model.Province(
        departments=9, delivery_topics={}, subscriptions={}, entities={"population": 50_000}, changes=changes,
        fan_out={"population": 12.5, "credit": 2.0}, routed_share={"population": 0.9, "credit": 1.0}, acts=7))

    assert prediction.messages["shared"] == prediction.messages["state"] == prediction.messages["ingest"] == 1010
    assert prediction.messages["deliver"] == 1000 * 12.5 + 10 * 2.0
    assert prediction.messages["audit"] == 900 + 10
    assert prediction.messages["control"] == 14 and prediction.messages["dlq"] == 0


def test_brokers_are_at_least_three_and_grow_with_partition_replicas_past_the_per_broker_guidance() -> None:
    assert model.brokers_needed(100, 0)["needed"] == 3
    assert model.brokers_needed(40 * model.PARTITIONS_PER_BROKER, 0)["needed"] == 40


def test_a_province_has_the_catalogs_departments_and_two_more_at_least_and_2500_at_scale_one() -> None:
    assert model.departments_at(0.01, 9) == 25
    assert model.departments_at(0.0016, 9) == 11
    assert model.departments_at(1, 9) == 2500


@pytest.mark.parametrize("scale", [0, -0.5, 1.5])
def test_a_scale_that_is_not_a_share_of_a_province_is_refused_with_the_range(scale: float) -> None:
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        model.entities_at(scale)


def test_fit_costs_recovers_a_cost_per_event_and_per_delivery_from_phases_of_different_fan_out() -> None:
    points = [(events, deliveries, events * 0.0001 + deliveries * 0.00004)
              for events, deliveries in ((1000, 15000), (500, 1000), (200, 4000))]

    per_event, per_delivery = model.fit_costs(points)

    assert per_event == pytest.approx(0.0001) and per_delivery == pytest.approx(0.00004)
    assert model.fit_costs([(100, 200, 1.0), (200, 400, 2.0)]) is None  # in proportion: not separable


def test_the_province_catalog_written_for_the_processes_registers_every_simulated_department(catalog, tmp_path) -> None:
    plan = province.plan(catalog, 0.01, seed=3)

    written = load_catalog(province.write_catalog(plan.catalog, PROJECT_ROOT / "topics", tmp_path))

    assert set(written.departments) == {department.id for department in plan.departments}
    assert len(plan.simulated) == 16 and set(catalog.departments) < set(written.departments)
    assert written.libraries == catalog.libraries and written.purposes == catalog.purposes


def test_every_planned_subscription_is_judged_requested_or_approved_never_refused(catalog) -> None:
    plan = province.plan(catalog, 0.01, seed=3)
    registry, now = default_registry(), datetime.now(timezone.utc)

    states = {rules.evaluate(planned.request, plan.catalog, registry, now).state for planned in plan.subscriptions}

    assert states <= {"requested", "approved"}


def test_every_record_of_the_load_and_the_day_passes_the_publishers_validation(catalog) -> None:
    plan = province.plan(catalog, 0.002, seed=5)
    registry = default_registry()
    sources = workload.Sources(plan, registry, seed=5)
    load = sources.load(workload.split(model.entities_at(0.002), 400))
    workload.expect(sources, load, [])
    day = sources.day({"population": 60, "legal_entity": 30, "credit": 10, "certificate": 30})
    builder, validator = default_builder(), Validator(registry)

    refused = [(event.library, event.source, validator.validate(event.library, builder.to_event(
        event.library, event.source, event.record, "test"))) for event in load + day]

    assert [entry for entry in refused if entry[2]] == []
    assert {event.life_event for event in day} >= {"death", "moved_out", "marriage", "deregistered", "revoked"}


def test_a_move_is_owed_as_an_event_to_the_region_left_and_not_to_the_region_moved_to(catalog) -> None:
    plan = province.plan(catalog, 0.002, seed=5)
    sources = workload.Sources(plan, default_registry(), seed=5)
    person = {"citizen_id": "440103199001011234", "household_region": "440103"}
    sources.images["population"][person["citizen_id"]] = dict(person)
    move = workload.Event("population", "public_security", {"op": "upsert", "citizen_id": person["citizen_id"],
                                                            "sequence": 2, "household_region": "440104"},
                          "day", "moved_out")
    left, moved_to, city = (workload.Receiver(name, "population", frozenset(), frozenset({"moved_out"}), region)
                            for name, region in (("left", "440103"), ("to", "440104"), ("city", "4401")))

    expected = workload.expect(sources, [move], [left, moved_to, city])

    assert dict(expected.events) == {"left": {person["citizen_id"]}}
    assert expected.routed["population"] == 1


@pytest.mark.parametrize("arguments, said", [(["--scale", "2"], "not a share of a province"),
                                             (["--scale", "0.5"], "too many"),
                                             (["--subscriptions-per-department", "40"], "1 to 16 subscriptions")])
def test_simulate_refuses_a_province_it_cannot_make_with_the_reason_before_starting_a_broker(
        arguments: list[str], said: str) -> None:
    from click.testing import CliRunner

    from govbus.cli import main

    result = CliRunner().invoke(main, ["simulate", *arguments])

    assert result.exit_code == 2 and said in result.output
    assert "broker" not in result.output


def test_the_lean_alternative_has_one_partition_delivery_topics_and_per_department_topics_only_where_needed(
        catalog) -> None:
    shape = model.Shape.of(catalog)
    province_of = model.Province(departments=1000, delivery_topics={"population": 900, "credit": 100},
                                 subscriptions={}, entities={}, changes={}, fan_out={}, routed_share={})

    designed, lean = model.predict(shape, province_of), model.predict(shape.with_delivery_partitions(1), province_of, True)

    assert designed.topics["principal"] == 4 * 1000 + 1 and designed.partitions["deliver"] == 900 * 6 + 100 * 3
    assert lean.topics["principal"] == 1000 + 1 + 2 * shape.source_departments + 100
    assert lean.partitions["deliver"] == 1000 and lean.topics["deliver"] == designed.topics["deliver"]
    assert lean.acls == designed.acls - 6 * 1000 + 2 * (2 * shape.source_departments + 100)
