"""The foundation on a real broker: produce and consume, the catalog applied, restarts."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from kafka.admin import NewTopic

from govbus import clients
from govbus.broker.local import BrokerSecurity, LocalCluster
from govbus.broker.provision import ProvisionedBroker, free_port
from govbus.settings import Settings
from govbus.topics import apply as topic_apply


def _round_trip(settings: Settings, topic: str, values: list[bytes]) -> list[bytes]:
    producer = clients.producer(settings)
    for value in values:
        producer.send(topic, key=b"k", value=value)
    producer.flush()
    producer.close()
    consumer = clients.consumer(settings, topic, consumer_timeout_ms=10000)
    received = [message.value for message in consumer][: len(values)]
    consumer.close()
    return received


def _wait_for_config(admin, topic: str, key: str, value: str) -> None:
    """Config changes reach the broker's cache a moment after the controller accepts them."""
    deadline = time.monotonic() + 10
    while topic_apply._current_configs(admin, [topic]).get(topic, {}).get(key) != value:
        assert time.monotonic() < deadline, f"{topic} never showed {key}={value}"
        time.sleep(0.1)


def test_produce_and_consume_with_kafka_python(bus) -> None:
    topic = bus.names.bus(f"roundtrip.{uuid.uuid4().hex[:6]}")
    admin = clients.admin(bus.settings)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.wait_for_topics([topic])
    admin.close()
    values = [f"记录 {i}".encode() for i in range(20)]
    assert _round_trip(bus.settings, topic, values) == values


def test_topics_apply_creates_everything_then_changes_nothing(bus) -> None:
    first = bus.apply_catalog()
    assert any(line.startswith(f"created {bus.names.state('population')}") for line in first)
    assert bus.apply_catalog() == []
    admin = clients.admin(bus.settings)
    try:
        comparisons = topic_apply.compare(admin, topic_apply.desired_topics(bus.catalog, bus.names, admin))
    finally:
        admin.close()
    assert {c.state for c in comparisons} == {"in sync"}
    assert len(comparisons) == len(bus.catalog.topic_specs(bus.names))


def test_partition_increase_and_config_drift_are_applied(bus) -> None:
    bus.apply_catalog()
    library = bus.catalog.libraries["credit"]
    grown = bus.catalog.model_copy(update={"libraries": {
        **bus.catalog.libraries, "credit": library.model_copy(update={"partitions": library.partitions + 2})}})
    admin = clients.admin(bus.settings)
    try:
        from kafka.admin import ConfigResource, ConfigResourceType

        dlq = bus.names.dlq("population")
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, dlq, configs={"retention.ms": "1000"})])
        _wait_for_config(admin, dlq, "retention.ms", "1000")
        comparisons = topic_apply.compare(admin, topic_apply.desired_topics(grown, bus.names, admin))
        drifted = {c.spec.name: c for c in comparisons if c.state == "drifted"}
        assert set(drifted) == {bus.names.ingest("credit", "development_reform"), bus.names.shared("credit"),
                                bus.names.state("credit"), bus.names.dlq("credit"), bus.names.audit_heads("credit"),
                                bus.names.dlq("population")}
        changes = topic_apply.apply(admin, comparisons)
        assert f"raised {bus.names.shared('credit')} to {library.partitions + 2} partitions" in changes
        kept = next(c.spec.config["retention.ms"] for c in comparisons if c.spec.name == dlq)
        assert kept == str(90 * 24 * 3600 * 1000)  # dead_letters.retention: 90d in topics/bus.yaml
        assert any(line.startswith(f"altered {dlq}: retention.ms={kept}") for line in changes)
        after = topic_apply.compare(admin, topic_apply.desired_topics(grown, bus.names, admin))
        assert {c.state for c in after} == {"in sync"}
        (described,) = admin.describe_topics([bus.names.shared("credit")])
        assert len(described["partitions"]) == library.partitions + 2
    finally:
        admin.close()


def test_min_insync_replicas_is_not_raised_above_a_topics_replicas(bus) -> None:
    """On one broker a topic has one replica: a min.insync.replicas of 2 would refuse every
    acks=all write, so apply refuses that change, says why, and makes the others."""
    bus.apply_catalog()
    admin = clients.admin(bus.settings)
    try:
        (spec,) = [s for s in topic_apply.desired_topics(bus.catalog, bus.names, admin)
                   if s.name == bus.names.shared("population")]
        assert spec.replication_factor == 1 and spec.config["min.insync.replicas"] == "1"
        wanted = spec.model_copy(update={"config": {**spec.config, "min.insync.replicas": "2", "retention.ms": "86400000"}})
        (comparison,) = topic_apply.compare(admin, [wanted])
        assert comparison.state == "drifted" and comparison.replication == 1 and comparison.reassignment == {}
        changes = topic_apply.apply(admin, [comparison])
        assert f"refused to raise {spec.name} min.insync.replicas to 2: it has 1 in-sync replica(s)" in changes[0]
        assert changes[1:] == [f"altered {spec.name}: retention.ms=86400000"]
        assert topic_apply._current_configs(admin, [spec.name])[spec.name]["min.insync.replicas"] == "1"
    finally:
        admin.close()


def _secured_cluster(home: Path) -> tuple[LocalCluster, str]:
    password = "restart-test-admin-password"
    return LocalCluster(home, ports=[(free_port(), free_port())], heap="384m", jar_cache=Settings().home,
                        security=BrokerSecurity(password)), password


def test_stop_then_start_keeps_topics_and_their_data(tmp_path: Path, broker: ProvisionedBroker) -> None:
    cluster, password = _secured_cluster(tmp_path)
    try:
        settings = Settings(bootstrap_servers=cluster.start(), sasl_password=password)
        admin = clients.admin(settings)
        admin.create_topics([NewTopic("kept", 2, 1)])
        admin.wait_for_topics(["kept"])
        admin.close()
        assert _round_trip(settings, "kept", [b"before restart"]) == [b"before restart"]
        reports = cluster.stop()
        assert reports == [f"node 1: stopped cleanly (pid {reports[0].split('pid ')[1]}"]
        assert not cluster.status()[0].running
        cluster.start()
        assert cluster.status()[0].running
        consumer = clients.consumer(settings, "kept", consumer_timeout_ms=10000)
        assert [m.value for m in consumer] == [b"before restart"]
        consumer.close()
    finally:
        cluster.stop()


def test_a_second_start_is_refused_while_running(tmp_path: Path) -> None:
    cluster, _ = _secured_cluster(tmp_path)
    try:
        cluster.start()
        with pytest.raises(Exception, match="already running"):
            cluster.start()
    finally:
        cluster.stop()
