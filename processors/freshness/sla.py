"""Breach episodes: one alert when a freshness SLA starts being broken, one recovery when it ends.

A late source is late for many events in a row; an operator wants to hear it once, and to
hear when it is over. So each (library, department, kind) has at most one open episode: the
first breach opens it and raises an alert event, further breaches only update it, and it
closes with a recovery event that names the same episode.

- ``source_lateness`` (the source department's changes reach the gate later than the
  library's ``max_source_lateness``) and ``delivery_latency`` (a receiving department's
  deliveries are routed later than ``max_delivery_latency`` after acceptance) close when no
  breaching sample has been seen for ``settle`` seconds and an in-SLA one has since.
- ``source_silent`` (nothing, not even a heartbeat, from a source for longer than its
  ``cadence``) closes as soon as the source is seen again.

Alert events go to ``control.alerts`` as JSON, keyed ``<library>.<department>.<kind>``.

This module is also the one home of the lateness rule: a live change is late when the gate
accepted it more than the library's ``max_source_lateness`` after its source recorded it
(``breaches``, ``late``). The gate marks each change with it (``govbus_late``), and the
freshness monitor and the assessment read that mark through ``late_change`` — computing it
again only for a change the gate did not mark — so the three cannot count differently.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from govbus.processors.runtime import metrics
from govbus.schemas.framing import LATE, source_lateness
from govbus.topics.catalog import Catalog

SOURCE_LATENESS = "source_lateness"
DELIVERY_LATENCY = "delivery_latency"
SOURCE_SILENT = "source_silent"
ROLES = {SOURCE_LATENESS: "source", DELIVERY_LATENCY: "receiver", SOURCE_SILENT: "source"}
Key = tuple[str, str, str]  # library, department, kind


def breaches(measured: float, limit: float) -> bool:
    """Whether a measured delay breaks its SLA: strictly more than the limit (at it is in time)."""
    return measured > limit


def lateness_limit(catalog: Catalog, library: str) -> float:
    """The library's ``max_source_lateness`` in seconds (from the catalog)."""
    return catalog.library(library).freshness.max_source_lateness.total_seconds()


def late(recorded_at: float, accepted_at: float, limit: float, backfill: bool) -> bool:
    """The gate's verdict on one change: a live change accepted more than `limit` seconds after
    its source recorded it. A snapshot (backfill) is an initial load, never late."""
    return not backfill and breaches(accepted_at - recorded_at, limit)


def late_change(headers: Mapping[str, bytes], limit: float) -> bool | None:
    """Whether a change on ``shared.*`` (its headers) was late: the gate's mark, or for a
    change accepted before the gate marked lateness, ``late`` from its times. None when it
    is not a live change with both times (nothing to count)."""
    lateness = source_lateness(headers)
    if lateness is None:
        return None
    marked = headers.get(LATE)
    if marked in (b"true", b"false"):
        return marked == b"true"
    return breaches(lateness, limit)


@dataclass(slots=True)
class Episode:
    id: str
    opened: float
    last_breach: float
    worst: float
    limit: float
    clean_since_breach: bool = False


class Episodes:
    """The open breach episodes, and the alert and recovery events they cause."""

    def __init__(self, settle: float) -> None:
        self.settle = settle
        self.open: dict[Key, Episode] = {}

    def sample(self, key: Key, value: float, limit: float, now: float) -> dict[str, Any] | None:
        """A measured delay against its limit; an alert or recovery event, or None."""
        episode = self.open.get(key)
        if breaches(value, limit):
            if episode is None:
                return self._raise(key, value, limit, now)
            episode.last_breach, episode.worst = now, max(episode.worst, value)
            episode.clean_since_breach = False
            return None
        if episode is not None:
            episode.clean_since_breach = True
            return self._settled(key, episode, now)
        return None

    def silent(self, key: Key, silent_for: float, cadence: float, now: float) -> dict[str, Any] | None:
        """A source's silence so far against its cadence; an alert when it first exceeds it."""
        episode = self.open.get(key)
        if breaches(silent_for, cadence) and episode is None:
            return self._raise(key, silent_for, cadence, now)
        if episode is not None:
            episode.worst = max(episode.worst, silent_for)
        return None

    def seen(self, key: Key, now: float) -> dict[str, Any] | None:
        """A silent source sent something: its recovery, if it was in an episode."""
        episode = self.open.get(key)
        return self._close(key, episode, now) if episode is not None else None

    def sweep(self, now: float) -> list[dict[str, Any]]:
        """Recoveries of sample episodes that have settled since their last sample."""
        return [event for key, episode in list(self.open.items()) if key[2] != SOURCE_SILENT
                if (event := self._settled(key, episode, now)) is not None]

    def _settled(self, key: Key, episode: Episode, now: float) -> dict[str, Any] | None:
        if episode.clean_since_breach and now - episode.last_breach >= self.settle:
            return self._close(key, episode, now)
        return None

    def _raise(self, key: Key, value: float, limit: float, now: float) -> dict[str, Any]:
        episode = Episode(uuid.uuid4().hex, now, now, value, limit)
        self.open[key] = episode
        metrics.sla_breaches.labels(*key).inc()
        metrics.sla_open.labels(*key).set(1)
        return event(key, "alert", episode, now, observed=value)

    def _close(self, key: Key, episode: Episode, now: float) -> dict[str, Any]:
        del self.open[key]
        metrics.sla_open.labels(*key).set(0)
        return event(key, "recovery", episode, now, observed=episode.worst)


def event(key: Key, state: str, episode: Episode, now: float, observed: float) -> dict[str, Any]:
    library, department, kind = key
    body: dict[str, Any] = {
        "format": 1, "id": uuid.uuid4().hex, "kind": kind, "state": state, "library": library,
        "department": department, "role": ROLES[kind], "at": iso(now), "episode": episode.id,
        "opened_at": iso(episode.opened), "observed_seconds": round(observed, 3),
        "limit_seconds": round(episode.limit, 3),
    }
    if state == "recovery":
        body["duration_seconds"] = round(now - episode.opened, 3)
    body["message"] = describe(body)
    return body


def describe(alert: dict[str, Any]) -> str:
    """One line for people: what is wrong (or right again), for whom, by how much."""
    who, library = alert["department"], alert["library"]
    observed, limit = alert["observed_seconds"], alert["limit_seconds"]
    if alert["state"] == "recovery":
        return f"{alert['kind']} of {who} on {library} is back within its SLA after {alert['duration_seconds']} s"
    if alert["kind"] == SOURCE_SILENT:
        return f"{who} has sent nothing on {library} for {observed} s (cadence {limit} s)"
    if alert["kind"] == SOURCE_LATENESS:
        return f"{who}'s changes to {library} reach the bus {observed} s after recording (SLA {limit} s)"
    return f"deliveries of {library} to {who} take {observed} s after acceptance (SLA {limit} s)"


def key_bytes(alert: dict[str, Any]) -> bytes:
    return f"{alert['library']}.{alert['department']}.{alert['kind']}".encode()


def encode(alert: dict[str, Any]) -> bytes:
    return json.dumps(alert, ensure_ascii=False, separators=(",", ":")).encode()


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
