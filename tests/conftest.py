"""Fixtures shared by every test.

Integration tests (under tests/integration) get a real Kafka broker for the whole session:
GOVBUS_BOOTSTRAP_SERVERS if set, else testcontainers' Kafka where a Docker engine answers,
else a local KRaft broker run from Maven Central's jars — secured, as in production:
SASL/SCRAM, the standard authorizer, deny by default. Tests act as the admin principal unless
they ask for another (``bus.as_principal``); processors run as their own principal with the
ACLs that ``bus.apply_catalog()`` derives. Each test gets its own topic prefix, so tests
never see each other's data.
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
        if provisioned.cluster is not None:  # the session's own nodes: killed, their data is thrown away
            for node_id in range(1, len(provisioned.cluster.nodes) + 1):
                provisioned.cluster.kill(node_id)
        provisioned.close()


@pytest.fixture(scope="session")
def principals(broker: ProvisionedBroker, catalog: Catalog, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every department, the processors and governance as principals: name → password."""
    if broker.security["security_protocol"] == "PLAINTEXT":
        return {}
    from govbus.security import credentials
    from govbus.security import principals as broker_principals

    home = tmp_path_factory.mktemp("principals")
    admin = clients.admin(broker.admin_settings())
    try:
        names = [credentials.PROCESSORS, credentials.AUTHORITY, credentials.GOVERNANCE, *catalog.departments]
        return {name: broker_principals.ensure(admin, home, name).password for name in names}
    finally:
        admin.close()


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


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store on each backend the subscriber supports: a SQLite file, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    import pg

    return pg.fresh_database(request.getfixturevalue("postgres_dsn"))


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog(PROJECT_ROOT / "topics")


@dataclass
class Bus:
    """What an integration test needs: settings for its broker and its own topic names."""

    settings: Settings
    names: TopicNames
    catalog: Catalog
    passwords: dict[str, str]

    @property
    def secured(self) -> bool:
        return self.settings.secured

    def as_principal(self, name: str) -> Settings:
        """These settings, logged in as another principal (a department, the processors …)."""
        return self.settings.logged_in_as(name, self.passwords.get(name, ""))

    def apply_catalog(self) -> list[str]:
        """Topics from the catalog, and (when secured) the ACLs derived from it."""
        return topic_apply.apply_catalog(self.settings, self.catalog, self.names)


@pytest.fixture
def bus(broker: ProvisionedBroker, catalog: Catalog, principals: dict[str, str], tmp_path: Path) -> Bus:
    """Settings pointing at the session's broker and a fresh topic prefix for this test."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    settings = broker.admin_settings(topic_prefix=prefix, client_id=f"govbus-test-{uuid.uuid4().hex[:6]}",
                                     processor_port=free_port(), home=tmp_path / "govbus-home")
    return Bus(settings, TopicNames(prefix), catalog, principals)


@pytest.fixture
def start_processors(bus: Bus, tmp_path: Path) -> Iterator[Callable[..., ProcessorProcess]]:
    """Start ``govbus processors run <names>`` workers for this test (``authority`` alone, as
    govbus-authority; the others as govbus-processors); all stopped after it."""
    started: list[ProcessorProcess] = []

    def start(*names: str, port: int | None = None, loglevel: str = "warn",
              session_timeout: float | None = None) -> ProcessorProcess:
        """`session_timeout`: seconds after which a killed worker's partitions move (a test
        that kills one need not wait the default)."""
        from govbus.security.credentials import AUTHORITY, PROCESSORS

        principal = AUTHORITY if names == ("authority",) else PROCESSORS  # the authority runs alone, as itself
        changes: dict = {"processor_port": port or free_port()}
        if session_timeout is not None:
            changes["processor_session_timeout"] = session_timeout
        settings = bus.as_principal(principal).model_copy(update=changes)
        worker = ProcessorProcess(settings, list(names), tmp_path / f"worker-{len(started)}.log", loglevel)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def on_session_broker(broker: ProvisionedBroker, principals: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                      tmp_path: Path) -> Iterator[None]:
    """`govbus bench` and `govbus simulate` use GOVBUS_BOOTSTRAP_SERVERS when set: point it at
    the session's broker, with a govbus home holding the session principals' passwords (so they
    reuse them instead of rotating them under the other tests) and the Kafka jars."""
    from govbus.broker.runtime import kafka_version
    from govbus.security import credentials
    from govbus.settings import Settings

    home = tmp_path / "home"
    home.mkdir()
    jars = Settings().home / f"kafka-{kafka_version()}"
    (home / jars.name).symlink_to(jars, target_is_directory=True)
    for name, password in principals.items():
        credentials.save(home, credentials.Credentials(name, password))
    monkeypatch.setenv("GOVBUS_HOME", str(home))
    monkeypatch.setenv("GOVBUS_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
    for name, value in broker.security.items():
        monkeypatch.setenv(f"GOVBUS_{name.upper()}", str(value))
    from govbus.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
