"""The bench's steady-state rate (measure.steady_rate): events per second once every stage is
busy, without the pipeline's filling and draining, so that a short run of a fast pipeline is
not compared with a long run of a slow one by their start-up and drain."""

from __future__ import annotations

import pytest

from govbus.bench import report
from govbus.bench.measure import progress_of, steady_rate


def _filling_steady_draining(events: int = 1000, rate: float = 500.0, fill: float = 2.0, drain: float = 3.0) -> list[float]:
    """Applied times: nothing for `fill` seconds, then `rate` events/s, the last tenth `drain` s late."""
    times = [fill + index / rate for index in range(events)]
    tail = int(events * 0.9)
    return times[:tail] + [moment + drain for moment in times[tail:]]


def test_the_steady_rate_leaves_out_the_filling_and_the_draining() -> None:
    times = _filling_steady_draining()
    whole_run = len(times) / max(times)
    steady = steady_rate([progress_of(times)], len(times))
    assert steady == pytest.approx(500.0, rel=0.01)
    assert whole_run < 250  # what a whole-run rate would have said


def test_the_slowest_store_decides_both_ends() -> None:
    fast = [index / 1000 for index in range(1000)]  # 1,000 events/s
    slow = [index / 250 for index in range(1000)]  # 250 events/s
    assert steady_rate([progress_of(fast), progress_of(slow)], 1000) == pytest.approx(250.0, rel=0.01)


def test_progress_reported_per_batch_gives_the_same_rate() -> None:
    batches = [(0.5 * number, 100 * number) for number in range(1, 11)]  # 100 events every half second
    assert steady_rate([batches], 1000) == pytest.approx(200.0, rel=0.01)


def test_no_rate_when_a_store_never_applied_enough_or_all_came_at_once() -> None:
    assert steady_rate([progress_of([1.0, 2.0])], 100) is None  # 2 of 100 applied
    assert steady_rate([[(1.0, 100)]], 100) is None  # one batch: no interval to measure
    assert steady_rate([], 100) is None
    assert steady_rate([progress_of([1.0])], 0) is None


def test_a_short_topology_ceiling_run_is_flagged_under_the_ratios() -> None:
    short = {"topology": {"confluent-kafka": {"seconds": 3.7, "events_per_s": 5456.0}}}
    document = {"date": "2026-12-07T03:00:00+00:00", "parameters": {}, "versions": {"python": "3.11"},
                "machine": {"cores": 2, "memory_gib": 24.0, "cpu_model": "x", "system": "Linux",
                            "load_average_at_start": [0.1, 0.1, 0.1]},
                "results": short, "ratios": {"bus_over_topology_ceiling_confluent_kafka": 0.5}}
    text = report.markdown(document)
    assert "Note: the topology ceiling ran only 3.7 s" in text and "--events 60000" in text
    assert report.cautions({"topology": {"confluent-kafka": {"seconds": 8.1}}}) != []
    assert report.cautions({"topology": {"confluent-kafka": {"seconds": 12.0}}}) == []
    assert report.cautions({"topology": {"confluent-kafka": {"error": "timed out"}}}) == []
    assert report.cautions({}) == []
