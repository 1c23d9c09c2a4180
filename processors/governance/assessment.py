"""The assessment (数据更新考核): how each department publishes, and how fresh each library is.

Everything is counted from what the bus itself recorded in the period, never from what a
department reports about itself:

- published: messages on its ``ingest.*.<department>`` topics (heartbeats counted apart);
- within SLA and lateness: its live changes on ``shared.*`` (snapshots are initial loads, not
  changes), late when the gate marked them ``govbus_late`` (or, for changes accepted before
  the gate marked lateness, when accepted minus recorded exceeds the library's SLA);
- rejected: dead letters whose origin (``govbus_dlq_topic``) is one of its ingest topics,
  as a share of what it published;
- conflicts: ``control.conflicts`` naming it — ``conflicts_to_verify`` as the authoritative
  department (its value was disputed and it must verify it), ``conflicts_reported`` as the
  department whose copy disagreed with the authority; each conflict id counted once;
  ``conflicts_open`` those to verify without a verdict in ``control.verdicts``, and
  ``oldest_open_conflict_seconds`` how long the oldest has waited at the period's end;
- objections: the objections of ``control.objections`` (the authority processor's record)
  whose owner is the department, raised in the period, folded by the one objection fold
  (``consumers/objections.py fold``), so only genuine answers count — by the field's
  authority, of an open objection; answered when resolved or rejected; the median time to
  answer over those answered;
- per library: the departments holding an approved subscription at the period's end, those
  that received deliveries in it, and the delivery latency of live deliveries.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from govbus.processors.governance import subscriptions as subscription_rules
from govbus.processors.gate.deadletters import ORIGIN_TOPIC, REASON
from govbus.processors.governance.subscriptions import Subscription
from govbus.processors.freshness.percentiles import Sketch
from govbus.processors.freshness.sla import late_change, lateness_limit
from govbus.processors.governance.topic_window import TopicWindow
from govbus.schemas.framing import (SOURCE_DEPARTMENT, delivery_latency, header_map, is_heartbeat,
                                    source_lateness)
from govbus.topics.catalog import Catalog
from govbus.settings import Settings
from govbus.topics.names import CONFLICTS, OBJECTIONS, SUBSCRIPTIONS, VERDICTS, TopicNames

ANSWERS = {"resolved", "rejected"}


class Tally:
    """Counts fed message by message (any object with ``headers``, ``value``, ``timestamp`` ms)."""

    def __init__(self, catalog: Catalog, names: TopicNames) -> None:
        self.catalog, self.names = catalog, names
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.lateness: dict[tuple[str, str], Sketch] = defaultdict(Sketch)  # (department, library | "all")
        self.latency: dict[tuple[str, str], Sketch] = defaultdict(Sketch)  # (library, department | "all")
        self.reasons: dict[str, Counter[str]] = defaultdict(Counter)
        self.conflicts: dict[str, tuple[str, str]] = {}
        self.conflict_raised: dict[str, float] = {}  # conflict id → when the gate recorded it
        self.verdicts: set[str] = set()  # conflicts closed by their authority's verdict
        self.objection_steps: list[bytes] = []
        self.subscriptions: dict[str, Subscription] = {}
        self.delivering: dict[str, set[str]] = defaultdict(set)

    def ingest(self, topic: str, message: Any) -> None:
        library, department = self.names.parse_ingest(topic)
        kind = "heartbeats" if is_heartbeat(message.headers) else "published"
        self.counts[department][kind] += 1
        self.counts[department][f"{kind}:{library}"] += 1

    def shared(self, library: str, message: Any) -> None:
        headers = header_map(message.headers)
        lateness = source_lateness(headers)
        if lateness is None:
            return
        department = headers.get(SOURCE_DEPARTMENT, b"unknown").decode(errors="replace")
        late = bool(late_change(headers, lateness_limit(self.catalog, library)))
        for scope in ("all", library):
            self.counts[department][f"changes:{scope}"] += 1
            self.counts[department][f"late:{scope}"] += late
            self.lateness[(department, scope)].add(lateness)

    def dead_letter(self, message: Any) -> None:
        headers = header_map(message.headers)
        try:
            _, department = self.names.parse_ingest(headers.get(ORIGIN_TOPIC, b"").decode())
        except ValueError:
            return  # rejected later than the gate: not a department's publishing
        self.counts[department]["rejected"] += 1
        self.reasons[department][headers.get(REASON, b"unknown").decode()] += 1

    def conflict(self, message: Any) -> None:
        body = _json(message.value)
        if body and body.get("conflict_id"):
            self.conflicts[body["conflict_id"]] = (body.get("authoritative_department"), body.get("reported_department"))
            self.conflict_raised.setdefault(body["conflict_id"], message.timestamp / 1000)

    def verdict(self, message: Any) -> None:
        """A verdict in ``control.verdicts`` (the authority processor's record: only the
        conflict's authority's verdicts are there; refusals are not verdicts)."""
        body = _json(message.value)
        if body and body.get("kind") == "verdict" and body.get("conflict_id"):
            self.verdicts.add(str(body["conflict_id"]))

    def objection(self, message: Any) -> None:
        """One step of the record; folded when the result is asked (unreadable ones skipped)."""
        if message.value is not None:
            self.objection_steps.append(message.value)

    def subscription(self, message: Any) -> None:
        """The latest value per key; an unreadable one counts as none (a tombstone likewise)."""
        key = (message.key or b"").decode()
        try:
            self.subscriptions[key] = subscription_rules.from_json(message.value)
        except (ValueError, TypeError):
            self.subscriptions.pop(key, None)

    def delivery(self, topic: str, message: Any) -> None:
        kind, _, rest = self.names.unprefixed(topic).partition(".")
        department, _, library = rest.partition(".")
        headers = header_map(message.headers)
        self.delivering[library].add(department)
        self.counts[f"library:{library}"]["deliveries"] += 1
        latency = delivery_latency(headers)
        if latency is None:
            return
        limit = self.catalog.library(library).freshness.max_delivery_latency.total_seconds()
        self.counts[f"library:{library}"]["live"] += 1
        self.counts[f"library:{library}"]["slow"] += latency > limit
        for scope in ("all", department):
            self.latency[(library, scope)].add(latency)

    # -- the result ------------------------------------------------------------------------
    def result(self, start: datetime | None, end: datetime) -> dict[str, Any]:
        return {"format": 1, "from": start.isoformat() if start else None, "to": end.isoformat(),
                "departments": [self._department(d, start, end) for d in self.catalog.departments],
                "libraries": [self._library(library, end) for library in self.catalog.libraries]}

    def _open_conflicts(self, department: str, end: datetime) -> dict[str, Any]:
        """Conflicts about its fields without a verdict, and how long the oldest has waited."""
        waiting = [self.conflict_raised[c] for c, (authority, _) in self.conflicts.items()
                   if authority == department and c not in self.verdicts and c in self.conflict_raised]
        oldest = round(end.timestamp() - min(waiting), 3) if waiting else None
        return {"conflicts_open": len(waiting), "oldest_open_conflict_seconds": oldest}

    def _objections(self) -> list[Any]:
        from govbus.consumers.objections import fold

        return list(fold(self.objection_steps).values())

    def _department(self, department: str, start: datetime | None, end: datetime) -> dict[str, Any]:
        counts = self.counts[department]
        changes, late = counts["changes:all"], counts["late:all"]
        raised = [o for o in self._objections() if o.owner == department
                  and (start is None or o.raised_at >= start) and o.raised_at < end]
        waits = [(o.answered_at - o.raised_at).total_seconds() for o in raised if o.answered_at is not None]
        names = self.catalog.departments[department]
        return {
            "department": department, "name": names.zh, "name_en": names.en,
            "published": counts["published"], "heartbeats": counts["heartbeats"], "changes": changes, "late": late,
            "within_sla_share": _share(changes - late, changes), "lateness": self.lateness[(department, "all")].summary(),
            "rejected": counts["rejected"], "rejected_share": _share(counts["rejected"], counts["published"]),
            "rejected_by_reason": dict(sorted(self.reasons[department].items())),
            "conflicts_to_verify": sum(1 for a, _ in self.conflicts.values() if a == department),
            "conflicts_reported": sum(1 for _, r in self.conflicts.values() if r == department),
            **self._open_conflicts(department, end),
            "objections_received": len(raised), "objections_answered": len(waits),
            "median_answer_seconds": round(statistics.median(waits), 3) if waits else None,
            "libraries": {library: {"published": counts[f"published:{library}"], "changes": counts[f"changes:{library}"],
                                    "late": counts[f"late:{library}"],
                                    "within_sla_share": _share(counts[f"changes:{library}"] - counts[f"late:{library}"],
                                                               counts[f"changes:{library}"]),
                                    "lateness": self.lateness[(department, library)].summary()}
                          for library, spec in self.catalog.libraries.items() if department in spec.sources},
        }

    def _library(self, library: str, end: datetime) -> dict[str, Any]:
        spec = self.catalog.library(library)
        counts = self.counts[f"library:{library}"]
        receivers = sorted({s.department for s in self.subscriptions.values()
                            if s.library == library and s.active_at(end)})  # one rule: expired by the clock too
        return {
            "library": library, "name": spec.name.zh, "name_en": spec.name.en, "owner": spec.owner,
            "sla": {"max_source_lateness_seconds": spec.freshness.max_source_lateness.total_seconds(),
                    "max_delivery_latency_seconds": spec.freshness.max_delivery_latency.total_seconds()},
            "subscribed_departments": receivers, "receiving_departments": len(receivers),
            "delivered_to": sorted(self.delivering[library]), "deliveries": counts["deliveries"],
            "live_deliveries": counts["live"], "within_sla_share": _share(counts["live"] - counts["slow"], counts["live"]),
            "delivery_latency": self.latency[(library, "all")].summary(),
            "by_department": {department: self.latency[(library, department)].summary()
                              for department in sorted(self.delivering[library])},
        }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _json(value: bytes | None) -> dict[str, Any] | None:
    try:
        body = json.loads(value) if value else None
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _time(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp() if text else None
    except ValueError:
        return None


def collect(settings: Settings, catalog: Catalog, start: datetime | None, end: datetime) -> dict[str, Any]:
    """Read the period from the bus and tally it (see the module docstring)."""
    names = TopicNames(settings.topic_prefix)
    tally = Tally(catalog, names)
    with TopicWindow(settings, start, end) as window:
        for library in catalog.libraries.values():
            for department in library.sources:
                topic = names.ingest(library.library, department)
                for message in window.read([topic]):
                    tally.ingest(topic, message)
            for message in window.read([names.shared(library.library)]):
                tally.shared(library.library, message)
            for message in window.read([names.dlq(library.library)]):
                tally.dead_letter(message)
        deliveries = sorted(topic for topic in window.topics() if topic.startswith(names.prefix + "deliver."))
        for topic in deliveries:
            for message in window.read([topic]):
                tally.delivery(topic, message)
        for message in window.read([names.bus(CONFLICTS)]):
            tally.conflict(message)
    with TopicWindow(settings, None, end) as window:
        for message in window.read([names.bus(SUBSCRIPTIONS)]):
            tally.subscription(message)
    with TopicWindow(settings) as window:  # answers and verdicts may come after the period
        for message in window.read([names.bus(OBJECTIONS)]):
            tally.objection(message)
        for message in window.read([names.bus(VERDICTS)]):
            tally.verdict(message)
    return tally.result(start, end)
