"""The broker itself refuses what the sharing rules forbid (SASL/SCRAM, derived ACLs, TLS)."""

from __future__ import annotations

import pytest
from kafka.errors import KafkaError, TopicAuthorizationFailedError

from govbus import clients
from govbus.processors.governance import control
from govbus.processors.governance.subscriptions import SubscriptionRequest
from govbus.producers.generate import generate
from govbus.producers.publisher import Publisher
from govbus.schemas.codec import default_codec

from kafka_helpers import wait_for


@pytest.fixture
def secured_bus(bus):
    assert bus.secured, "the tests run against a secured broker by default"
    bus.apply_catalog()
    return bus


def _read(settings, topic: str) -> list:
    """Read as a department would: a consumer group under its own prefix (which it may use).

    kafka-python's consumer only logs the broker's refusal of an unauthorized topic (the Java
    client raises), so ask the broker for the topic's metadata first, as that principal, and
    raise what it answers: error 29, TOPIC_AUTHORIZATION_FAILED."""
    admin = clients.admin(settings)
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    if described["error_code"] == TopicAuthorizationFailedError.errno:
        raise TopicAuthorizationFailedError(topic)
    group = f"{settings.topic_prefix}{settings.sasl_username}.probe"
    consumer = clients.consumer(settings, topic, group_id=group, consumer_timeout_ms=5000)
    try:
        messages = []
        for _ in range(4):
            messages += [message for records in consumer.poll(timeout_ms=1500).values() for message in records]
        return messages
    finally:
        consumer.close()


def _write(settings, topic: str) -> None:
    producer = clients.producer(settings, max_block_ms=10000)
    try:
        producer.send(topic, key=b"k", value=b"forged").get(timeout=15)
    finally:
        producer.close()


def _refused(action, *arguments) -> KafkaError:
    with pytest.raises(KafkaError) as refusal:
        action(*arguments)
    return refusal.value


def test_departments_are_refused_everything_the_rules_forbid(secured_bus, start_processors) -> None:
    bus = secured_bus
    start_processors("gate", "router")
    hr = control.request(bus.settings, SubscriptionRequest(department="hr_social_security", library="population",
                                                           fields=("citizen_id", "name"), purpose="data_verification"))
    control.request(bus.settings, SubscriptionRequest(department="tax", library="population",
                                                      fields=("citizen_id", "name"), purpose="data_verification"))
    people = list(generate("population", 3, seed=81, department="public_security"))
    with Publisher(bus.as_principal("public_security"), "public_security", "population", names=bus.names) as publisher:
        for record in people:
            assert publisher.publish(record).accepted
    wait_for(bus.settings, bus.names.deliver("hr_social_security", "population"), 3, timeout=90)

    hr_login, tax_login = bus.as_principal("hr_social_security"), bus.as_principal("tax")
    # A change racing the approval may come both in the backfill and live: by entity, not by count.
    own = {default_codec().decode(message.value)[1]["entity_id"]
           for message in _read(hr_login, bus.names.deliver("hr_social_security", "population"))}
    assert own == {person["citizen_id"] for person in people}, "its own deliveries"
    refusals = [
        _refused(_read, tax_login, bus.names.deliver("hr_social_security", "population")),
        _refused(_read, hr_login, bus.names.shared("population")),
        _refused(_read, hr_login, bus.names.state("population")),
        _refused(_read, hr_login, bus.names.ingest("population", "public_security")),
        _refused(_write, hr_login, bus.names.shared("population")),
        _refused(_write, tax_login, bus.names.deliver("hr_social_security", "population")),
        _refused(_write, hr_login, bus.names.deliver("hr_social_security", "population")),
        _refused(_write, bus.as_principal("civil_affairs"), bus.names.ingest("population", "public_security")),
    ]
    assert all(isinstance(refusal, TopicAuthorizationFailedError) for refusal in refusals), refusals

    control.revoke(bus.settings, hr.id, "hr_social_security", "finished")
    assert isinstance(_refused(_read, hr_login, bus.names.deliver("hr_social_security", "population")),
                      TopicAuthorizationFailedError), "after a revocation the broker refuses the read"


def test_a_wrong_password_is_refused(secured_bus) -> None:
    wrong = secured_bus.as_principal("tax").model_copy(update={"sasl_password": "not-the-password"})
    with pytest.raises(KafkaError):  # refused, then retried until the (short) timeout
        admin = clients.admin(wrong, timeout_ms=5000)
        admin.close()


def test_a_client_that_does_not_trust_the_ca_cannot_connect_over_tls(tmp_path, catalog) -> None:
    from govbus.broker.provision import local_broker
    from govbus.security import certs
    from govbus.settings import Settings

    certs.create(tmp_path / "tls", ["127.0.0.1", "localhost"])
    certs.create(tmp_path / "other-ca", ["127.0.0.1"])
    broker = local_broker(Settings(), heap="384m", tls_directory=tmp_path / "tls")
    try:
        trusted = broker.admin_settings()
        assert trusted.security_protocol == "SASL_SSL"
        admin = clients.admin(trusted)
        assert admin.describe_cluster()["brokers"], "a client with the deployment's CA connects"
        admin.close()
        stranger = trusted.model_copy(update={"ssl_cafile": tmp_path / "other-ca" / "ca.pem"})
        with pytest.raises(KafkaError):
            clients.admin(stranger.model_copy(update={"client_id": "stranger"}), timeout_ms=5000).close()
    finally:
        broker.close()


def test_adding_a_principal_whose_password_is_not_stored_here_is_refused_and_changes_nothing(bus, tmp_path) -> None:
    from govbus.errors import GovbusError
    from govbus.security import principals

    admin = clients.admin(bus.settings)
    try:
        with pytest.raises(GovbusError, match="health already has credentials on the broker"):
            principals.ensure(admin, tmp_path / "another-home", "health")
    finally:
        admin.close()
    health = clients.admin(bus.as_principal("health"))  # the session's password still works
    try:
        assert health.describe_cluster()["brokers"]
    finally:
        health.close()


def test_on_a_development_broker_without_an_authorizer_an_approval_skips_the_acls(tmp_path, catalog) -> None:
    from govbus.broker.provision import local_broker
    from govbus.settings import Settings
    from govbus.topics import apply as topic_apply
    from govbus.topics.names import TopicNames

    broker = local_broker(Settings(), heap="384m", secured=False)
    try:
        settings = broker.admin_settings(home=tmp_path)
        assert settings.security_protocol == "PLAINTEXT"
        topic_apply.apply_catalog(settings, catalog, TopicNames(""))
        asked = control.request(settings, SubscriptionRequest(department="health", library="population",
                                                              fields=("citizen_id", "marital_status"),
                                                              purpose="administrative_basis"))
        approved = control.approve(settings, asked.id, "civil_affairs")
        assert approved.state == "approved" and control.read_all(settings)[asked.id].state == "approved"
    finally:
        broker.close()
