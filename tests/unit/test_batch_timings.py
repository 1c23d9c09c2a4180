"""A batched loop's phase times: what /health and the bench report of recent batches."""

from __future__ import annotations

from govbus.processors.runtime import metrics
from govbus.processors.runtime.batches import RECENT_BATCHES, BatchTimings


def test_the_summary_gives_each_phase_its_median_tail_and_maximum() -> None:
    timings = BatchTimings("timings-test")
    for number in range(100):
        timings.add(handle=0.001 * number, commit=0.5 if number == 99 else 0.01)
    summary = timings.summary()
    assert summary["handle_s"] == {"p50": 0.05, "p99": 0.099, "max": 0.099}
    assert summary["commit_s"]["p50"] == 0.01 and summary["commit_s"]["max"] == 0.5


def test_only_the_recent_batches_count_and_every_batch_reaches_the_histogram() -> None:
    timings = BatchTimings("timings-recent")
    for _ in range(RECENT_BATCHES):
        timings.add(handle=9.0, commit=9.0)
    for _ in range(RECENT_BATCHES):
        timings.add(handle=0.002, commit=0.003)
    assert timings.summary()["commit_s"]["max"] == 0.003
    count = metrics.registry.get_sample_value("govbus_batch_seconds_count",
                                              {"processor": "timings-recent", "phase": "commit"})
    assert count == 2 * RECENT_BATCHES


def test_no_batch_yet_means_no_phase_in_the_summary() -> None:
    assert BatchTimings("timings-empty").summary() == {}
