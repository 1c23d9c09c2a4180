"""The entitlement check: a store equals the projection of the golden records, or the check
says how it differs — and the demo then fails instead of claiming it holds."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import click
import pytest

from govbus import entitlement
from govbus.consumers.deliveries import table_columns
from govbus.consumers.stores import open_store
from govbus.demo import require_entitled
from govbus.processors.gate.golden import Golden
from govbus.processors.governance.subscriptions import Subscription, Transition
from govbus.schemas.registry import default_registry

REGISTRY = default_registry()
KEY = b"k" * 32
NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
FIELDS = ("citizen_id", "name", "date_of_birth", "marital_status")


def _subscription(filters: tuple[str, ...] = ()) -> Subscription:
    return Subscription(id="sub-health", department="health", library="population", fields=FIELDS,
                        purpose="administrative_basis", filters=filters, owner="public_security",
                        authorities=("civil_affairs",), state="approved",
                        history=(Transition(state="requested", by="health", at=NOW),
                                 Transition(state="approved", by="civil_affairs", at=NOW)))


def _golden(citizen_id: str, name: str, version: int = 3, region: str = "610102") -> Golden:
    return Golden(entity_id=citizen_id, version=version, values={
        "citizen_id": citizen_id, "name": name, "date_of_birth": date(1990, 1, 1), "sex": "female",
        "marital_status": "married", "household_region": region, "biometric_digest": "not-shared"})


GOLDENS = [_golden("610102199001011234", "欧阳娜娜"), _golden("610102199202022345", "李四", version=5),
           _golden("610103199303033456", "王五", region="610103")]


def _delivery(golden: Golden, fields: tuple[str, ...] = FIELDS, **changed: object) -> dict:
    data = {name: golden.values.get(name) for name in fields}
    data.update(changed)
    return {"entity_id": golden.entity_id, "version": golden.version, "op": "SNAPSHOT", "fields": list(fields),
            "data": data, "backfill": True}


def _rows(tmp_path: Path, deliveries: list[dict]) -> list[dict]:
    with open_store(f"sqlite:///{tmp_path / 'health.db'}") as store:
        store.ensure_table("population", table_columns(REGISTRY.get("population")))
        store.apply("population", deliveries)
        return store.rows("population")


def _check(rows: list[dict], filters: tuple[str, ...] = ()) -> entitlement.Entitlement:
    return entitlement.check(_subscription(filters), GOLDENS, rows, REGISTRY, KEY)


def test_a_store_holding_exactly_the_projection_passes(tmp_path: Path) -> None:
    result = _check(_rows(tmp_path, [_delivery(golden) for golden in GOLDENS]))
    assert result.ok, result.failure()
    assert (result.entities, result.rows, result.fields) == (3, 3, FIELDS)
    require_entitled([result])  # no exception: the demo goes on


def test_a_missing_row_is_reported_and_fails_the_demo(tmp_path: Path) -> None:
    result = _check(_rows(tmp_path, [_delivery(golden) for golden in GOLDENS[:2]]))
    assert [(d.entity_id, d.kind) for d in result.differences] == [(GOLDENS[2].entity_id, "missing row")]
    with pytest.raises(click.ClickException) as failed:
        require_entitled([result])
    assert failed.value.exit_code == 1
    message = failed.value.format_message()
    assert "health's population store" in message and "3 entities" in message and "2 rows" in message
    assert "missing row" in message


def test_a_value_of_a_field_not_approved_is_an_extra_field(tmp_path: Path) -> None:
    leaked = [_delivery(GOLDENS[0], (*FIELDS, "sex")), *(_delivery(golden) for golden in GOLDENS[1:])]
    result = _check(_rows(tmp_path, leaked))
    assert [(d.kind, d.field, d.found) for d in result.differences] == [("not approved", "sex", "female")]
    with pytest.raises(click.ClickException, match="not approved"):
        require_entitled([result])


def test_a_stale_row_with_another_value_and_a_row_ahead_of_its_golden_record_are_each_reported(tmp_path: Path) -> None:
    stale = {**_delivery(GOLDENS[1], name="李"), "version": 4}
    ahead = {**_delivery(GOLDENS[2]), "version": 9}
    rows = _rows(tmp_path, [_delivery(GOLDENS[0], name="欧*娜"), stale, ahead])
    found = {(d.entity_id, d.kind, d.field) for d in _check(rows).differences}
    assert found == {(GOLDENS[0].entity_id, "other value", "name"), (GOLDENS[1].entity_id, "other value", "name"),
                     (GOLDENS[1].entity_id, "stale version", "version"), (GOLDENS[2].entity_id, "other version", "version")}


def test_a_row_behind_its_golden_record_with_every_value_equal_is_right(tmp_path: Path) -> None:
    """The later changes touched none of its fields (a death date, for a subscription without
    it): the router does not deliver those, so the row stays at the version it had."""
    behind = {**_delivery(GOLDENS[1]), "version": 4}
    assert _check(_rows(tmp_path, [_delivery(GOLDENS[0]), behind, _delivery(GOLDENS[2])])).ok


def test_an_entity_without_a_value_in_any_approved_field_is_allowed_not_required(tmp_path: Path) -> None:
    """Only its non-approved fields are set (a death date from health, no record from
    public security): the router delivers it on a backfill only, as nulls."""
    bare = Golden(entity_id="610102199404044567", version=1, values={"date_of_death": date(2026, 11, 30)})
    without = entitlement.check(_subscription(), [*GOLDENS, bare],
                                _rows(tmp_path, [_delivery(golden) for golden in GOLDENS]), REGISTRY, KEY)
    assert without.ok, without.failure()


def test_a_row_the_filter_excludes_is_an_extra_row(tmp_path: Path) -> None:
    result = _check(_rows(tmp_path, [_delivery(golden) for golden in GOLDENS]), filters=("household_region=610102",))
    assert result.entities == 2
    assert [(d.entity_id, d.kind) for d in result.differences] == [(GOLDENS[2].entity_id, "extra row")]


def test_a_deleted_golden_record_is_not_expected_in_the_store(tmp_path: Path) -> None:
    gone = Golden(entity_id=GOLDENS[2].entity_id, version=6, deleted=True)
    result = entitlement.check(_subscription(), [*GOLDENS[:2], gone],
                               _rows(tmp_path, [_delivery(golden) for golden in GOLDENS[:2]]), REGISTRY, KEY)
    assert result.ok and result.entities == 2
