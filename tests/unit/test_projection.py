"""The router's projection and masks: a subscriber sees exactly what the rules allow."""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govbus.schemas.masks import MASKS, MaskError, mask
from govbus.processors.router.projection import ProjectionError, Projector
from govbus.processors.governance.subscriptions import BUS, Subscription, Transition
from govbus.schemas.registry import (SCHEMA_DIRECTORY, FieldPolicy, SchemaError, SchemaRegistry, catalog_purposes,
                                     default_registry)
from govbus.settings import get_settings
from govbus.topics.catalog import load_catalog

NOW = datetime(2025, 3, 1, tzinfo=timezone.utc)
KEY = b"k" * 32
REGISTRY = default_registry()
PURPOSES = catalog_purposes()
CANARY = "CANARY-not-shared-7f3a"


def subscription(fields: tuple[str, ...], *, library: str = "population", purpose: str = "administrative_basis",
                 state: str = "approved", by: str = "public_security", filters: tuple[str, ...] = (),
                 until: date | None = None) -> Subscription:
    history = [Transition(state="requested", by="health", at=NOW)]
    if state != "requested":
        history.append(Transition(state=state, by=by, at=NOW))
    return Subscription(id="sub-1", department="health", library=library, fields=fields, purpose=purpose,
                        filters=filters, until=until, owner="public_security", state=state,
                        history=tuple(history))


def person(**overrides: object) -> dict:
    data = {"citizen_id": "610102199001011234", "name": "欧阳娜娜", "sex": "female",
            "date_of_birth": date(1990, 1, 1), "household_region": "610102",
            "household_address": "陕西省西安市碑林区南大街1号", "marital_status": "married",
            "biometric_digest": CANARY}
    data.update(overrides)
    return data


def change(op: str = "UPSERT", fields_set: list[str] | None = None, data: dict | None = None, **envelope: object) -> dict:
    return {"event_id": "e-1", "entity_id": "610102199001011234", "version": 4, "op": op,
            "fields_set": list(data or person()) if fields_set is None else fields_set,
            "data": person() if data is None else data, "backfill": False, "valid_from": None,
            "recorded_at": NOW, "source_department": "public_security", **envelope}


def projector(fields: tuple[str, ...], **options: object) -> Projector:
    return Projector.for_subscription(subscription(fields, **options), REGISTRY, KEY)


# --- the property: nothing forbidden ever leaves ----------------------------------------
SHARING = st.sampled_from(["unconditional", "conditional", "not_shared"])
MASK_CHOICE = st.one_of(st.none(), st.tuples(st.sampled_from(sorted(MASKS)),
                                             st.one_of(st.just("all"), st.sets(st.sampled_from(PURPOSES)))))


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, FieldPolicy], Subscription, dict]:
    names = [f"field_{index}" for index in range(draw(st.integers(1, 8)))]
    policies = {"key": FieldPolicy("key", "string", "unconditional", "public_security", "public")}
    for name in names:
        chosen = draw(MASK_CHOICE)
        policies[name] = FieldPolicy(
            name, "string", draw(SHARING), "public_security", "personal",
            mask=chosen[0] if chosen else None,
            mask_for=frozenset(chosen[1]) if chosen and chosen[1] != "all" else frozenset(),
            mask_all=bool(chosen) and chosen[1] == "all")
    listed = draw(st.lists(st.sampled_from([*names, "key", "unknown_field"]), min_size=1, unique=True))
    state = draw(st.sampled_from(["requested", "approved", "refused", "revoked", "expired"]))
    chosen_subscription = subscription(tuple(listed), purpose=draw(st.sampled_from(PURPOSES)), state=state,
                                       by=draw(st.sampled_from([BUS, "public_security"])))
    data = {name: (CANARY if policies[name].sharing == "not_shared" else f"value-{name}-0123456789")
            for name in names}
    data["key"] = "entity-0123456789"
    return policies, chosen_subscription, data


@settings(max_examples=400, deadline=None)
@given(cases())
def test_a_projection_never_holds_a_field_the_rules_forbid(case: tuple) -> None:
    policies, chosen, data = case
    delivered, masked = Projector(chosen, policies, "key", KEY).project(
        change(data=data, fields_set=list(data), entity_id="entity-0123456789"), NOW)
    if chosen.state != "approved":
        assert delivered is None
        return
    may_leave = {name for name in chosen.fields if name in policies and (
        policies[name].sharing == "unconditional"
        or (policies[name].sharing == "conditional" and not chosen.automatic))}
    if delivered is None:
        assert not may_leave
        return
    assert CANARY not in repr(delivered)
    assert set(delivered["data"]) == may_leave
    assert set(delivered["fields_set"]) <= may_leave
    for name, value in delivered["data"].items():
        rule = policies[name].mask_for_purpose(chosen.purpose)
        if rule is None:
            assert value == data[name] and name not in masked
        else:
            assert value == MASKS[rule](data[name]) and value != data[name] and name in masked


# --- examples --------------------------------------------------------------------------
def test_a_not_shared_field_is_dropped_even_when_an_approved_subscription_lists_it() -> None:
    delivered, _ = projector(("citizen_id", "biometric_digest")).project(change(), NOW)
    assert delivered is not None and list(delivered["data"]) == ["citizen_id"]
    assert CANARY not in repr(delivered)


def test_an_automatic_approval_never_delivers_a_conditional_field() -> None:
    delivered, _ = projector(("citizen_id", "marital_status"), by=BUS).project(change(), NOW)
    assert delivered is not None and list(delivered["data"]) == ["citizen_id"]


def test_work_reference_gets_masked_values_and_a_pseudonymous_entity_id() -> None:
    chosen = projector(("citizen_id", "name", "date_of_birth", "household_address", "sex"),
                       purpose="work_reference", by="public_security")
    delivered, masked = chosen.project(change(), NOW)
    assert delivered["data"] == {"citizen_id": "610102********1234", "name": "欧阳**",
                                 "date_of_birth": date(1990, 1, 1), "household_address": "陕西省西安市碑林区***",
                                 "sex": "female"}
    assert masked == ("citizen_id", "name", "date_of_birth", "household_address")
    assert delivered["entity_id"].startswith("p-") and "610102199001011234" not in repr(delivered)
    assert chosen.project(change(), NOW)[0]["entity_id"] == delivered["entity_id"]
    with pytest.raises(ProjectionError, match="pseudonym key"):
        Projector.for_subscription(subscription(("name",), purpose="work_reference"), REGISTRY)


def test_administrative_basis_gets_clear_values_and_the_real_entity_id() -> None:
    delivered, masked = projector(("citizen_id", "name")).project(change(), NOW)
    assert delivered["data"] == {"citizen_id": "610102199001011234", "name": "欧阳娜娜"}
    assert masked == () and delivered["entity_id"] == "610102199001011234"


@pytest.mark.parametrize("state", ["requested", "refused", "revoked", "expired"])
def test_a_subscription_that_is_not_approved_delivers_nothing(state: str) -> None:
    assert projector(("citizen_id", "name"), state=state).project(change(), NOW) == (None, ())


def test_an_approval_past_its_until_delivers_nothing() -> None:
    chosen = projector(("name",), until=date(2025, 3, 1))
    assert chosen.project(change(), NOW)[0] is not None
    assert chosen.project(change(), NOW + timedelta(days=1)) == (None, ())


def test_a_row_filter_selects_by_prefix_on_the_current_image() -> None:
    chosen = projector(("name",), filters=("household_region=6101..",))
    assert chosen.project(change(), NOW)[0] is not None
    assert chosen.project(change(data=person(household_region="620102")), NOW) == (None, ())
    assert chosen.project(change("DELETE", [], data={}), NOW) == (None, ())  # no image: cannot match


def test_a_change_that_takes_the_row_out_of_the_filter_is_a_delete_for_that_subscription() -> None:
    chosen = projector(("name",), filters=("household_region=6101..",))
    moved = change(fields_set=["household_region"], data=person(household_region="310104"),
                   before={"household_region": "610102"})
    delivered, masked = chosen.project(moved, NOW)
    assert delivered is not None and (delivered["op"], delivered["data"], delivered["fields_set"]) == ("DELETE", None, [])
    assert delivered["entity_id"] == "610102199001011234" and masked == ()


def test_a_change_outside_the_filter_before_and_after_is_not_delivered_at_all() -> None:
    """Not even as a DELETE: the subscriber would learn that the entity exists."""
    chosen = projector(("name",), filters=("household_region=6101..",))
    elsewhere = change(fields_set=["household_region"], data=person(household_region="310104"),
                       before={"household_region": "320102"})
    assert chosen.project(elsewhere, NOW) == (None, ())
    assert chosen.project({**elsewhere, "before": None}, NOW) == (None, ()), "no previous values: nothing to tell"


def test_a_filter_on_a_field_the_subscriber_may_not_see_disables_the_projection() -> None:
    chosen = projector(("name",), filters=("biometric_digest=CANARY..",))
    assert chosen.project(change(), NOW) == (None, ())


def test_a_live_change_to_other_fields_is_not_delivered_but_a_backfill_always_is() -> None:
    chosen = projector(("name",), filters=("household_region=6101..",))
    assert chosen.project(change(fields_set=["marital_status"]), NOW) == (None, ())
    moved, _ = chosen.project(change(fields_set=["household_region"]), NOW)
    assert moved["data"] == {"name": "欧阳娜娜"} and moved["fields_set"] == []
    backfill, _ = chosen.project(change("SNAPSHOT", ["marital_status"], backfill=True), NOW)
    assert backfill["backfill"] is True and backfill["data"] == {"name": "欧阳娜娜"}


def test_a_delete_carries_no_data_and_only_envelope_keys_leave() -> None:
    delivered, masked = projector(("name",)).project(change("DELETE", [], secret="x"), NOW)
    assert delivered["op"] == "DELETE" and delivered["data"] is None and masked == ()
    assert "secret" not in delivered


# --- masks -------------------------------------------------------------------------------
@pytest.mark.parametrize(("rule", "value", "masked"), [
    ("identity_number", "610102199001011234", "610102********1234"),
    ("identifier", "61010219900101123X", "610102********123X"),
    ("credit_code", "91610102MA6U1234XY", "91610102*********Y"),
    ("name", "张三", "张*"), ("name", "欧阳娜娜", "欧阳**"), ("name", "欧阳", "欧*"), ("name", "张", "*"),
    ("address", "陕西省西安市碑林区南大街1号", "陕西省西安市碑林区***"),
    ("address", "西安市莲湖路8号", "西安市***"), ("address", "西安市幸福小区3栋2单元", "西安市***"), ("address", "南大街1号", "南大***"),
    ("phone", "13812345678", "138****5678"),
    ("date_to_year", date(1990, 7, 12), date(1990, 1, 1)), ("year_only", "1990-07-12", "1990-01-01"),
    ("redact", "anything", None), ("name", None, None), ("name", ["张三", "李四"], ["张*", "李*"]),
    ("identity_number", "12345", "*****"), ("date_to_year", "not a date", "**********"),
])
def test_each_mask_hides_what_it_says(rule: str, value: object, masked: object) -> None:
    assert mask(rule)(value) == masked


def test_every_mask_the_schemas_name_is_one_the_router_applies() -> None:
    named = {policy.mask for library in REGISTRY.libraries() for version in REGISTRY.versions(library)
             for policy in REGISTRY.policy(library, version).values() if policy.mask}
    assert named and named <= set(MASKS)


def test_an_unknown_mask_rule_is_refused_with_the_known_ones() -> None:
    with pytest.raises(MaskError, match="unknown mask rule 'scramble'; known: address"):
        mask("scramble")


def _schemas_with_name_masked(directory: Path, rule: str) -> Path:
    """A copy of the packaged schemas whose population versions mask `name` with `rule` for
    every purpose (in every version alike: a change between versions would need a review)."""
    shutil.copytree(SCHEMA_DIRECTORY, directory, ignore=shutil.ignore_patterns("*.py", "__pycache__", "*.csv"))
    for path in (directory / "population").glob("v*.avsc"):
        schema = json.loads(path.read_text("utf-8"))
        for field in schema["fields"][0]["type"]["fields"]:
            if field["name"] == "name":
                field.update(mask=rule, mask_for="all")
        path.write_text(json.dumps(schema, ensure_ascii=False), "utf-8")
    return directory


def test_one_mask_table_drives_both_schema_validation_and_routing(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    phone = SchemaRegistry(_schemas_with_name_masked(tmp_path / "phone", "phone"))  # refused before: the router's only
    delivered, masked = Projector.for_subscription(subscription(("name",)), phone, KEY).project(change(), NOW)
    assert masked == ("name",) and delivered["data"]["name"] == MASKS["phone"]("欧阳娜娜")
    monkeypatch.setitem(MASKS, "initial_only", lambda value: value[:1])  # a rule added to the one table …
    added = SchemaRegistry(_schemas_with_name_masked(tmp_path / "added", "initial_only"))  # … is a name schemas may give
    delivered, _ = Projector.for_subscription(subscription(("name",)), added, KEY).project(change(), NOW)
    assert delivered["data"]["name"] == "欧"  # … and the rule the router applies
    monkeypatch.delitem(MASKS, "initial_only")
    with pytest.raises(SchemaError, match="field name: mask 'initial_only' is not defined in schemas/masks.py"):
        SchemaRegistry(tmp_path / "added")


def test_the_purposes_a_mask_may_name_are_the_catalogs(tmp_path: Path) -> None:
    assert PURPOSES == tuple(load_catalog(get_settings().catalog_dir).purposes)
    directory = _schemas_with_name_masked(tmp_path / "schemas", "name")
    for path in (directory / "population").glob("v*.avsc"):
        path.write_text(path.read_text("utf-8").replace('"mask_for": "all"', '"mask_for": ["tax_audit"]'), "utf-8")
    with pytest.raises(SchemaError, match="field name: mask_for must be \"all\" or a list of purposes from "
                                          "administrative_basis, data_verification, work_reference"):
        SchemaRegistry(directory)
    assert SchemaRegistry(directory, purposes=[*PURPOSES, "tax_audit"]).policy("population")["name"].mask_for == {"tax_audit"}
