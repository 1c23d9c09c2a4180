"""Make a cluster match the catalog: compare, plan, then change only what differs.

Running it twice changes nothing the second time. Topics are never deleted unless the caller
asks for it explicitly, and partitions are only ever added (Kafka cannot remove them).

Replication is compared too: a topic made on one broker keeps one replica when the cluster
grows, while the catalog's ``min.insync.replicas`` rises with the brokers — a topic that then
shows "in sync" cannot take a write with ``acks=all``. So a topic with fewer replicas than the
catalog wants (capped at the brokers) is drifted, and applying it reassigns each partition to
more brokers (the current replicas stay, so no data moves off them) and waits for the new
replicas to catch up. ``min.insync.replicas`` is never raised above the replicas a topic has:
when the reassignment has not completed, that change is refused and reported.

Why one module of about 310 lines: compare, grow, reassign and the min.insync.replicas guard
must run in this order on one reading of the cluster; split, the order would be implicit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from govbus.errors import GovbusError
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
    replication: int | None = None  # the fewest replicas any of its partitions has
    reassignment: dict[int, list[int]] = field(default_factory=dict)  # partition → its new replicas

    def describe(self) -> str:
        details = list(self.notes)
        if self.state == "missing":
            details.append(f"{self.spec.partitions} partitions, replication {self.spec.replication_factor}")
        if self.partitions is not None and self.partitions < self.spec.partitions:
            details.append(f"partitions {self.partitions} → {self.spec.partitions}")
        if self.reassignment:
            details.append(f"replication {self.replication} → {self.spec.replication_factor} "
                           f"(reassigning {len(self.reassignment)} partition(s))")
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
    described = _described(admin, [spec.name for spec in present])
    configs = _current_configs(admin, [spec.name for spec in present])
    brokers = broker_ids(admin) if present else []
    comparisons = []
    for spec in specs:
        if spec.name not in existing:
            comparisons.append(TopicComparison(spec, "missing"))
            continue
        comparisons.append(_compare_one(spec, described[spec.name], configs.get(spec.name, {}), brokers))
    return comparisons


_CATCHING_UP = (0, 3, 5)  # no error, UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE: metadata on its way


def _described(admin: KafkaAdminClient, topics: list[str], wait: float = 15.0) -> dict[str, dict]:
    """Each topic's description, with its partitions. A topic just made is listed by one
    broker a moment before the broker asked knows its partitions (seen in CI on three nodes:
    described with none, it looked like a topic of replication 0 to grow from nothing), so
    such a description is asked again for up to `wait` seconds before it counts."""
    if not topics:
        return {}
    deadline = time.monotonic() + wait
    while True:
        described = {topic["name"]: topic for topic in admin.describe_topics(topics)}
        unknown = [name for name in topics if not described.get(name, {}).get("partitions")
                   and described.get(name, {}).get("error_code", 0) in _CATCHING_UP]
        if not unknown:
            return described
        if time.monotonic() >= deadline:
            raise TopicApplyError(f"the cluster lists {', '.join(unknown)} but describes no partitions of it after "
                             f"{wait:.0f} s; is a broker of it down? `govbus broker status` shows them")
        time.sleep(0.5)


def _compare_one(spec: TopicSpec, described: dict, current: dict[str, str], brokers: list[int]) -> TopicComparison:
    changes = {key: (current.get(key), value) for key, value in spec.config.items() if current.get(key) != value}
    count = len(described["partitions"])
    replicas = {partition["partition_index"]: list(partition["replica_nodes"]) for partition in described["partitions"]}
    replication = min((len(nodes) for nodes in replicas.values()), default=0)
    notes = [f"has {count} partitions, more than the catalog's {spec.partitions} (Kafka cannot remove partitions)"] if count > spec.partitions else []
    if replication > spec.replication_factor:
        notes.append(f"has {replication} replicas, more than the catalog's {spec.replication_factor} (left as it is)")
    reassignment = plan_reassignment(replicas, spec.replication_factor, brokers)
    drifted = bool(changes) or count < spec.partitions or bool(reassignment)
    return TopicComparison(spec, "drifted" if drifted else "in sync", count, changes, tuple(notes), replication,
                           reassignment)


def broker_ids(admin: KafkaAdminClient) -> list[int]:
    """The ids of the brokers that can hold replicas (not fenced), in order."""
    return sorted(broker["broker_id"] for broker in admin.describe_cluster()["brokers"] if not broker.get("is_fenced"))


def plan_reassignment(replicas: dict[int, list[int]], wanted: int, brokers: list[int]) -> dict[int, list[int]]:
    """Partition → its new replica list, for each partition with fewer than `wanted` replicas:
    its current replicas first (the leader stays, nothing is copied off them), then brokers
    it lacks, taken in turn from a different starting broker per partition so that the new
    replicas spread over the cluster."""
    plan = {}
    for partition, current in sorted(replicas.items()):
        if len(current) >= wanted:
            continue
        others = [broker for broker in brokers if broker not in current]
        start = partition % len(others) if others else 0
        added = (others[start:] + others[:start])[:wanted - len(current)]
        if added:
            plan[partition] = current + added
    return plan


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
        _await_partitions(admin, grow)
        done += [f"raised {name} to {count} partitions" for name, count in grow.items()]
    reassign = [c for c in comparisons if c.reassignment]
    if reassign and grow:  # partitions just added took the old replication: plan them too
        reassign = [c for c in compare(admin, [c.spec for c in reassign]) if c.reassignment]
    if reassign:
        done += _reassign(admin, reassign)
    comparisons, refused = _guard_min_insync(admin, comparisons)
    done += refused
    alter = [c for c in comparisons if c.config_changes]
    if alter:
        admin.alter_configs([
            ConfigResource(ConfigResourceType.TOPIC, c.spec.name, configs={k: new for k, (_, new) in c.config_changes.items()})
            for c in alter
        ])
        _await_configs(admin, {c.spec.name: {k: new for k, (_, new) in c.config_changes.items()} for c in alter})
        done += [f"altered {c.spec.name}: " + ", ".join(f"{k}={new}" for k, (_, new) in c.config_changes.items()) for c in alter]
    return done


REASSIGNMENT_TIMEOUT = 120.0  # seconds to wait for new replicas to join the in-sync set


def _reassign(admin: KafkaAdminClient, comparisons: list[TopicComparison]) -> list[str]:
    """Give each drifted partition its planned replicas, then wait until they are in sync."""
    wanted = {TopicPartition(c.spec.name, partition): replicas
              for c in comparisons for partition, replicas in c.reassignment.items()}
    failed = {tp: error for tp, error in admin.alter_partition_reassignments(wanted).items() if error is not None}
    if failed:
        raise TopicApplyError("the brokers refused to reassign " + ", ".join(
            f"{tp.topic}[{tp.partition}] ({error.__name__})" for tp, error in sorted(failed.items())))
    _await_replicas(admin, {c.spec.name: c.spec.replication_factor for c in comparisons})
    return [f"reassigned {c.spec.name}: replication {c.replication} → {c.spec.replication_factor} "
            f"({len(c.reassignment)} partition(s))" for c in comparisons]


PARTITIONS_TIMEOUT = 30.0  # seconds to wait for partitions just added to be listed with an in-sync replica


def _await_partitions(admin: KafkaAdminClient, wanted: dict[str, int], timeout: float = PARTITIONS_TIMEOUT) -> None:
    """Until the broker asked lists every topic with its new partition count, each with an in-sync
    replica. Without it the next steps read the topic as it was: its reassignment plan missed the
    new partitions and min.insync.replicas was refused as "0 in-sync replicas" (seen in CI)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = {topic["name"]: topic["partitions"] for topic in admin.describe_topics(list(wanted))}
        if all(len(listed.get(name, ())) >= count and all(p["isr_nodes"] for p in listed[name])
               for name, count in wanted.items()):
            return
        time.sleep(0.2)


def _await_replicas(admin: KafkaAdminClient, wanted: dict[str, int], timeout: float = REASSIGNMENT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(replication >= wanted[name] for name, replication in _in_sync_replication(admin, list(wanted)).items()):
            return
        time.sleep(0.5)


def _in_sync_replication(admin: KafkaAdminClient, topics: list[str]) -> dict[str, int]:
    """Per topic, the fewest in-sync replicas of any partition (0 for a topic not found)."""
    found = {topic["name"]: min((len(p["isr_nodes"]) for p in topic["partitions"]), default=0)
             for topic in admin.describe_topics(topics)}
    return {topic: found.get(topic, 0) for topic in topics}


def _guard_min_insync(admin: KafkaAdminClient,
                      comparisons: list[TopicComparison]) -> tuple[list[TopicComparison], list[str]]:
    """The comparisons without a change raising min.insync.replicas above the topic's in-sync
    replicas (one that would make every acks=all write fail), and a line per refusal."""
    raising = [c for c in comparisons if "min.insync.replicas" in c.config_changes]
    if not raising:
        return comparisons, []
    replication = _in_sync_replication(admin, [c.spec.name for c in raising])
    kept, refused = [], []
    for comparison in comparisons:
        wanted = comparison.config_changes.get("min.insync.replicas")
        have = replication.get(comparison.spec.name)
        if wanted is not None and have is not None and int(wanted[1]) > have:
            refused.append(f"refused to raise {comparison.spec.name} min.insync.replicas to {wanted[1]}: it has "
                           f"{have} in-sync replica(s); every acks=all write would fail (raise its replication first)")
            changes = {k: v for k, v in comparison.config_changes.items() if k != "min.insync.replicas"}
            comparison = TopicComparison(comparison.spec, comparison.state, comparison.partitions, changes,
                                         comparison.notes, comparison.replication, comparison.reassignment)
        kept.append(comparison)
    return kept, refused


class TopicApplyError(GovbusError):
    """The cluster refused a change the catalog calls for; the message says which."""


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
    from govbus.processors.governance import control
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
