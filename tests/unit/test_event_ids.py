"""A source's events get random UUIDs (version 4) as ids when its records carry none, each
one new: in one process, across threads, and in a forked child."""

from __future__ import annotations

import os
import threading
import uuid

from govbus.producers.records import new_event_id, to_event


def test_event_ids_are_canonical_random_uuids() -> None:
    for _ in range(1000):
        text = new_event_id()
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_event_ids_never_repeat_across_pool_refills_and_threads() -> None:
    drawn: list[str] = []

    def draw() -> None:
        drawn.extend(new_event_id() for _ in range(2000))  # several 4 KiB pools per thread

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(drawn) == 8000 and len(set(drawn)) == 8000


def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    new_event_id()  # the parent's pool holds ids the child must not repeat
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(writing, new_event_id().encode())
        os._exit(0)
    os.close(writing)
    os.waitpid(child, 0)
    childs = os.read(reading, 64).decode()
    os.close(reading)
    assert childs != new_event_id()


def test_a_record_without_an_event_id_gets_a_new_one_and_one_with_an_id_keeps_it() -> None:
    record = {"citizen_id": "11010519491231002X", "sequence": 1, "name": "张三"}
    first = to_event("population", "public_security", record, "test")["event_id"]
    second = to_event("population", "public_security", record, "test")["event_id"]
    assert first != second and uuid.UUID(first).version == 4
    given = str(uuid.uuid4())
    assert to_event("population", "public_security", {**record, "event_id": given}, "test")["event_id"] == given
