"""The faust application the processors run in, configured from the bus's settings.

One App is one consumer group: the processors started together in one worker share it, and
more workers with the same processors share the partitions between them (partitions are the
unit of parallelism). Topics are made by ``govbus topics apply`` from the catalog, never by
faust, so a worker can never create a topic with the wrong settings.
"""

from __future__ import annotations

from collections.abc import Iterable

import faust

from govbus import clients
from govbus.settings import Settings
from govbus.topics.names import TopicNames


def app_id(settings: Settings, processors: Iterable[str]) -> str:
    """The faust app's id (its consumer group, for the faust-hosted freshness agents); the
    batched gate and router have groups of their own (``worker.group_id``)."""
    return f"{settings.topic_prefix}govbus-worker-{'-'.join(sorted(processors))}"


def make_app(settings: Settings, processors: Iterable[str]) -> faust.App:
    processors = list(processors)
    identifier = app_id(settings, processors)
    datadir = settings.home / "processors" / identifier
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        identifier,
        broker=[f"kafka://{server}" for server in settings.bootstrap_list],
        store="memory://",  # processors keep their state in PartitionStores restored from compacted topics
        datadir=str(datadir),
        topic_replication_factor=1,
        topic_allow_declare=False,
        topic_disable_leader=True,
        table_standby_replicas=1,  # a second worker keeps a warm copy of the tables it may take over
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.processor_session_timeout,  # how soon a killed worker's partitions move
        broker_heartbeat_interval=min(3.0, settings.processor_session_timeout / 3),
        producer_linger=0.005,  # batch a few ms of sends: +22 % end to end in govbus bench
        web_enabled=True,
        web_bind=settings.processor_host,
        web_port=settings.processor_port,
        web_in_thread=False,
        autodiscover=False,
        broker_credentials=credentials(settings),
    )


def credentials(settings: Settings) -> faust.SASLCredentials | None:
    """The worker's SASL login (and TLS context), from the same settings as every client."""
    if settings.security_protocol == "PLAINTEXT":
        return None
    login = clients.sasl_credentials(settings)
    context = clients.ssl_context(settings) if settings.security_protocol == "SASL_SSL" else None
    return faust.SASLCredentials(username=login.username, password=login.password, mechanism="SCRAM-SHA-512",
                                 ssl_context=context)


def names(settings: Settings) -> TopicNames:
    return TopicNames(settings.topic_prefix)
