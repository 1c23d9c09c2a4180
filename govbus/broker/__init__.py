"""The local Apache Kafka broker, run from Maven Central's jars (no Docker, no tarball)."""

from govbus.broker.local import LocalCluster
from govbus.broker.runtime import BrokerError, kafka_version

__all__ = ["BrokerError", "LocalCluster", "kafka_version"]
