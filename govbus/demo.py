"""`govbus demo`: the bus end to end on a local broker, narrated for a person watching."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import click

from govbus import clients
from govbus.broker.commands import local_cluster
from govbus.broker.local import broker_answers
from govbus.settings import Settings, get_settings
from govbus.topics import apply as topic_apply
from govbus.topics.catalog import load_catalog
from govbus.topics.names import TopicNames


@contextmanager
def running_broker(settings: Settings) -> Iterator[str]:
    """The configured broker if it answers; else a local one, started now and stopped after."""
    if broker_answers(settings.bootstrap_servers):
        click.echo(f"Using the broker at {settings.bootstrap_servers}.")
        yield settings.bootstrap_servers
        return
    cluster = local_cluster(settings)
    click.echo("Starting a local Kafka broker (KRaft mode) from Maven Central's jars …")
    bootstrap = cluster.start()
    click.echo(f"Broker ready at {bootstrap}; data in {settings.home / 'broker'}.")
    try:
        yield bootstrap
    finally:
        for line in cluster.stop():
            click.echo(f"Broker {line}.")


@click.command()
@click.option("--prefix", default="demo.", show_default=True, help="Topic prefix, so the demo never touches real topics.")
def demo(prefix: str) -> None:
    """Run the bus end to end on a local broker and print what happened."""
    settings = get_settings()
    with running_broker(settings) as bootstrap:
        settings = settings.model_copy(update={"bootstrap_servers": bootstrap})
        _walk_through(settings, TopicNames(prefix))


def _walk_through(settings: Settings, names: TopicNames) -> None:
    catalog = load_catalog(settings.catalog_dir)
    admin = clients.admin(settings)
    try:
        comparisons = topic_apply.compare(admin, topic_apply.desired_topics(catalog, names, admin))
        changes = topic_apply.apply(admin, comparisons)
    finally:
        admin.close()
    click.echo(f"Catalog applied: {len(comparisons)} topics for {len(catalog.libraries)} base libraries "
               f"({len(changes)} changed now).")
    topic = names.ingest("population", "public_security")
    record = {"event_id": str(uuid.uuid4()), "library": "population", "source": "public_security",
              "sent_at": time.time()}
    producer = clients.producer(settings)
    metadata = producer.send(topic, key=record["event_id"].encode(), value=json.dumps(record).encode()).get(timeout=30)
    producer.close()
    click.echo(f"Published a sample record to {topic} (partition {metadata.partition}, offset {metadata.offset}).")
    consumer = clients.consumer(settings, consumer_timeout_ms=10000)
    from kafka import TopicPartition

    partition = TopicPartition(topic, metadata.partition)
    consumer.assign([partition])
    consumer.seek(partition, metadata.offset)
    received = next(iter(consumer)).value
    consumer.close()
    assert json.loads(received) == record, "the record read back differs from the one published"
    click.echo(f"Read it back unchanged: {received.decode()}")
