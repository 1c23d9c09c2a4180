"""A broker for tests and benchmarks: the one configured, a container, or a local JVM.

Order: ``GOVBUS_BOOTSTRAP_SERVERS`` when it is set; else testcontainers' Kafka when a Docker
engine answers; else a throw-away local KRaft broker from Maven Central's jars on free
loopback ports. The caller stops what it was given with ``close()``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from govbus.broker.local import BrokerSecurity, LocalCluster
from govbus.settings import Settings


@dataclass
class ProvisionedBroker:
    bootstrap_servers: str
    origin: str
    cluster: LocalCluster | None = None
    _close: Callable[[], None] = field(default=lambda: None, repr=False)
    security: dict[str, str] = field(default_factory=lambda: {"security_protocol": "PLAINTEXT"})

    def admin_settings(self, **values: object) -> Settings:
        """Settings that reach this broker as its admin principal."""
        return Settings(bootstrap_servers=self.bootstrap_servers, **self.security, **values)

    def close(self) -> None:
        self._close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def docker_engine_answers() -> bool:
    """`which docker` lies on machines with a client but no engine: ask the engine."""
    try:
        import docker

        return bool(docker.from_env(timeout=3).ping())
    except Exception:  # noqa: BLE001 - any failure means "no engine here"
        return False


def local_broker(settings: Settings, nodes: int = 1, heap: str = "512m", secured: bool = True,
                 tls_directory: Path | None = None) -> ProvisionedBroker:
    """A fresh local cluster in a temporary folder; the jar cache of ``settings.home`` is reused.
    Secured (SASL/SCRAM, deny by default) unless asked otherwise; TLS when given material."""
    directory = Path(tempfile.mkdtemp(prefix="govbus-broker-"))
    ports = [free_port() for _ in range(2 * nodes)]
    security = BrokerSecurity(secrets.token_urlsafe(24), tls_directory) if secured else None
    cluster = LocalCluster(directory, heap=heap, jar_cache=settings.home, security=security,
                           ports=[(ports[i], ports[nodes + i]) for i in range(nodes)])

    def close() -> None:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)

    try:
        bootstrap = cluster.start()
    except BaseException:
        close()
        raise
    login = {"security_protocol": "PLAINTEXT"}
    if security:
        login = {"security_protocol": security.listener, "sasl_username": "admin", "sasl_password": security.admin_password}
        if tls_directory:
            login["ssl_cafile"] = str(tls_directory / "ca.pem")
    return ProvisionedBroker(bootstrap, f"local JVM broker in {directory}", cluster, close, login)


def provision(settings: Settings) -> ProvisionedBroker:
    if os.environ.get("GOVBUS_BOOTSTRAP_SERVERS"):
        login = {"security_protocol": settings.security_protocol, "sasl_username": settings.sasl_username}
        if settings.security_protocol != "PLAINTEXT":
            from govbus.clients import sasl_credentials

            login["sasl_password"] = sasl_credentials(settings).password
        return ProvisionedBroker(settings.bootstrap_servers, "GOVBUS_BOOTSTRAP_SERVERS", security=login)
    if docker_engine_answers():
        return _container()
    return local_broker(settings)


def _container() -> ProvisionedBroker:
    from testcontainers.kafka import KafkaContainer

    from govbus.broker.runtime import kafka_version

    container: AbstractContextManager = KafkaContainer(f"apache/kafka:{kafka_version()}").with_kraft()
    started = container.__enter__()
    return ProvisionedBroker(started.get_bootstrap_server(), "testcontainers",
                             _close=lambda: container.__exit__(None, None, None))
