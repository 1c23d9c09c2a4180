"""The simulation's two claims, checked: the capacity model predicted what the broker counted,
and every department's store holds exactly what it is entitled to.

Counting asks the broker (``counting``) as the admin principal — a measurement, not an act on
the bus; the stores are read from their files, the golden records from ``state.<library>``
(``entitlement.read_goldens``), each store compared with the router's own projector
(``entitlement.check``) and each life-event log with the events the subscription was owed
(``workload.expect``: by construction, not by the gate's rule).
"""

from __future__ import annotations

import time
from functools import partial
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from govbus import clients, entitlement
from govbus.consumers.stores import open_store
from govbus.processors.governance.subscriptions import Subscription
from govbus.schemas.registry import default_registry
from govbus.settings import Settings
from govbus.simulate import counting, model
from govbus.simulate.workload import Expected
from govbus.topics.catalog import Catalog
from govbus.topics.names import TopicNames

COMPARED_MESSAGES = ("ingest", "shared", "state", "deliver", "audit", "control", "dlq")
STORE_TIMEOUT_S = 60.0


def counted(settings: Settings, catalog: Catalog, principals: Iterable[str]) -> dict[str, Any]:
    """Topics, partitions and ACLs of the bus as the broker lists them, and its messages read."""
    names = TopicNames(settings.topic_prefix)
    admin = clients.admin(settings)
    try:
        partitions = counting.bus_topics(admin, names)
        acl_total = counting.bus_acls(admin, catalog, names, principals)
    finally:
        admin.close()
    read = counting.count_messages(settings, partitions)
    kind = partial(counting.topic_kind, catalog=catalog, names=names)
    message = partial(counting.message_kind, names=names)
    messages, volume = counting.by_kind(read.messages, message), counting.by_kind(read.bytes, message)
    return {"topics": counting.by_kind(dict.fromkeys(partitions, 1), kind),
            "partitions": counting.by_kind(partitions, kind), "acls": acl_total,
            "messages": messages, "bytes": volume, "log_end_offsets": counting.by_kind(read.log_end, message),
            "mean_message_bytes": {name: volume[name] / count for name, count in messages.items() if count}}


def at_loaded_sizes(shape: model.Shape, departments: int, subscriptions: Mapping[str, Subscription],
                    expected: Expected, entities: Mapping[str, int], acts: int,
                    message_bytes: Mapping[str, float] | None = None) -> model.Province:
    """The capacity model's inputs for what the run did: its departments, subscriptions and
    their delivery topics, the changes it published and the fan-out its plan implies."""
    pairs: dict[str, set[str]] = {}
    per_library: dict[str, int] = {}
    for subscription in subscriptions.values():
        pairs.setdefault(subscription.library, set()).add(subscription.department)
        per_library[subscription.library] = per_library.get(subscription.library, 0) + 1
    changes = dict(expected.applied)
    fan_out = {library: (expected.record_deliveries[library] + expected.event_deliveries[library]) / count
               for library, count in changes.items() if count}
    routed = {library: expected.routed[library] / count for library, count in changes.items() if count}
    return model.Province(departments=departments, delivery_topics={k: len(v) for k, v in pairs.items()},
                          subscriptions=per_library, entities=dict(entities), changes=changes, fan_out=fan_out,
                          routed_share=routed, acts=acts,
                          message_bytes=dict(message_bytes or model.MESSAGE_BYTES))


def comparison(predicted: model.Prediction, found: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per counted quantity: the model's figure, the broker's, and whether they agree."""
    rows = [_row(f"topics: {kind}", predicted.topics[kind], found["topics"].get(kind, 0)) for kind in predicted.topics]
    rows += [_row(f"partitions: {kind}", predicted.partitions[kind], found["partitions"].get(kind, 0))
             for kind in predicted.partitions]
    rows.append(_row("ACLs", predicted.acls, found["acls"]))
    rows += [_row(f"messages: {kind}", predicted.messages.get(kind, 0), found["messages"].get(kind, 0))
             for kind in COMPARED_MESSAGES]
    return rows


def _row(quantity: str, predicted: float, found: float) -> dict[str, Any]:
    return {"quantity": quantity, "predicted": round(predicted, 3), "counted": found,
            "equal": round(predicted) == found}


@dataclass(frozen=True)
class StoreCheck:
    """One subscription's store, checked: its department, library, kind, and what differs."""

    department: str
    library: str
    subscription_id: str
    kind: str  # records | events
    expected: int
    found: int
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def check_stores(settings: Settings, subscriptions: Mapping[str, Subscription], stores: Path,
                 expected: Expected, timeout: float = STORE_TIMEOUT_S) -> list[StoreCheck]:
    """Every subscription's store, retried while the subscribers catch up (a store may be
    behind for a moment, never wrong once caught up)."""
    registry, deadline = default_registry(), time.monotonic() + timeout
    while True:
        goldens = {library: entitlement.read_goldens(settings, library, registry)
                   for library in {s.library for s in subscriptions.values() if s.fields}}
        results = [_check_one(settings, subscription, stores, goldens, expected, registry)
                   for subscription in sorted(subscriptions.values(), key=lambda s: (s.department, s.id))]
        if all(result.ok for result in results) or time.monotonic() > deadline:
            return results
        time.sleep(2)


def _check_one(settings: Settings, subscription: Subscription, stores: Path, goldens: Mapping[str, list],
               expected: Expected, registry: Any) -> StoreCheck:
    with open_store(f"sqlite:///{stores / (subscription.department + '.db')}") as store:
        if not subscription.fields:
            logged = store.events(subscription.library, subscription_id=subscription.id)
            return _events_check(subscription, [row["entity_id"] for row in logged], expected)
        rows = store.rows(subscription.library, subscription_id=subscription.id)
    result = entitlement.check(subscription, goldens[subscription.library], rows, registry, settings.key_secret.encode())
    return StoreCheck(subscription.department, subscription.library, subscription.id, "records", result.entities,
                      result.rows, None if result.ok else result.failure())


def _events_check(subscription: Subscription, logged: list[str], expected: Expected) -> StoreCheck:
    """The event log holds exactly the events owed, each once."""
    owed = expected.events.get(subscription.id, set())
    problem = None
    if sorted(logged) != sorted(owed):
        missing, extra = sorted(owed - set(logged)), sorted(set(logged) - owed)
        problem = (f"{subscription.department}'s {subscription.library} event log ({', '.join(subscription.events)}) "
                   f"is not the {len(owed)} events owed: {len(logged)} logged, missing {missing[:3]}, extra {extra[:3]}"
                   + (", some twice" if len(logged) != len(set(logged)) else ""))
    return StoreCheck(subscription.department, subscription.library, subscription.id, "events", len(owed),
                      len(logged), problem)
