"""The bench's CPU per 1000 events: the bus's own processes and, apart, the broker's."""

from __future__ import annotations

import os

from govbus.bench.measure import BROKER, ProcessWatch, per_thousand


def test_total_counts_the_bus_processes_and_total_with_broker_adds_the_broker() -> None:
    shares = per_thousand({"gate": {"cpu_seconds": 1.0}, "router": {"cpu_seconds": 2.0},
                           BROKER: {"cpu_seconds": 4.0}}, events=2000)

    assert shares["total"] == 1.5
    assert shares["total_with_broker"] == 3.5
    assert shares[BROKER] == 2.0


def test_without_a_watched_broker_there_is_no_total_with_broker() -> None:
    shares = per_thousand({"gate": {"cpu_seconds": 1.0}}, events=1000)

    assert shares == {"gate": 1.0, "total": 1.0}


def test_several_broker_nodes_are_each_named_and_all_left_out_of_the_bus_total() -> None:
    watch = ProcessWatch()
    watch.add_broker([os.getpid(), os.getpid()])

    assert set(watch.watched) == {f"{BROKER} node 1", f"{BROKER} node 2"}
    shares = per_thousand({name: {"cpu_seconds": 1.0} for name in [*watch.watched, "gate"]}, events=1000)
    assert shares["total"] == 1.0 and shares["total_with_broker"] == 3.0


def test_events_per_batch_is_taken_over_the_window_between_two_counts() -> None:
    from govbus.bench.measure import events_per_batch

    found = events_per_batch({"gate": {"batches": 10, "events": 100}},
                             {"gate": {"batches": 14, "events": 4100}, "router": {"batches": 0, "events": 0}})

    assert found == {"gate": 1000.0}
