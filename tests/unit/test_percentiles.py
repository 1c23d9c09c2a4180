"""Rolling percentiles of delays: accurate to their stated error, bounded, forgetting the past."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from govbus.processors.freshness.percentiles import RollingPercentiles, Sketch


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_percentiles_of_a_known_exponential_distribution_of_delays() -> None:
    # Delays ~ Exp(mean 2 s): p50 = 2 ln 2 = 1.386, p95 = 2 ln 20 = 5.991, p99 = 2 ln 100 = 9.210.
    generator = random.Random(7)
    sketch = Sketch()
    for _ in range(50_000):
        sketch.add(generator.expovariate(0.5))
    summary = sketch.summary()
    assert summary["count"] == 50_000
    assert math.isclose(summary["p50"], 2 * math.log(2), rel_tol=0.03)
    assert math.isclose(summary["p95"], 2 * math.log(20), rel_tol=0.03)
    assert math.isclose(summary["p99"], 2 * math.log(100), rel_tol=0.05)
    assert math.isclose(summary["mean"], 2.0, rel_tol=0.03)


def test_percentiles_of_uniform_delays_between_zero_and_ten_seconds() -> None:
    generator = random.Random(11)
    rolling = RollingPercentiles(window=600)
    for second in range(20_000):
        rolling.add(generator.uniform(0, 10), now=1_000 + second * 0.01)
    summary = rolling.summary(now=1_200)
    assert math.isclose(summary["p50"], 5.0, rel_tol=0.03)
    assert math.isclose(summary["p95"], 9.5, rel_tol=0.02)
    assert math.isclose(summary["p99"], 9.9, rel_tol=0.02)
    assert summary["max"] <= 10


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.002, max_value=200_000, allow_nan=False), min_size=1, max_size=300),
       st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0]))
def test_a_sketch_quantile_is_within_its_relative_error_of_the_exact_one(values: list[float], q: float) -> None:
    sketch = Sketch(relative_error=0.01)
    for value in values:
        sketch.add(value)
    (found,) = sketch.quantiles([q])
    assert found is not None
    assert abs(found - exact(values, q)) <= 0.01 * exact(values, q) + 1e-9


def test_delays_under_a_millisecond_or_negative_count_as_zero() -> None:
    sketch = Sketch()
    for value in (-0.5, 0.0, 0.0004):
        sketch.add(value)
    assert sketch.quantiles([0.5, 1.0]) == [0.0, 0.0]
    assert sketch.count == 3


def test_memory_depends_on_the_spread_of_delays_not_their_number() -> None:
    generator = random.Random(3)
    sketch = Sketch(relative_error=0.01)
    for _ in range(100_000):
        sketch.add(generator.uniform(0.001, 86_400))
    assert len(sketch.buckets) < 1_000


def test_samples_older_than_the_window_are_forgotten() -> None:
    rolling = RollingPercentiles(window=60, slices=6)
    for step in range(100):
        rolling.add(100.0, now=1_000 + step * 0.1)  # old and slow
    for step in range(100):
        rolling.add(1.0, now=1_100 + step * 0.1)  # recent and fast
    summary = rolling.summary(now=1_115)
    assert summary["count"] == 100
    assert summary["p99"] <= 1.01
    assert rolling.summary(now=5_000)["count"] == 0
    assert rolling.summary(now=5_000)["p50"] is None


def test_merged_sketches_equal_one_sketch_of_all_values() -> None:
    generator = random.Random(5)
    values = [generator.lognormvariate(0, 1) for _ in range(2_000)]
    whole, first, second = Sketch(), Sketch(), Sketch()
    for position, value in enumerate(values):
        whole.add(value)
        (first if position % 2 else second).add(value)
    first.merge(second)
    quantiles = [0.1, 0.5, 0.95, 0.99, 1.0]
    assert first.quantiles(quantiles) == whole.quantiles(quantiles)
    assert (first.count, first.maximum) == (whole.count, whole.maximum)
