"""Kafka clients configured from the settings, so that every part of the bus connects alike.

Security lives here and nowhere else: SASL/SCRAM-SHA-512 with the principal's credentials,
optionally over TLS with the deployment's CA (clients verify the broker's certificate).

Two client libraries, each where it serves (figures in the README's performance section):
kafka-python for admin, tools and low-rate clients; confluent-kafka (librdkafka) for the hot
path — the processors' batched loops, subscribers and bulk publishing — where it moves
several times more events per CPU-second. Both read only committed data: the processors
write in Kafka transactions, and a reader must never see a batch that a crash aborted.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from govbus import redaction
from govbus.security import credentials
from govbus.settings import Settings

# kafka-python's admin client logs its configuration, the password included, at debug level.
redaction.install()

# kafka-python warns that SCRAM over a plaintext listener "exchanges credentials in the clear";
# SCRAM never sends the password (only a salted proof), so the warning only alarms operators.
logging.getLogger("kafka.net.sasl.scram").setLevel(logging.ERROR)


def sasl_credentials(settings: Settings) -> credentials.Credentials:
    """The principal's login; its password is from now on blanked out of every log message."""
    if settings.sasl_password:
        login = credentials.Credentials(settings.sasl_username, settings.sasl_password)
    else:
        login = credentials.load(settings.home, settings.sasl_username)
    redaction.remember(login.password)
    return login


def ca_file(settings: Settings) -> str:
    return str(settings.ssl_cafile or settings.home / "tls" / "ca.pem")


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A context that verifies the broker against the deployment's CA only."""
    context = ssl.create_default_context(cafile=ca_file(settings))
    context.check_hostname = True
    return context


def security_config(settings: Settings) -> dict[str, Any]:
    if settings.security_protocol == "PLAINTEXT":
        return {"security_protocol": "PLAINTEXT"}
    login = sasl_credentials(settings)
    config: dict[str, Any] = {"security_protocol": settings.security_protocol, "sasl_mechanism": credentials.MECHANISM,
                              "sasl_plain_username": login.username, "sasl_plain_password": login.password}
    if settings.security_protocol == "SASL_SSL":
        config["ssl_context"] = ssl_context(settings)
    return config


def connection_config(settings: Settings) -> dict[str, Any]:
    """What every client needs to reach the bus."""
    return {"bootstrap_servers": settings.bootstrap_list, "client_id": settings.client_id, **security_config(settings)}


def admin(settings: Settings, timeout_ms: int = 30000) -> KafkaAdminClient:
    """An admin client; `timeout_ms` bounds each request and finding the cluster (a refused
    login is retried until then)."""
    return KafkaAdminClient(**connection_config(settings), request_timeout_ms=timeout_ms,
                            bootstrap_timeout_ms=timeout_ms)


def producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A durable producer: acks from all in-sync replicas, idempotent, ordered per key."""
    config: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_in_flight_requests_per_connection": 5,
    }
    config.update(overrides)
    return KafkaProducer(**connection_config(settings), **config)


def consumer(settings: Settings, *topics: str, **overrides: Any) -> KafkaConsumer:
    config: dict[str, Any] = {"enable_auto_commit": False, "auto_offset_reset": "earliest",
                              "isolation_level": "read_committed"}
    config.update(overrides)
    return KafkaConsumer(*topics, **connection_config(settings), **config)


# librdkafka (confluent-kafka): the hot path.

def librdkafka_config(settings: Settings) -> dict[str, Any]:
    """The connection and security settings of a librdkafka client, the same as `connection_config`."""
    config: dict[str, Any] = {"bootstrap.servers": ",".join(settings.bootstrap_list), "client.id": settings.client_id,
                              "security.protocol": settings.security_protocol}
    if settings.security_protocol != "PLAINTEXT":
        login = sasl_credentials(settings)
        config.update({"sasl.mechanisms": credentials.MECHANISM, "sasl.username": login.username,
                       "sasl.password": login.password})
    if settings.security_protocol == "SASL_SSL":
        config.update({"ssl.ca.location": ca_file(settings), "ssl.endpoint.identification.algorithm": "https"})
    return config


def fast_producer(settings: Settings, **overrides: Any) -> Any:
    """A durable librdkafka producer. `murmur2_random` is the Java clients' partitioner (and
    kafka-python's): a key lands in the same partition whichever client wrote it, which the
    co-partitioned topics (ingest, state, shared) rely on."""
    from confluent_kafka import Producer

    config: dict[str, Any] = {**librdkafka_config(settings), "acks": "all", "enable.idempotence": True,
                              "partitioner": "murmur2_random", "linger.ms": 5,
                              "queue.buffering.max.messages": 500_000, "batch.num.messages": 10_000}
    config.update(overrides)
    return Producer(config)


def fast_consumer(settings: Settings, group_id: str | None = None, **overrides: Any) -> Any:
    """A librdkafka consumer that reads committed data only and never commits on its own."""
    from confluent_kafka import Consumer

    config: dict[str, Any] = {**librdkafka_config(settings), "group.id": group_id or f"{settings.client_id}-reader",
                              "enable.auto.commit": False, "enable.auto.offset.store": False,
                              "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                              "enable.partition.eof": False}
    config.update(overrides)
    return Consumer(config)
