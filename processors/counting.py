"""The Prometheus counters of one input event and what it produced, for every processor."""

from __future__ import annotations

from collections.abc import Iterable

from govbus.processors import metrics
from govbus.processors.gate import Output
from govbus.topics.names import TopicNames


def count(processor: str, library: str, outputs: Iterable[Output], names: TopicNames) -> None:
    metrics.events_in.labels(processor, library).inc()
    for output in outputs:
        kind, _, rest = names.unprefixed(output.topic).partition(".")
        metrics.events_out.labels(processor, library, kind).inc()
        if kind == "dlq":
            reason = dict(output.headers).get("govbus_dlq_reason", b"unknown").decode()
            metrics.dead_letters.labels(processor, library, reason).inc()
        elif kind == "control" and rest == "conflicts":
            metrics.conflicts.labels(library).inc()
        elif kind == "deliver":
            metrics.deliveries.labels(library, rest.partition(".")[0]).inc()
