"""Fixtures shared by every test.

Integration tests (under tests/integration) get a real Kafka broker for the whole session:
GOVBUS_BOOTSTRAP_SERVERS if set, else testcontainers' Kafka where a Docker engine answers,
else a local KRaft broker run from Maven Central's jars. Each test gets its own topic prefix,
so tests never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from govbus import clients
from govbus.broker.provision import ProvisionedBroker, free_port, provision
from govbus.processes import ProcessorProcess
from govbus.settings import PROJECT_ROOT, Settings
from govbus.topics import apply as topic_apply
from govbus.topics.catalog import Catalog, load_catalog
from govbus.topics.names import TopicNames


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker() -> Iterator[ProvisionedBroker]:
    provisioned = provision(Settings())
    try:
        yield provisioned
    finally:
        provisioned.close()


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A real PostgreSQL server for the session (Debian's package; `./run test` installs it)."""
    import pg

    try:
        with pg.postgres_server() as dsn:
            yield dsn
    except pg.PostgresUnavailable as reason:
        pytest.fail(f"PostgreSQL is needed for the store tests and is not usable here: {reason}. "
                    "`./run test` installs it from Debian's packages (postgresql).")


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog(PROJECT_ROOT / "topics")


@dataclass
class Bus:
    """What an integration test needs: settings for its broker and its own topic names."""

    settings: Settings
    names: TopicNames
    catalog: Catalog

    def apply_catalog(self) -> list[str]:
        admin = clients.admin(self.settings)
        try:
            specs = topic_apply.desired_topics(self.catalog, self.names, admin)
            return topic_apply.apply(admin, topic_apply.compare(admin, specs))
        finally:
            admin.close()


@pytest.fixture
def bus(broker: ProvisionedBroker, catalog: Catalog, tmp_path: Path) -> Bus:
    """Settings pointing at the session's broker and a fresh topic prefix for this test."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    settings = Settings(bootstrap_servers=broker.bootstrap_servers, topic_prefix=prefix,
                        client_id=f"govbus-test-{uuid.uuid4().hex[:6]}", processor_port=free_port(),
                        home=tmp_path / "govbus-home")
    return Bus(settings, TopicNames(prefix), catalog)


@pytest.fixture
def start_processors(bus: Bus, tmp_path: Path) -> Iterator[Callable[..., ProcessorProcess]]:
    """Start ``govbus processors run <names>`` workers for this test; all stopped after it."""
    started: list[ProcessorProcess] = []

    def start(*names: str, port: int | None = None) -> ProcessorProcess:
        settings = bus.settings.model_copy(update={"processor_port": port or free_port()})
        worker = ProcessorProcess(settings, list(names), tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()
