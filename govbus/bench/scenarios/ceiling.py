"""The ceiling: the same records through Kafka with no bus logic at all.

(a) Kafka's own tools from its jars: ``ProducerPerformance`` (acks=all, records of the
    benchmark's average encoded size) and ``ConsumerPerformance`` reading them back — what
    the broker on this machine can take from a fast client.
(b) Our Python stack: kafka-python's producer, configured as the bus's producers are
    (acks=all, idempotent), sending the benchmark's Avro-encoded events (encoded up front),
    then a plain consumer reading them all — the limit for any Python component of the bus.
Both log in as the admin principal over SASL/SCRAM, like every client of the bus.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

from kafka import TopicPartition
from kafka.admin import NewTopic

from govbus import clients
from govbus.bench import workload
from govbus.bench.context import Context
from govbus.bench.measure import rounded
from govbus.broker.runtime import ensure_jars, find_java
from govbus.settings import Settings

PARTITIONS = 6  # as the population library's topics
_PRODUCER_SUMMARY = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency"
    r"(?:, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th)?")


def run(context: Context) -> dict[str, Any]:
    settings = context.admin_settings("ceiling")
    count = context.sizes.ceiling_events
    messages = workload.encoded(workload.population_changes(count, seed=33), settings.key_secret.encode())
    record_bytes = sum(len(value) for _, value, _ in messages) / len(messages)
    tool_topic, python_topic = settings.topic_prefix + "ceiling.kafka-tool", settings.topic_prefix + "ceiling.python"
    _create_topics(settings, [tool_topic, python_topic])
    return rounded({
        "records": count, "record_bytes": record_bytes, "partitions": PARTITIONS,
        "kafka_tool": kafka_tool(context, settings, tool_topic, count, int(record_bytes)),
        "python": python_stack(settings, python_topic, messages),
    })


def _create_topics(settings: Settings, names: list[str]) -> None:
    admin = clients.admin(settings)
    try:
        admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
    finally:
        admin.close()


def python_stack(settings: Settings, topic: str, messages: list[tuple[bytes, bytes, list]]) -> dict[str, float]:
    producer = clients.producer(settings)
    try:
        started = time.perf_counter()
        for key, value, headers in messages:
            producer.send(topic, key=key, value=value, headers=headers)
        producer.flush()
        produced = time.perf_counter() - started
    finally:
        producer.close()
    consumer = clients.consumer(settings)
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        read, started = 0, time.perf_counter()
        while read < len(messages):
            read += sum(len(records) for records in consumer.poll(timeout_ms=1000, max_records=5000).values())
        consumed = time.perf_counter() - started
    finally:
        consumer.close()
    count = len(messages)
    return {"producer_events_per_s": count / produced, "consumer_events_per_s": count / consumed,
            "events_per_s": count / (produced + consumed), "producer_seconds": produced, "consumer_seconds": consumed}


def kafka_tool(context: Context, settings: Settings, topic: str, count: int, record_bytes: int) -> dict[str, Any]:
    java, libs = find_java().executable, ensure_jars(context.settings.home)
    config = _client_config(settings, context.work / "ceiling-client.properties")
    base = [java, "-Xmx512m", "-cp", f"{libs}/*"]
    produced = _run([*base, "org.apache.kafka.tools.ProducerPerformance", "--topic", topic, "--num-records", str(count),
                     "--record-size", str(record_bytes), "--throughput", "-1", "--producer.config", str(config),
                     "--producer-props", "acks=all", "enable.idempotence=true"])
    summary = [m for m in _PRODUCER_SUMMARY.finditer(produced)][-1]
    producer = {"records_per_s": float(summary.group(2)), "mb_per_s": float(summary.group(3)),
                "avg_latency_ms": float(summary.group(4)), "max_latency_ms": float(summary.group(5))}
    if summary.group(6):
        producer |= {"p50_ms": float(summary.group(6)), "p95_ms": float(summary.group(7)), "p99_ms": float(summary.group(8))}
    consumed = _run([*base, "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", settings.bootstrap_servers,
                     "--topic", topic, "--num-records", str(count), "--command-config", str(config),
                     "--group", f"{settings.topic_prefix}govbus-ceiling", "--timeout", "60000"])
    return {"producer": producer, "consumer": _consumer_summary(consumed)}


def _consumer_summary(output: str) -> dict[str, float]:
    """The CSV line after the header: …, MB.sec, data.consumed.in.nMsg, nMsg.sec, …"""
    lines = [line for line in output.splitlines() if line.count(",") >= 5]
    header = [name.strip() for name in lines[0].split(",")]
    values = [value.strip() for value in lines[-1].split(",")]
    row = dict(zip(header, values))
    return {"records_per_s": float(row["nMsg.sec"]), "mb_per_s": float(row["MB.sec"]),
            "fetch_records_per_s": float(row.get("fetch.nMsg.sec", row["nMsg.sec"]))}


def _client_config(settings: Settings, path: Path) -> Path:
    lines = [f"bootstrap.servers={settings.bootstrap_servers}"]
    if settings.security_protocol != "PLAINTEXT":
        login = clients.sasl_credentials(settings)
        lines += [f"security.protocol={settings.security_protocol}", "sasl.mechanism=SCRAM-SHA-512",
                  "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
                  f'username="{login.username}" password="{login.password}";']
        if settings.security_protocol == "SASL_SSL":
            lines.append(f"ssl.truststore.location={clients.ca_file(settings)}")
            lines.append("ssl.truststore.type=PEM")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def _run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"{command[4]} failed ({result.returncode}): {(result.stderr or result.stdout)[-2000:]}")
    return result.stdout
