"""`Publisher.connect` replaces a client that failed for good before its first record."""

from __future__ import annotations

from types import SimpleNamespace

from confluent_kafka import KafkaError

from govbus.producers.publisher import Publisher
from govbus.settings import Settings


class FakeClient:
    """A producer whose broker lets it write; `fails` reports a fatal error on its first poll."""

    def __init__(self, publisher: Publisher, topic: str, fails: bool) -> None:
        self.publisher, self.topic, self.fails = publisher, topic, fails
        self.polls = 0

    def list_topics(self, topic: str, timeout: float) -> SimpleNamespace:
        return SimpleNamespace(topics={self.topic: SimpleNamespace(error=None)})

    def poll(self, timeout: float) -> int:
        self.polls += 1
        if self.fails and self.polls == 1:
            self.publisher._client_error(KafkaError(KafkaError.CLUSTER_AUTHORIZATION_FAILED,
                                                    "Failed to acquire idempotence PID", fatal=True))
        return 0

    def flush(self, timeout: float | None = None) -> int:
        return 0


def test_a_client_that_failed_for_good_before_its_first_record_is_replaced_by_connect() -> None:
    publisher = Publisher(Settings(bootstrap_servers="127.0.0.1:1"), "public_security", "population")
    made: list[FakeClient] = []

    def new_client() -> FakeClient:
        made.append(FakeClient(publisher, publisher.topic, fails=False))
        return made[-1]

    publisher._producer = FakeClient(publisher, publisher.topic, fails=True)
    publisher._new_producer = new_client
    publisher.connect(timeout=1, patience=5)
    assert len(made) == 1 and publisher._producer is made[0]
    assert publisher._fatal is None


def test_a_passing_error_is_not_taken_for_a_failed_client() -> None:
    publisher = Publisher(Settings(bootstrap_servers="127.0.0.1:1"), "public_security", "population")
    publisher._client_error(KafkaError(KafkaError._TRANSPORT, "broker away", fatal=False))
    assert publisher._fatal is None
