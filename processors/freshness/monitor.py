"""What the freshness processor knows, free of faust: delays measured from headers, SLAs, reports.

Every hop stamps its time in a header and nothing is recomputed, so measuring is reading:

- source lateness, from ``shared.<library>``: ``framing.source_lateness``, the gate's
  ``govbus_accepted_at`` minus ``ce_time``, which the gate writes from the event's validated
  ``recorded_at`` (never the source's own header; reading it spares decoding the Avro value). Snapshots (``govbus_backfill: true``)
  are initial loads of old records, not changes, so they are not measured;
- delivery latency, from ``deliver.<department>.<library>``: ``govbus_routed_at`` minus
  ``govbus_accepted_at``, for live deliveries (a backfill on approval delivers old changes);
- liveness, from ``ingest.<library>.<department>``: any message, heartbeats included.

Percentiles are kept per library ("all") and per department over a rolling window. Messages
stamped longer ago than the window (a replay of history after a first start) are not current
freshness and are left out, so that a restart raises no alerts for old news.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from govbus.processors.runtime import metrics
from govbus.processors.freshness.percentiles import QUANTILES, RollingPercentiles
from govbus.processors.freshness.sla import (DELIVERY_LATENCY, SOURCE_LATENESS, SOURCE_SILENT, Episodes, iso, late_change,
                                  lateness_limit)
from govbus.schemas.framing import (ACCEPTED_AT, ROUTED_AT, SOURCE_DEPARTMENT, delivery_latency,
                                    header_map, header_seconds, source_lateness)
from govbus.topics.catalog import Catalog
from govbus.topics.names import TopicNames

ALL = "all"
Alerts = list[dict[str, Any]]


class FreshnessMonitor:
    """Rolling delay percentiles, source liveness and SLA episodes for every library."""

    def __init__(self, catalog: Catalog, names: TopicNames, *, started: float, window: float = 600.0,
                 settle: float = 10.0) -> None:
        self.names = names
        self.window = window
        self.episodes = Episodes(settle)
        self.lateness_limit = {name: lateness_limit(catalog, name) for name in catalog.libraries}
        self.latency_limit = {name: lib.freshness.max_delivery_latency.total_seconds() for name, lib in catalog.libraries.items()}
        self.cadence = {(name, department): source.cadence.total_seconds()
                        for name, lib in catalog.libraries.items() for department, source in lib.sources.items()}
        self.last_seen: dict[tuple[str, str], float] = dict.fromkeys(self.cadence, started)
        self.heard: set[tuple[str, str]] = set()  # sources that sent something since the start
        self.lateness: dict[tuple[str, str], RollingPercentiles] = {}
        self.latency: dict[tuple[str, str], RollingPercentiles] = {}
        self.late = Counter[tuple[str, str]]()
        self._deliver_topics: dict[str, tuple[str, str] | None] = {}

    # -- measuring -------------------------------------------------------------------------
    def accepted(self, library: str, raw_headers: Any, now: float) -> Alerts:
        """A change on ``shared.<library>``: its source lateness."""
        headers = header_map(raw_headers)
        lateness, accepted = source_lateness(headers), header_seconds(headers, ACCEPTED_AT)
        if lateness is None or accepted is None or now - accepted > self.window:
            return []
        department = headers.get(SOURCE_DEPARTMENT, b"").decode(errors="replace") or "unknown"
        limit = self.lateness_limit.get(library, float("inf"))
        if late_change(headers, limit):
            self.late[(library, department)] += 1
            metrics.late_changes.labels(library, department).inc()
        metrics.source_lateness.labels(library).observe(max(0.0, lateness))
        self._add(self.lateness, library, department, lateness, now)
        alert = self.episodes.sample((library, department, SOURCE_LATENESS), lateness, limit, now)
        return [alert] if alert else []

    def delivered(self, topic: str, raw_headers: Any, now: float) -> Alerts:
        """A delivery on ``deliver.<department>.<library>``: its delivery latency."""
        target = self.delivery_target(topic)
        headers = header_map(raw_headers)
        latency, routed = delivery_latency(headers), header_seconds(headers, ROUTED_AT)
        if target is None or latency is None or routed is None or now - routed > self.window:
            return []
        department, library = target
        metrics.delivery_latency.labels(library).observe(max(0.0, latency))
        self._add(self.latency, library, department, latency, now)
        alert = self.episodes.sample((library, department, DELIVERY_LATENCY), latency,
                                     self.latency_limit.get(library, float("inf")), now)
        return [alert] if alert else []

    def seen(self, library: str, department: str, at: float, now: float) -> Alerts:
        """Any message on ``ingest.<library>.<department>`` (``at``: its broker timestamp).
        A time after `now` counts as `now`: the ingest topics take the broker's append time
        (``topics/bus.yaml``), and even a topic left on producer times cannot make a source
        look alive into the future with one message stamped years ahead."""
        source = (library, department)
        at = min(at, now)
        self.last_seen[source] = max(self.last_seen.get(source, at), at)
        self.heard.add(source)
        metrics.source_last_seen.labels(library, department).set(self.last_seen[source])
        alert = self.episodes.seen((library, department, SOURCE_SILENT), now)
        return [alert] if alert else []

    def begin(self, now: float) -> None:
        """The worker is running: a source not heard from yet gets one cadence from now."""
        for source in self.cadence:
            if source not in self.heard:
                self.last_seen[source] = now

    def check(self, now: float) -> Alerts:
        """The timer's look: sources silent past their cadence, settled breach episodes."""
        alerts = []
        for source, cadence in self.cadence.items():
            alert = self.episodes.silent((*source, SOURCE_SILENT), now - self.last_seen[source], cadence, now)
            if alert:
                alerts.append(alert)
        return alerts + self.episodes.sweep(now)

    def delivery_target(self, topic: str) -> tuple[str, str] | None:
        """(department, library) of a delivery topic, remembered per name."""
        if topic not in self._deliver_topics:
            kind, _, rest = self.names.unprefixed(topic).partition(".")
            department, _, library = rest.partition(".")
            ok = kind == "deliver" and department and library and "." not in library
            self._deliver_topics[topic] = (department, library) if ok else None
        return self._deliver_topics[topic]

    def _add(self, table: dict[tuple[str, str], RollingPercentiles], library: str, department: str,
             value: float, now: float) -> None:
        for key in ((library, ALL), (library, department)):
            if key not in table:
                table[key] = RollingPercentiles(self.window)
            table[key].add(value, now)

    # -- reporting -------------------------------------------------------------------------
    def report(self, now: float) -> dict[str, dict[str, Any]]:
        """One ``metrics.freshness`` record per library (see ``freshness.py`` for the layout)."""
        reports = {}
        for library in self.lateness_limit:
            lateness = self._summaries(self.lateness, library, "source_lateness", now)
            latency = self._summaries(self.latency, library, "delivery_latency", now)
            reports[library] = {
                "format": 1, "at": iso(now), "library": library, "window_seconds": self.window,
                "sla": {"max_source_lateness_seconds": self.lateness_limit[library],
                        "max_delivery_latency_seconds": self.latency_limit[library]},
                "source_lateness": lateness, "delivery_latency": latency,
                "late_changes": {dept: count for (lib, dept), count in sorted(self.late.items()) if lib == library},
                "sources": {dept: self._source(library, dept, now) for (lib, dept) in self.cadence if lib == library},
                "open_alerts": sorted(f"{dept}.{kind}" for lib, dept, kind in self.episodes.open if lib == library),
            }
        return reports

    def _summaries(self, table: dict[tuple[str, str], RollingPercentiles], library: str, measure: str,
                   now: float) -> dict[str, Any]:
        found = {}
        for (lib, department), rolling in sorted(table.items()):
            if lib != library:
                continue
            summary = rolling.summary(now)
            found[department] = summary
            for quantile in QUANTILES:
                if summary[quantile] is not None:
                    metrics.freshness.labels(library, department, measure, quantile).set(summary[quantile])
        return {"all": found.pop(ALL, None), "by_department": found}

    def _source(self, library: str, department: str, now: float) -> dict[str, Any]:
        last = self.last_seen[(library, department)]
        cadence = self.cadence[(library, department)]
        return {"cadence_seconds": cadence, "heard": (library, department) in self.heard,
                "last_seen": iso(last) if (library, department) in self.heard else None,
                "silent_seconds": round(now - last, 3), "silent": now - last > cadence}
