"""The freshness processor: proves continuously that shared data is fresh, and says when not.

``govbus processors run freshness`` reads, without changing anything:

- ``shared.<library>`` (faust agent): source lateness per library and source department;
- ``ingest.<library>.<department>`` (faust agent): any message, heartbeats included, shows
  the source is alive;
- every ``deliver.<department>.<library>`` (an aiokafka consumer subscribed by pattern, its
  own consumer group: delivery topics appear whenever a subscription is approved, and faust
  cannot subscribe by pattern): delivery latency per library and receiving department.

It writes rolling p50/p95/p99 per library to ``metrics.freshness`` every
``GOVBUS_FRESHNESS_INTERVAL`` seconds, and alert and recovery events to ``control.alerts``
(see ``sla.py``). Run one freshness worker per bus: the silence of a source is judged from
all ingest partitions, which one worker must see.

A ``metrics.freshness`` record (key: the library)::

    {"format": 1, "at": "2025-01-01T00:00:10.000Z", "library": "population", "window_seconds": 600,
     "sla": {"max_source_lateness_seconds": 86400, "max_delivery_latency_seconds": 5},
     "source_lateness": {"all": {"count": 120, "p50": 0.8, "p95": 2.1, "p99": 3.0, "max": 3.2, "mean": 0.9},
                         "by_department": {"public_security": {…same keys…}}},
     "delivery_latency": {"all": {…} | null, "by_department": {"civil_affairs": {…}}},
     "late_changes": {"civil_affairs": 3},            # since the processor started
     "sources": {"public_security": {"cadence_seconds": 600, "heard": true, "last_seen": "…Z",
                                     "silent_seconds": 4.2, "silent": false}},
     "open_alerts": ["civil_affairs.source_lateness"]}
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import faust
from aiokafka import AIOKafkaConsumer

from govbus import clients
from govbus.processors.runtime import metrics
from govbus.processors.freshness import sla
from govbus.processors.runtime.app import names as topic_names
from govbus.processors.freshness.monitor import FreshnessMonitor
from govbus.schemas.framing import is_heartbeat
from govbus.settings import Settings
from govbus.topics.catalog import Catalog
from govbus.topics.names import ALERTS, FRESHNESS, TopicNames

if TYPE_CHECKING:
    from govbus.processors.runtime.worker import Registered

log = logging.getLogger("govbus.freshness")
RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
WINDOW_SECONDS = 600.0  # the rolling window of the percentiles
CHECK_SECONDS = 1.0  # how often silence and settled episodes are looked at
DISCOVERY_SECONDS = 5.0  # how soon a new delivery topic is read


def register_freshness(app: faust.App, settings: Settings, catalog: Catalog) -> Registered:
    """faust agents with faust's own acks: the monitor changes no data, and an event it
    misses would only leave a percentile a sample short."""
    names = topic_names(settings)
    monitor = FreshnessMonitor(catalog, names, started=time.time(), window=WINDOW_SECONDS,
                               settle=settings.freshness_interval)
    counts: Counter[str] = Counter()
    alerts_topic = app.topic(names.bus(ALERTS), **RAW)
    reports_topic = app.topic(names.bus(FRESHNESS), **RAW)

    async def emit(alerts: Iterable[dict[str, Any]]) -> None:
        for alert in alerts:
            counts[f"{alert['kind']}:{alert['state']}"] += 1
            log.warning("freshness %s: %s", alert["state"], alert["message"])
            await alerts_topic.send(key=sla.key_bytes(alert), value=sla.encode(alert))

    shared_library = {names.shared(library): library for library in catalog.libraries}
    ingest_source = {names.ingest(library.library, department): (library.library, department)
                     for library in catalog.libraries.values() for department in library.sources}

    async def shared(stream: faust.StreamT) -> None:
        async for event in stream.events():
            library = shared_library[event.message.topic]
            metrics.events_in.labels("freshness", library).inc()
            counts["shared"] += 1
            await emit(_measured(monitor.accepted, library, event.message.headers))

    async def ingest(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            library, department = ingest_source[message.topic]
            counts["ingest"] += 1
            if is_heartbeat(_header_items(message.headers)):
                metrics.heartbeats.labels(library, department).inc()
            await emit(monitor.seen(library, department, message.timestamp or time.time(), time.time()))

    app.agent(app.topic(*shared_library, **RAW), name="freshness-shared")(shared)
    app.agent(app.topic(*ingest_source, **RAW), name="freshness-ingest")(ingest)

    async def check() -> None:
        await emit(monitor.check(time.time()))

    async def report() -> None:
        for library, record in monitor.report(time.time()).items():
            body = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
            await reports_topic.send(key=library.encode(), value=body)
        counts["reports"] += 1

    async def deliveries() -> None:
        monitor.begin(time.time())  # a task starts once the worker is ready
        await _follow_deliveries(app, settings, names, monitor, emit, counts)

    app.timer(CHECK_SECONDS, name="freshness-check")(check)
    app.timer(settings.freshness_interval, name="freshness-report")(report)
    app.task(deliveries)
    from govbus.processors.runtime.worker import Registered  # the worker imports this module

    return Registered(lambda: {**counts, "open_alerts": len(monitor.episodes.open)})


async def _follow_deliveries(app: faust.App, settings: Settings, names: TopicNames, monitor: FreshnessMonitor,
                             emit: Callable, counts: Counter[str]) -> None:
    """Every delivery topic, present and future, through a pattern subscription."""
    consumer = AIOKafkaConsumer(**clients.connection_config(settings), group_id=f"{app.conf.id}-deliveries",
                                auto_offset_reset="earliest", enable_auto_commit=True,
                                metadata_max_age_ms=int(DISCOVERY_SECONDS * 1000))
    consumer.subscribe(pattern=f"^{re.escape(names.prefix)}deliver\\.[a-z0-9_]+\\.[a-z0-9_]+$")
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for partition, records in batches.items():
                for record in records:
                    counts["deliveries"] += 1
                    await emit(_measured(monitor.delivered, partition.topic, record.headers))
    except asyncio.CancelledError:
        raise
    finally:
        await consumer.stop()


def _measured(measure: Callable[[str, Any, float], list], name: str, headers: Any) -> list:
    """A measurement that a malformed header cannot stop: logged and skipped."""
    try:
        return measure(name, _header_items(headers), time.time())
    except (ValueError, TypeError, UnicodeDecodeError) as error:
        log.warning("freshness: unreadable timestamps on %s: %s", name, error)
        return []


def _header_items(headers: object) -> list[tuple[str, bytes]]:
    if not headers:
        return []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)  # type: ignore[arg-type]
