"""Fan-out, in process: the router's cost per change against the number of subscriptions.

A province has thousands of subscriptions per library, most of them asking for the same few
things (the identity basics for data verification, the address for work reference). The
router projects and encodes a change once per distinct projection (``RouterLogic.deliver_group``)
and then only changes the entity id where a subscription knows it by a pseudonym. Measured
here on the hot path's real shared changes at 4, 40 and 400 subscriptions — 4 distinct
projections, then ten shared by 4 and by 40 subscriptions each — with grouping on and, in the
same run as its baseline, off (one projection per subscription, as before). Under the
worker's garbage-collector settings (``govbus.collector``): a wide fan-out makes many
short-lived objects per change, and the defaults' collections were a fifth of its cost.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from govbus import collector
from govbus.bench import workload
from govbus.bench.context import Context
from govbus.processors.governance import subscriptions as rules
from govbus.processors.gate.logic import GateLogic
from govbus.processors.router.projection import Projector
from govbus.processors.router.logic import RouterLogic, SubscriptionBook
from govbus.processors.governance.subscriptions import Subscription, SubscriptionRequest
from govbus.schemas.codec import default_codec
from govbus.settings import Settings
from govbus.topics.catalog import load_catalog
from govbus.topics.names import TopicNames

PARTITIONS = 6
CHANGES = 600  # routed per measurement: enough for a steady figure, few enough at 400 ungrouped
COUNTS = (4, 40, 400)
# Ten distinct projections: five field sets, each for a purpose without masks and one with
# (work_reference masks the identifiers and hides the key: every subscription a pseudonym of its own).
FIELD_SETS = (("citizen_id", "name", "sex"), ("citizen_id", "name", "date_of_birth"),
              ("citizen_id", "name", "household_region"), ("citizen_id", "name", "ethnicity"),
              ("citizen_id", "name", "sex", "date_of_birth", "household_region"))
PURPOSES = ("data_verification", "work_reference")


def run(context: Context) -> dict[str, Any]:
    settings = Settings(topic_prefix="bench-fan.", catalog_dir=context.settings.catalog_dir,
                        key_secret=context.settings.key_secret)
    catalog, codec = load_catalog(settings.catalog_dir), default_codec()
    shared = _shared_changes(settings, catalog, codec, min(CHANGES, context.sizes.events))
    distinct = [_approved(catalog, codec.registry, fields, purpose) for fields in FIELD_SETS for purpose in PURPOSES]
    collector.tune()  # as the router worker runs
    result: dict[str, Any] = {"changes": len(shared), "distinct_projections": {}, "router_us_per_change": {},
                              "router_us_per_change_ungrouped": {}, "deliveries_per_change": {}}
    for count in COUNTS:
        templates = distinct[:4] if count == 4 else distinct
        subscriptions = [templates[n % len(templates)].model_copy(update={"id": f"sub-fan-{n}", "department": f"d{n:04d}"})
                         for n in range(count)]
        projectors = tuple(Projector.for_subscription(s, codec.registry, settings.key_secret.encode()) for s in subscriptions)
        result["distinct_projections"][count] = len({p.projection for p in projectors})
        for grouping, key in ((True, "router_us_per_change"), (False, "router_us_per_change_ungrouped")):
            seconds, outputs = _route(settings, catalog, codec, projectors, shared, grouping)
            result[key][count] = round(seconds / len(shared) * 1e6, 1)
            result["deliveries_per_change"][count] = round(outputs / len(shared) - 1, 1)  # less the sharing record
    grouped = result["router_us_per_change"]
    result["grouped_400_over_40"] = round(grouped[400] / grouped[40], 2)
    result["ungrouped_400_over_40"] = round(result["router_us_per_change_ungrouped"][400]
                                            / result["router_us_per_change_ungrouped"][40], 2)
    return result


def _approved(catalog, registry, fields: tuple[str, ...], purpose: str) -> Subscription:
    request = SubscriptionRequest(department="hr_social_security", library=workload.LIBRARY, fields=fields, purpose=purpose)
    subscription = rules.evaluate(request, catalog, registry, datetime.now(timezone.utc))
    assert subscription.state == "approved", subscription.decision  # unconditional fields only
    return subscription


def _shared_changes(settings: Settings, catalog, codec, count: int) -> list[Any]:
    """The gate's shared changes for new people (the hot path's workload)."""
    names = TopicNames(settings.topic_prefix)
    gate = GateLogic(workload.LIBRARY, catalog, codec, names, secret=settings.key_secret.encode())
    topic, shared = names.ingest(workload.LIBRARY, workload.SOURCE), []
    for offset, (key, value, headers) in enumerate(
            workload.encoded(workload.population_changes(count, seed=7), settings.key_secret.encode())):
        step = gate.handle(topic, 0, offset, key, value, headers, None)
        shared += [output for output in step.outputs if output.topic == gate.shared_topic]
    return shared


def _route(settings: Settings, catalog, codec, projectors: tuple[Projector, ...], shared: list[Any],
           grouping: bool) -> tuple[float, int]:
    book = SubscriptionBook(settings, catalog, codec)
    book.by_library[workload.LIBRARY] = projectors
    router = RouterLogic(workload.LIBRARY, settings, codec, book)
    router.grouping = grouping
    now_ms, outputs, head = int(time.time() * 1000), 0, _genesis()
    router.route(shared[0].value, shared[0].headers, 0, 0, now_ms, head)  # warm: caches, parsed schemas
    started = time.perf_counter()
    for offset, output in enumerate(shared):
        routed, head = router.route(output.value, output.headers, offset % PARTITIONS, offset, now_ms, head)
        outputs += len(routed)
    return time.perf_counter() - started, outputs


def _genesis() -> str:
    from govbus.processors.governance.audit import GENESIS

    return GENESIS
