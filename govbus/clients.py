"""Kafka clients configured from the settings, so that every part of the bus connects alike.

Security settings (SASL, TLS) are added here and nowhere else.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from govbus.settings import Settings


def connection_config(settings: Settings) -> dict[str, Any]:
    """What every client needs to reach the bus."""
    return {"bootstrap_servers": settings.bootstrap_list, "client_id": settings.client_id}


def admin(settings: Settings) -> KafkaAdminClient:
    return KafkaAdminClient(**connection_config(settings), request_timeout_ms=30000)


def producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A durable producer: acks from all in-sync replicas, idempotent, ordered per key."""
    config: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "compression_type": None,
        "max_in_flight_requests_per_connection": 5,
    }
    config.update(overrides)
    return KafkaProducer(**connection_config(settings), **config)


def consumer(settings: Settings, *topics: str, **overrides: Any) -> KafkaConsumer:
    config: dict[str, Any] = {"enable_auto_commit": False, "auto_offset_reset": "earliest"}
    config.update(overrides)
    return KafkaConsumer(*topics, **connection_config(settings), **config)
