"""The Prometheus counters of what a batched processor read and wrote, added once per batch.

Why per batch: a label lookup per event and per output (six for a routed change) cost about a
fifth of the router's own time per event. A `Tally` adds up one batch in plain counters and
hands the sums to the Prometheus counters when the batch is handled (``flush``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from govbus.processors.runtime import metrics
from govbus.processors.gate.deadletters import REASON
from govbus.processors.runtime.output import Output
from govbus.topics.names import TopicNames


class Tally:
    """One processor's counts since the last ``flush``."""

    def __init__(self, processor: str, names: TopicNames) -> None:
        self.processor = processor
        self.names = names
        self.events: Counter[str] = Counter()  # library -> events read
        self.outputs: Counter[tuple[str, str]] = Counter()  # (library, topic) -> messages written
        self.dead: Counter[tuple[str, str]] = Counter()  # (library, reason) -> dead letters
        self._kinds: dict[str, tuple[str, str]] = {}  # topic -> (kind, the rest of its name)

    def add(self, library: str, outputs: Iterable[Output]) -> None:
        """One event read and what it produced."""
        self.events[library] += 1
        for output in outputs:
            self.outputs[(library, output.topic)] += 1
            if self._kind(output.topic)[0] == "dlq":
                reason = dict(output.headers).get(REASON, b"unknown").decode(errors="replace")
                self.dead[(library, reason)] += 1

    def flush(self) -> None:
        """Add the sums to the Prometheus counters and start again."""
        for library, count in self.events.items():
            metrics.events_in.labels(self.processor, library).inc(count)
        for (library, topic), count in self.outputs.items():
            kind, rest = self._kind(topic)
            metrics.events_out.labels(self.processor, library, kind).inc(count)
            if kind == "control" and rest == "conflicts":
                metrics.conflicts.labels(library).inc(count)
            elif kind == "deliver":
                metrics.deliveries.labels(library, rest.partition(".")[0]).inc(count)
        for (library, reason), count in self.dead.items():
            metrics.dead_letters.labels(self.processor, library, reason).inc(count)
        self.events.clear()
        self.outputs.clear()
        self.dead.clear()

    def _kind(self, topic: str) -> tuple[str, str]:
        found = self._kinds.get(topic)
        if found is None:
            kind, _, rest = self.names.unprefixed(topic).partition(".")
            found = self._kinds[topic] = (kind, rest)
        return found
