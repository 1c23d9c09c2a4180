"""The router projects and encodes a change once per distinct projection, and what each
subscription receives is exactly what it received when each was projected alone: the same
topic, key, value (its own pseudonym where the key is hidden), headers and sharing record."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from govbus.processors.governance import subscriptions as rules
from govbus.processors.router.projection import Projector
from govbus.processors.router.logic import RouterLogic, SubscriptionBook
from govbus.processors.governance.subscriptions import SubscriptionRequest
from govbus.schemas.codec import default_codec, with_entity_id
from govbus.schemas.framing import ROUTED_AT
from govbus.schemas.registry import default_registry
from govbus.settings import get_settings
from govbus.topics.names import TopicNames

AT = datetime(2026, 12, 4, 9, 0, tzinfo=timezone.utc)
CITIZEN = "310104195305273787"


def subscriptions(catalog) -> list[rules.Subscription]:
    asked = [(("citizen_id", "name", "date_of_birth"), "work_reference")] * 3 + \
            [(("citizen_id", "name", "sex"), "data_verification")] * 2 + [(("name",), "data_verification")]
    made = []
    for number, (fields, purpose) in enumerate(asked):
        subscription = rules.evaluate(SubscriptionRequest(department="hr_social_security", library="population",
                                                          fields=fields, purpose=purpose), catalog, default_registry(), AT)
        made.append(subscription.model_copy(update={"id": f"sub-{number}", "department": f"d{number}"}))
    return made


def routed(catalog, grouping: bool):
    settings, codec = get_settings(), default_codec()
    book = SubscriptionBook(settings, catalog, codec)
    book.by_library["population"] = tuple(Projector.for_subscription(s, codec.registry, settings.key_secret.encode())
                                          for s in subscriptions(catalog))
    router = RouterLogic("population", settings, codec, book)
    router.grouping = grouping
    record = {"event_id": "e-1", "entity_id": CITIZEN, "op": "UPSERT", "fields_set": ["name", "sex", "date_of_birth"],
              "source_department": "public_security", "source_system": "unit", "sequence": 2,
              "valid_from": AT, "recorded_at": AT,
              "data": {"citizen_id": CITIZEN, "name": "李梓子", "sex": "female", "date_of_birth": datetime(1953, 5, 27).date()}}
    outputs, _ = router.route(codec.encode("population", record), [("ce_id", b"e-1")], 0, 3, int(AT.timestamp() * 1000),
                              "genesis")
    return outputs


def comparable(outputs):
    audit = TopicNames("").bus("audit.deliveries")
    deliveries = [(o.topic, o.key, o.value, [h for h in o.headers if h[0] != ROUTED_AT])
                  for o in outputs if not o.topic.endswith(audit)]
    (record,) = [json.loads(o.value) for o in outputs if o.topic.endswith(audit)]
    return deliveries, record["deliveries"]


def test_grouped_deliveries_are_those_made_one_subscription_at_a_time(catalog) -> None:
    grouped, alone = comparable(routed(catalog, True)), comparable(routed(catalog, False))
    assert len(grouped[0]) == 6
    assert grouped == alone


def test_each_pseudonymous_subscription_keeps_its_own_pseudonym_in_a_group(catalog) -> None:
    deliveries, _ = comparable(routed(catalog, True))
    masked = [default_codec().decode(value)[1]["entity_id"] for topic, _, value, _ in deliveries[:3]]
    assert len(set(masked)) == 3 and all(entity.startswith("p-") for entity in masked)
    assert {default_codec().decode(value)[1]["entity_id"] for _, _, value, _ in deliveries[3:5]} == {CITIZEN}


def test_an_entity_id_changed_in_place_is_the_encoding_with_that_id() -> None:
    codec = default_codec()
    record = {"event_id": "e" * 70, "entity_id": "short", "op": "DELETE", "fields_set": [], "source_department": "x",
              "source_system": "y", "sequence": 1, "valid_from": None, "recorded_at": AT, "data": {}}
    for other in ("", "p-" + "0" * 32, "长" * 80):
        assert with_entity_id(codec.encode("population", record), other) == \
            codec.encode("population", {**record, "entity_id": other})
