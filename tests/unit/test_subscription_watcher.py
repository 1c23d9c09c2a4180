"""The router's subscription watcher outlives a read the broker refuses for a moment (ACLs
just applied) and resumes where it was, never from the start (no broker)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from kafka.errors import TopicAuthorizationFailedError

from govbus.processors.router import logic
from govbus.schemas.codec import default_codec
from govbus.settings import PROJECT_ROOT, Settings
from govbus.topics.catalog import load_catalog


class FakeConsumer:
    """`control.subscriptions` with two records; the first consumer made is refused its ends."""


    def __init__(self, records: list[tuple[bytes, bytes]], refuse: bool) -> None:
        self.records, self.refuse, self.position_at, self.seeks = records, refuse, 0, []

    def partitions_for_topic(self, name):
        return {0}

    def assign(self, partitions):
        self.partition = partitions[0]

    def seek_to_beginning(self, partition):
        self.seeks.append(("beginning", 0))
        self.position_at = 0

    def seek(self, partition, offset):
        self.seeks.append(("seek", offset))
        self.position_at = offset

    def end_offsets(self, partitions):
        if self.refuse:
            raise TopicAuthorizationFailedError("t.control.subscriptions")
        return {partitions[0]: len(self.records)}

    def poll(self, timeout_ms):
        if self.position_at >= len(self.records):
            return {}
        key, value = self.records[self.position_at]
        self.position_at += 1
        return {self.partition: [SimpleNamespace(key=key, value=value)]}

    def position(self, partition):
        return self.position_at

    def close(self):
        pass


def test_a_refused_read_is_tried_again_and_the_book_gets_ready(monkeypatch) -> None:
    records = [(b"sub-1", b'{"not": "read"}'), (b"sub-2", b'{"not": "read"}')]
    made: list[FakeConsumer] = []

    def consumer(settings):
        made.append(FakeConsumer(records, refuse=not made))  # the first is refused, as before the ACLs arrive
        return made[-1]

    applied: list = []
    monkeypatch.setattr(logic.clients, "consumer", consumer)
    book = logic.SubscriptionBook(Settings(topic_prefix="t."), load_catalog(PROJECT_ROOT / "topics"), default_codec())
    monkeypatch.setattr(book, "apply", lambda events: applied.extend(events))
    stop = threading.Event()
    watcher = threading.Thread(target=book.watch, args=(stop,), daemon=True)
    watcher.start()
    assert book.ready.wait(10), "the watcher got ready after the refusal"
    stop.set()
    watcher.join(5)
    assert len(made) == 2 and applied == records


def test_after_a_failure_it_resumes_after_the_last_record_applied(monkeypatch) -> None:
    records = [(b"sub-1", b"{}"), (b"sub-2", b"{}")]
    made: list[FakeConsumer] = []
    book = logic.SubscriptionBook(Settings(topic_prefix="t."), load_catalog(PROJECT_ROOT / "topics"), default_codec())
    applied: list = []

    def apply(events):
        applied.extend(events)
        if len(made) == 1:
            made[0].refuse = True  # the broker refuses the next read; its position stays where it was

    class Refusing(FakeConsumer):
        def poll(self, timeout_ms):
            if self.refuse and self.position_at >= 1:
                raise TopicAuthorizationFailedError("t.control.subscriptions")
            return super().poll(timeout_ms)

    def consumer(settings):
        made.append(Refusing(records, refuse=False))
        return made[-1]

    monkeypatch.setattr(logic.clients, "consumer", consumer)
    monkeypatch.setattr(book, "apply", apply)
    stop = threading.Event()
    watcher = threading.Thread(target=book.watch, args=(stop,), daemon=True)
    watcher.start()
    assert book.ready.wait(10)
    stop.set()
    watcher.join(5)
    assert made[1].seeks == [("seek", 1)], "the second follow starts after the record already applied"
    assert applied == records, "each record applied once"
