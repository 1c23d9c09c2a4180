"""The topology ceiling: the bus's shape with plain clients and no bus logic.

The same processes and fan-out as the bus, on the same broker in the same run:

    source ──▶ ingest ──"gate"──▶ state (same partition) + shared
                                   shared ──"router"──▶ 4 subscriber topics + audit
                                   each subscriber topic ──"subscriber"──▶ its SQLite store

Every stage reads a batch, hands every output to the producer, flushes once and commits the
batch's offsets (the subscribers: rows and positions in one SQLite transaction) — the
durability the bus keeps, without its decisions (no decoding, no rules, no projection, no
hash chain, no Kafka transactions). Run once with confluent-kafka (librdkafka) and once with
kafka-python, so the client choice stays measured. ``bus / topology ceiling`` (README) is the
bus's end-to-end rate over the confluent-kafka figure: the honest limit of this fan-out here.

Each stage is its own process (``python -m govbus.bench.scenarios.topology <client> <role> …``),
as the bus's are; it reports its CPU seconds from its first batch on (the bus's processes are
watched from the first publish, their start-up left out; until 2026-12-07 a stage's imports and
connecting were counted, some 0.05 CPU-s per 1,000 events of a 60,000-event run) and when it
applied its last record.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
from kafka.admin import NewTopic

from govbus import clients
from govbus.bench import workload
from govbus.bench.context import Context
from govbus.bench.harness import until_compiled
from govbus.bench.measure import ProcessWatch, per_thousand, rounded, steady_rate
from govbus.processes import settings_environment
from govbus.settings import Settings, get_settings

PARTITIONS = 6  # as the population library's topics
SUBSCRIBERS = 4
BATCH = 2_000
CLIENTS = ("confluent-kafka", "kafka-python")
WARM_ROUND_EVENTS = 20_000
PLAIN_PYTHON_EVENTS = 3_000  # kafka-python moves a sixth as much: a rate from fewer events keeps the run short


def run(context: Context) -> dict[str, Any]:
    settings = context.admin_settings("topology")
    count = context.sizes.events
    messages = workload.encoded(workload.population_changes(count, seed=44), settings.key_secret.encode())
    results: dict[str, Any] = {}
    if count >= 1000:  # the bus is measured on a warm broker (harness.warm_up): so is its ceiling
        rounds, compiling = until_compiled(context.broker_pids(), lambda number: _warm_round(settings, messages, number))
        results["warm_up"] = {"rounds": rounds, "compiler_cores": compiling}
    for client in CLIENTS:
        click.echo(f"   topology ceiling with {client}: {count} events through gate, router and {SUBSCRIBERS} stores")
        chosen = messages if client == "confluent-kafka" else messages[:PLAIN_PYTHON_EVENTS]
        work = Path(tempfile.mkdtemp(prefix="govbus-topology-"))
        try:
            results[client] = _one(settings, client, chosen, work, context.broker_pids())
        except (RuntimeError, subprocess.TimeoutExpired) as error:  # said in the results; the other client still counts
            results[client] = {"error": f"{type(error).__name__}: {error} (logs in {work})"}
    return rounded({"events": count, "subscribers": SUBSCRIBERS, "partitions": PARTITIONS, **results})


def _warm_round(settings: Settings, messages: list, number: int) -> None:
    """The confluent-kafka topology once, on topics of its own, its figures thrown away."""
    work = Path(tempfile.mkdtemp(prefix="govbus-topology-warm-"))
    try:
        _one(settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}warm{number}."}), "confluent-kafka",
             messages[:WARM_ROUND_EVENTS], work, [])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _topics(settings: Settings, client: str) -> dict[str, Any]:
    base = f"{settings.topic_prefix}{client}."
    return {"ingest": base + "ingest", "state": base + "state", "shared": base + "shared", "audit": base + "audit",
            "subscribers": [f"{base}deliver.{n}" for n in range(SUBSCRIBERS)]}


def _one(settings: Settings, client: str, messages: list, work: Path, broker_pids: list[int]) -> dict[str, Any]:
    topics = _topics(settings, client)
    admin = clients.admin(settings)
    try:
        names = [topics["ingest"], topics["state"], topics["shared"], topics["audit"], *topics["subscribers"]]
        admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
    finally:
        admin.close()
    count = len(messages)
    stages = {"gate": ["gate", topics["ingest"], topics["state"], topics["shared"]],
              "router": ["router", topics["shared"], topics["audit"], *topics["subscribers"]]}
    for number, topic in enumerate(topics["subscribers"]):
        stages[f"subscriber {number}"] = ["subscriber", topic, str(work / f"store-{number}.db")]
    environment = settings_environment(settings)
    processes = {name: subprocess.Popen([sys.executable, "-m", __name__, client, str(count), *arguments],
                                        stdout=subprocess.PIPE, stderr=open(work / f"{name}.log", "wb"),
                                        env=environment)
                 for name, arguments in stages.items()}
    time.sleep(3.0)  # every consumer assigned before the first record
    broker = ProcessWatch()
    broker.add_broker(broker_pids)
    broker.start()
    first = time.time()
    _publish(settings, client, topics["ingest"], messages)
    reports = {}
    try:
        for name, process in processes.items():
            out, _ = process.communicate(timeout=max(120.0, count / 50))
            if process.returncode != 0:
                raise RuntimeError(f"topology stage {name} ({client}) failed; see {work / (name + '.log')}")
            reports[name] = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        for process in processes.values():  # a stage that did not finish must not load the next scenario
            if process.poll() is None:
                process.kill()
                process.wait()
        broker_cpu = broker.stop()
    stores = [reports[name] for name in reports if name.startswith("subscriber")]
    last = max(store["last_applied"] for store in stores)
    return {"events": count, "events_per_s": count / (last - first), "seconds": last - first,
            "events_per_s_steady": steady_rate([store["progress"] for store in stores], count),
            "cpu_seconds_per_1000_events": per_thousand({**reports, **broker_cpu}, count)}


def _publish(settings: Settings, client: str, topic: str, messages: list) -> None:
    if client == "confluent-kafka":
        producer = clients.fast_producer(settings)
        for key, value, headers in messages:
            _produce(producer, topic, key, value, headers)
        producer.flush(120)
        return
    producer = clients.producer(settings)
    for key, value, headers in messages:
        producer.send(topic, key=key, value=value, headers=headers)
    producer.flush()
    producer.close()


def _produce(producer: Any, topic: str, key: bytes, value: bytes, headers: Any, partition: int | None = None) -> None:
    while True:
        try:
            if partition is None:
                producer.produce(topic, value, key, headers=headers)
            else:
                producer.produce(topic, value, key, partition=partition, headers=headers)
            return
        except BufferError:
            producer.poll(0.05)


# The stages, in their own processes.

class Plain:
    """One client library behind the four calls a stage needs."""

    def __init__(self, settings: Settings, client: str, topic: str, group: str) -> None:
        self.client = client
        if client == "confluent-kafka":
            self.consumer = clients.fast_consumer(settings, group, **{"fetch.wait.max.ms": 20,
                                                                      "enable.auto.offset.store": True})
            self.consumer.subscribe([topic])
            self.producer = clients.fast_producer(settings)
        else:
            self.consumer = clients.consumer(settings, topic, group_id=group)
            self.producer = clients.producer(settings)

    def batch(self) -> list[tuple[int, bytes, bytes, Any]]:
        """(partition, key, value, headers) of what the consumer has."""
        if self.client == "confluent-kafka":
            found = self.consumer.consume(BATCH, 0.05)
            return [(m.partition(), m.key(), m.value(), m.headers()) for m in found if m.error() is None]
        found = self.consumer.poll(timeout_ms=50, max_records=BATCH)
        return [(r.partition, r.key, r.value, r.headers) for records in found.values() for r in records]

    def send(self, topic: str, key: bytes, value: bytes, headers: Any, partition: int | None = None) -> None:
        if self.client == "confluent-kafka":
            _produce(self.producer, topic, key, value, headers, partition)
        else:
            self.producer.send(topic, key=key, value=value, headers=headers, partition=partition)

    def commit(self, produced: bool = True) -> None:
        """Flush what the batch wrote, then commit its offsets."""
        if produced:
            self.producer.flush()
        if self.client == "confluent-kafka":
            self.consumer.commit(asynchronous=False)
        else:
            self.consumer.commit()


def stage(client: str, count: int, role: str, arguments: list[str]) -> dict[str, Any]:
    settings = get_settings()
    source = arguments[0]
    plain = Plain(settings, client, source, f"{settings.topic_prefix}topology-{client}-{role}-{source}")
    handled, last, started_cpu = 0, 0.0, None
    progress: list[tuple[float, int]] = []  # a subscriber's (time, applied so far) after each batch
    database = None
    if role == "subscriber":
        database = sqlite3.connect(arguments[1], isolation_level=None)
        database.execute("PRAGMA journal_mode=WAL")
        database.execute("CREATE TABLE rows (key BLOB PRIMARY KEY, value BLOB, applied_at REAL)")
        database.execute("CREATE TABLE positions (partition INTEGER PRIMARY KEY, next INTEGER)")
    while handled < count:
        batch = plain.batch()
        if not batch:
            continue
        if started_cpu is None:  # the bus's processes are watched from the first publish, not from their start-up
            started_cpu = time.process_time()
        if role == "gate":
            for partition, key, value, headers in batch:
                plain.send(arguments[1], key, value, headers, partition)
                plain.send(arguments[2], key, value, headers)
        elif role == "router":
            for partition, key, value, headers in batch:
                for topic in arguments[2:]:
                    plain.send(topic, key, value, headers)
                plain.send(arguments[1], key, value, None, partition)
        else:
            now = time.time()
            database.execute("BEGIN")
            database.executemany("INSERT OR REPLACE INTO rows VALUES (?, ?, ?)",
                                 [(key, value, now) for _, key, value, _ in batch])
            database.executemany("INSERT OR REPLACE INTO positions VALUES (?, ?)",
                                 [(partition, 0) for partition in {b[0] for b in batch}])
            database.execute("COMMIT")
            last = time.time()
            progress.append((last, handled + len(batch)))
        plain.commit(produced=role != "subscriber")
        handled += len(batch)
    return {"cpu_seconds": time.process_time() - (started_cpu or 0.0), "last_applied": last, "handled": handled,
            "progress": progress}


if __name__ == "__main__":
    report = stage(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:])
    print(json.dumps(report))
    sys.exit(0)
