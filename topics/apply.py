"""Make a cluster match the catalog: compare, plan, then change only what differs.

Running it twice changes nothing the second time. Topics are never deleted unless the caller
asks for it explicitly, and partitions are only ever added (Kafka cannot remove them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from govbus.settings import Settings
from govbus.topics.catalog import Catalog, TopicSpec
from govbus.topics.names import TopicNames

TopicState = Literal["missing", "drifted", "in sync", "not in catalog"]


@dataclass(frozen=True)
class TopicComparison:
    spec: TopicSpec
    state: TopicState
    partitions: int | None = None
    config_changes: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        details = list(self.notes)
        if self.state == "missing":
            details.append(f"{self.spec.partitions} partitions, replication {self.spec.replication_factor}")
        if self.partitions is not None and self.partitions < self.spec.partitions:
            details.append(f"partitions {self.partitions} → {self.spec.partitions}")
        details += [f"{key} {old or 'default'} → {new}" for key, (old, new) in self.config_changes.items()]
        return "; ".join(details)


def fit_to_cluster(specs: list[TopicSpec], brokers: int, min_insync_replicas: int) -> list[TopicSpec]:
    """Cap replication at the number of brokers and set min.insync.replicas to match."""
    fitted = []
    for spec in specs:
        replication = min(spec.replication_factor, brokers)
        config = {**spec.config, "min.insync.replicas": str(min(min_insync_replicas, replication))}
        fitted.append(spec.model_copy(update={"replication_factor": replication, "config": config}))
    return fitted


def desired_topics(catalog: Catalog, names: TopicNames, admin: KafkaAdminClient) -> list[TopicSpec]:
    brokers = len(admin.describe_cluster()["brokers"])
    return fit_to_cluster(catalog.topic_specs(names), brokers, catalog.bus.min_insync_replicas)


def compare(admin: KafkaAdminClient, specs: list[TopicSpec]) -> list[TopicComparison]:
    """How each wanted topic stands on the cluster."""
    existing = set(admin.list_topics())
    present = [spec for spec in specs if spec.name in existing]
    partitions = {topic["name"]: len(topic["partitions"]) for topic in admin.describe_topics([s.name for s in present])} if present else {}
    configs = _current_configs(admin, [spec.name for spec in present])
    comparisons = []
    for spec in specs:
        if spec.name not in existing:
            comparisons.append(TopicComparison(spec, "missing"))
            continue
        current = configs.get(spec.name, {})
        changes = {key: (current.get(key), value) for key, value in spec.config.items() if current.get(key) != value}
        count = partitions[spec.name]
        notes = (f"has {count} partitions, more than the catalog's {spec.partitions} (Kafka cannot remove partitions)",) if count > spec.partitions else ()
        drifted = bool(changes) or count < spec.partitions
        comparisons.append(TopicComparison(spec, "drifted" if drifted else "in sync", count, changes, notes))
    return comparisons


def _current_configs(admin: KafkaAdminClient, topics: list[str]) -> dict[str, dict[str, str]]:
    if not topics:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in topics]
    described = admin.describe_configs(resources, config_filter="modified")
    topic_configs = described.get("topic", {})
    return {topic: {key: entry["value"] for key, entry in values.items()} for topic, values in topic_configs.items()}


def apply(admin: KafkaAdminClient, comparisons: list[TopicComparison]) -> list[str]:
    """Carry out the changes the comparisons call for; return one line per change made."""
    done: list[str] = []
    missing = [c.spec for c in comparisons if c.state == "missing"]
    if missing:
        new_topics = [NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.config) for s in missing]
        try:
            admin.create_topics(new_topics)
        except TopicAlreadyExistsError:
            pass  # made by a concurrent apply since we compared: that is the goal anyway
        admin.wait_for_topics([s.name for s in missing], timeout_ms=30000)
        done += [f"created {s.name} ({s.partitions} partitions, replication {s.replication_factor})" for s in missing]
    grow = {c.spec.name: c.spec.partitions for c in comparisons if c.partitions is not None and c.partitions < c.spec.partitions}
    if grow:
        admin.create_partitions(grow)
        done += [f"raised {name} to {count} partitions" for name, count in grow.items()]
    alter = [c for c in comparisons if c.config_changes]
    if alter:
        admin.alter_configs([
            ConfigResource(ConfigResourceType.TOPIC, c.spec.name, configs={k: new for k, (_, new) in c.config_changes.items()})
            for c in alter
        ])
        _await_configs(admin, {c.spec.name: {k: new for k, (_, new) in c.config_changes.items()} for c in alter})
        done += [f"altered {c.spec.name}: " + ", ".join(f"{k}={new}" for k, (_, new) in c.config_changes.items()) for c in alter]
    return done


def _await_configs(admin: KafkaAdminClient, wanted: dict[str, dict[str, str]], timeout: float = 15.0) -> None:
    """The broker accepts a change before its config cache shows it; wait, so that a
    comparison made right after an apply sees the cluster as it now is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = _current_configs(admin, list(wanted))
        if all(current.get(topic, {}).get(k) == v for topic, configs in wanted.items() for k, v in configs.items()):
            return
        time.sleep(0.1)


def unknown_topics(admin: KafkaAdminClient, specs: list[TopicSpec], names: TopicNames) -> list[str]:
    """Topics of this bus (same prefix, bus kinds) that the catalog does not name.

    Delivery topics are made on approval, not by the catalog, so they are never listed here.
    """
    wanted = {spec.name for spec in specs}
    kinds = ("ingest.", "shared.", "state.", "dlq.", "control.", "audit.", "metrics.")  # not deliver.*
    return sorted(
        topic for topic in admin.list_topics()
        if topic.startswith(names.prefix) and topic not in wanted
        and names.unprefixed(topic).startswith(kinds)
    )


def ensure_topic(admin: KafkaAdminClient, spec: TopicSpec, brokers: int, min_insync_replicas: int) -> bool:
    """Create one topic if it is missing (delivery topics on approval); True if made now."""
    (fitted,) = fit_to_cluster([spec], brokers, min_insync_replicas)
    comparison = compare(admin, [fitted])
    if comparison[0].state != "missing":
        return False
    apply(admin, comparison)
    return True


def apply_catalog(settings: Settings, catalog: Catalog, names: TopicNames) -> list[str]:
    """Topics from the catalog and, on a secured broker, the ACLs derived from it and the
    subscriptions: what an operator's init step (or a test, the bench, the demo) runs first."""
    from govbus import clients
    from govbus.processors import control
    from govbus.topics import acls

    admin = clients.admin(settings)
    try:
        changes = apply(admin, compare(admin, desired_topics(catalog, names, admin)))
        if settings.secured:
            subscriptions = control.read_all(settings.model_copy(update={"topic_prefix": names.prefix})).values()
            acls.reconcile(admin, catalog, names, subscriptions)
        return changes
    finally:
        admin.close()
