"""Percentiles of delays in bounded memory: a log-bucket sketch, and a rolling window of them.

Freshness is measured per event at thousands of events a second, per library and department,
for as long as the bus runs; keeping every delay is not an option. A ``Sketch`` counts delays
in buckets whose bounds grow geometrically (the DDSketch idea): a percentile read from it is
within ``relative_error`` of the exact one (delays under ``floor`` seconds count as zero), and
its size depends on the spread of the delays (about 900 buckets from 1 ms to a day at 1 %),
never on their number. Sketches merge by adding counts, which is what makes a rolling window
cheap: ``RollingPercentiles`` keeps one sketch per time slice and drops whole slices as they
age out. Percentiles are nearest-rank: p95 is the smallest delay that at least 95 % of the
delays do not exceed.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
ZERO = -(10**9)  # the bucket index of delays at or under the floor (and negative ones: clock skew)


class Sketch:
    """Counts of delays (seconds) in geometric buckets; mergeable, bounded, accurate to a ratio."""

    __slots__ = ("relative_error", "floor", "_gamma_log", "_gamma", "buckets", "count", "maximum", "total")

    def __init__(self, relative_error: float = 0.01, floor: float = 0.001) -> None:
        if not 0 < relative_error < 1:
            raise ValueError("relative_error must be between 0 and 1")
        self.relative_error = relative_error
        self.floor = floor
        self._gamma = (1 + relative_error) / (1 - relative_error)
        self._gamma_log = math.log(self._gamma)
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.maximum = 0.0
        self.total = 0.0

    def add(self, value: float) -> None:
        index = ZERO if value <= self.floor else math.ceil(math.log(value) / self._gamma_log)
        self.buckets[index] += 1
        self.count += 1
        self.total += value
        if value > self.maximum or self.count == 1:
            self.maximum = value

    def merge(self, other: Sketch) -> None:
        self.buckets.update(other.buckets)
        self.maximum = other.maximum if self.count == 0 else max(self.maximum, other.maximum)
        self.count += other.count
        self.total += other.total

    def _value(self, index: int) -> float:
        """The bucket's representative: within ``relative_error`` of anything in it."""
        return 0.0 if index == ZERO else 2 * self._gamma**index / (self._gamma + 1)

    def quantiles(self, wanted: Iterable[float]) -> list[float | None]:
        """Nearest-rank quantiles, in the order asked; None for an empty sketch."""
        if self.count == 0:
            return [None for _ in wanted]
        ranks = [(max(1, math.ceil(q * self.count)), position) for position, q in enumerate(wanted)]
        answers: list[float | None] = [None] * len(ranks)
        pending = sorted(ranks)
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            while pending and pending[0][0] <= seen:
                answers[pending.pop(0)[1]] = min(self._value(index), self.maximum)
            if not pending:
                break
        return answers

    def summary(self) -> dict[str, float | int | None]:
        """count, p50, p95, p99, max and mean (seconds, rounded to the millisecond)."""
        values = self.quantiles(QUANTILES.values())
        result: dict[str, float | int | None] = {"count": self.count}
        result.update({name: _round(value) for name, value in zip(QUANTILES, values)})
        result["max"] = _round(self.maximum) if self.count else None
        result["mean"] = _round(self.total / self.count) if self.count else None
        return result


class RollingPercentiles:
    """The sketch of the delays seen in the last ``window`` seconds (in ``slices`` steps)."""

    def __init__(self, window: float = 600.0, slices: int = 60, relative_error: float = 0.01) -> None:
        self.window = window
        self.step = window / slices
        self.relative_error = relative_error
        self._slices: deque[tuple[int, Sketch]] = deque()

    def add(self, value: float, now: float) -> None:
        slot = int(now // self.step)
        if not self._slices or self._slices[-1][0] != slot:
            self._slices.append((slot, Sketch(self.relative_error)))
            self._expire(now)
        self._slices[-1][1].add(value)

    def _expire(self, now: float) -> None:
        oldest = int(now // self.step) - int(round(self.window / self.step)) + 1
        while self._slices and self._slices[0][0] < oldest:
            self._slices.popleft()

    def sketch(self, now: float) -> Sketch:
        """The delays of the window ending at ``now``, merged."""
        self._expire(now)
        merged = Sketch(self.relative_error)
        for _, part in self._slices:
            merged.merge(part)
        return merged

    def summary(self, now: float) -> dict[str, float | int | None]:
        return self.sketch(now).summary()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
