"""Operator metrics: what a processor has done, in Prometheus' exposition format at ``/metrics``.

Every processor worker serves its own figures on 127.0.0.1:``GOVBUS_PROCESSOR_PORT`` beside
``/health``; Prometheus scrapes each worker and adds them up. The metrics are module-level
objects (one worker is one process), incremented where the work happens with plain label
values — library, department, reason — never an entity id: labels must stay few.

    metrics.events_in.labels("gate", "population").inc()
    metrics.events_out.labels("gate", "population", "shared").inc()
    metrics.dead_letters.labels("gate", "population", "invalid").inc()
    metrics.conflicts.labels("population").inc()
    metrics.deliveries.labels("population", "civil_affairs").inc()

Consumer lag (per assigned partition: the partition's end offset minus the worker's position)
is measured by each batched loop (``batches.BatchLoop``) for the partitions it holds, and read
from the faust consumer by a timer that ``mount`` starts for the freshness agents.
"""

from __future__ import annotations

import logging

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import PlatformCollector, ProcessCollector

log = logging.getLogger("govbus.metrics")

registry = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=registry)
PlatformCollector(registry=registry)

# Delays from a few milliseconds to a day: the SLAs of the catalog sit between 5 s and 24 h.
DELAY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400, float("inf"))

events_in = Counter("govbus_events_in", "Events a processor read.", ["processor", "library"], registry=registry)
events_out = Counter("govbus_events_out", "Events a processor wrote, by the kind of topic written.",
                     ["processor", "library", "kind"], registry=registry)
dead_letters = Counter("govbus_dead_letters", "Events sent to dlq.<library>, by reason.",
                       ["processor", "library", "reason"], registry=registry)
conflicts = Counter("govbus_conflicts", "Disagreements sent to control.conflicts.", ["library"], registry=registry)
deliveries = Counter("govbus_deliveries", "Deliveries written to deliver.<department>.<library>.",
                     ["library", "department"], registry=registry)
heartbeats = Counter("govbus_heartbeats", "Heartbeats seen from sources.", ["library", "department"], registry=registry)
late_changes = Counter("govbus_late_changes", "Changes accepted later than the library's source-lateness SLA.",
                       ["library", "department"], registry=registry)
sla_breaches = Counter("govbus_sla_breaches", "Freshness alerts raised (one per breach episode).",
                       ["library", "department", "kind"], registry=registry)
sla_open = Gauge("govbus_sla_breach_open", "1 while a breach episode is open.", ["library", "department", "kind"],
                 registry=registry)
batches = Counter("govbus_batches", "Batches a batched processor committed (one Kafka transaction each).",
                  ["processor"], registry=registry)
batch_seconds = Histogram("govbus_batch_seconds", "Time a batch spent in each phase: handle (the processor's "
                          "own logic and handing outputs to librdkafka), commit (the transaction's offsets and "
                          "commit, which waits for every output to be stored).", ["processor", "phase"],
                          buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf")),
                          registry=registry)
aborted = Counter("govbus_batches_aborted", "Batches whose transaction was aborted and read again.",
                  ["processor"], registry=registry)
consumer_lag = Gauge("govbus_consumer_lag", "Messages not yet read by this worker, per assigned partition.",
                     ["topic", "partition"], registry=registry)
freshness = Gauge("govbus_freshness_seconds", "Rolling percentiles of source lateness and delivery latency.",
                  ["library", "department", "measure", "quantile"], registry=registry)
source_last_seen = Gauge("govbus_source_last_seen_timestamp_seconds", "When a source last sent anything.",
                         ["library", "department"], registry=registry)
source_lateness = Histogram("govbus_source_lateness_seconds", "Accepted by the gate minus recorded at the source.",
                            ["library"], buckets=DELAY_BUCKETS, registry=registry)
delivery_latency = Histogram("govbus_delivery_latency_seconds", "Routed minus accepted.", ["library"],
                             buckets=DELAY_BUCKETS, registry=registry)


def exposition() -> bytes:
    """The current figures in Prometheus' text format."""
    return generate_latest(registry)


def mount(app: faust.App, lag_interval: float = 5.0) -> None:
    """Serve ``/metrics`` on the worker's web server and keep ``govbus_consumer_lag`` current."""

    @app.page("/metrics")
    class Metrics(View):  # noqa: D401 - faust view
        async def get(self, request: Request) -> Response:
            return self.bytes(exposition(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.timer(lag_interval, on_leader=False)
    async def measure_lag() -> None:
        await update_lag(app)


async def update_lag(app: faust.App) -> None:
    """End offset minus position for every partition assigned to this worker."""
    consumer = app.consumer
    if consumer is None:
        return
    for tp in consumer.assignment():
        try:
            end = consumer.highwater(tp)
            position = await consumer.position(tp)
        except Exception:  # noqa: BLE001 - a partition mid-rebalance has no figures yet
            continue
        if end is not None and position is not None:
            consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, end - position))
