"""The console's four views as JSON, built from what the reader knows (``live.Knowledge``).

Every rule comes from its one home: a subscription's state from ``Subscription.state_at``,
whose approval it waits for from ``Subscription.awaiting``, a field's sharing class,
authority and mask from the schema's ``FieldPolicy`` (``mask_for_purpose``), open objections
from ``objections.select``, open conflicts from ``conflicts.fold``, sharing records from
``audit.query`` and the chain's state from ``audit.verify``. This module only arranges them
for people: filters, grouping, ages, and charts' points.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from govbus.consumers import objections as objection_rules
from govbus.processors.governance import audit
from govbus.processors.governance import conflicts as conflict_rules
from govbus.processors.governance.subscriptions import Subscription
from govbus.topics.catalog import Catalog

from govbus.console.live import Knowledge, seconds_of as _seconds

STATE_LABELS = {"requested": "pending"}  # what governance staff call a request waiting for a decision
STATES = ("approved", "pending", "refused", "revoked", "expired")
ROW_LIMIT = 500  # rows sent to the page at once; the counts say how many matched
CHART_POINTS = 240
WINDOWS = {"15m": 900, "1h": 3600, "6h": 21600}
TRACE_LIMIT = 1000


@dataclass(frozen=True)
class LineageFilter:
    """What the lineage view is narrowed to; empty means everything."""

    department: str = ""
    library: str = ""
    field: str = ""  # `household_address` or `population.household_address`
    state: str = ""

    def field_parts(self) -> tuple[str, str]:
        library, dot, name = self.field.partition(".")
        return (library, name) if dot else ("", self.field)

    def admits(self, row: Mapping[str, Any]) -> bool:
        library, name = self.field_parts()
        return ((not self.department or self.department in (row["department"], row["authority"]))
                and (not self.library or row["library"] == self.library)
                and (not library or row["library"] == library) and (not name or row["field"] == name)
                and (not self.state or row["state"] == self.state))


def state_of(subscription: Subscription, now: datetime) -> str:
    state = subscription.state_at(now)
    return STATE_LABELS.get(state, state)


def lineage_rows(subscriptions: Iterable[Subscription], registry: Any, now: datetime,
                 catalog: Catalog | None = None) -> list[dict[str, Any]]:
    """One row per subscribed field: source (the field's authority, 一数一源) → library → field
    (sharing class) → subscribing department, with purpose, mask and state. A life event
    asked for is a row too (``event:<name>``), with the fields it reveals something of: their
    strictest sharing class and their authorities."""
    rows = []
    for subscription in subscriptions:
        policies = registry.policy(subscription.library) if subscription.library in registry.libraries() else {}
        common = {"subscription": subscription.id, "department": subscription.department,
                  "library": subscription.library, "purpose": subscription.purpose,
                  "state": state_of(subscription, now), "filters": list(subscription.filters),
                  "until": subscription.until.isoformat() if subscription.until else None,
                  "awaiting": list(subscription.awaiting), "requested_at": subscription.requested_at.isoformat()}
        for name in subscription.fields:
            policy = policies.get(name)
            rows.append({**common, "field": name, "sharing": policy.sharing if policy else "unknown",
                         "authority": policy.authority if policy else "",
                         "mask": policy.mask_for_purpose(subscription.purpose) if policy else None})
        declared = catalog.libraries[subscription.library].life_events if (
            catalog is not None and subscription.library in catalog.libraries) else {}
        for event in subscription.events:
            revealed = [policies[name] for name in (declared[event].fields() if event in declared else ()) if name in policies]
            classes = {policy.sharing for policy in revealed}
            rows.append({**common, "field": f"event:{event}", "mask": None,
                         "sharing": next((c for c in ("not_shared", "conditional", "unconditional") if c in classes), "unknown"),
                         "authority": ", ".join(dict.fromkeys(policy.authority for policy in revealed))})
    return sorted(rows, key=lambda row: (row["library"], row["field"], row["department"], row["subscription"]))


def lineage_graph(rows: list[dict[str, Any]], catalog: Catalog) -> dict[str, Any]:
    """The graph of the matching rows, one edge per distinct pair: sources → libraries →
    fields → departments. Bounded by the catalog's size, not by the number of subscriptions."""
    libraries = sorted({row["library"] for row in rows})
    sources = sorted({source for library in libraries if library in catalog.libraries
                      for source in catalog.libraries[library].sources})
    fields: dict[str, dict[str, Any]] = {}
    receivers: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for row in rows:
        key = f"{row['library']}.{row['field']}"
        fields.setdefault(key, {"id": key, "library": row["library"], "field": row["field"],
                                "sharing": row["sharing"], "authority": row["authority"]})
        receivers[(key, row["department"])][row["state"]] += 1
    edges = [{"from": source, "to": library, "kind": "publishes"} for library in libraries
             if library in catalog.libraries for source in catalog.libraries[library].sources]
    edges += [{"from": field["library"], "to": key, "kind": "holds"} for key, field in sorted(fields.items())]
    edges += [{"from": key, "to": department, "kind": "receives", "states": dict(states)}
              for (key, department), states in sorted(receivers.items())]
    return {"sources": sources, "libraries": libraries, "fields": [fields[key] for key in sorted(fields)],
            "departments": sorted({row["department"] for row in rows}), "edges": edges}


def lineage(knowledge: Knowledge, catalog: Catalog, registry: Any, now: datetime,
            chosen: LineageFilter) -> dict[str, Any]:
    every = lineage_rows(knowledge.subscriptions.values(), registry, now, catalog)
    rows = [row for row in every if chosen.admits(row)]
    return {"rows": rows[:ROW_LIMIT], "matched": len(rows), "total": len(every),
            "subscriptions": len({row["subscription"] for row in rows}),
            "graph": lineage_graph(rows, catalog),
            "options": {"departments": sorted(catalog.departments), "libraries": sorted(catalog.libraries),
                        "fields": sorted({f"{library}.{name}" for library in registry.libraries()
                                          if library in catalog.libraries for name in registry.policy(library)}),
                        "states": list(STATES)}}


# -- needs attention ----------------------------------------------------------------------
def waiting_requests(subscriptions: Iterable[Subscription], now: datetime) -> list[dict[str, Any]]:
    """Per authority, the requests waiting for its approval, oldest first."""
    waiting: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for subscription in subscriptions:
        if subscription.state_at(now) != "requested":
            continue
        for authority in subscription.awaiting:
            waiting[authority].append({"subscription": subscription.id, "department": subscription.department,
                                       "library": subscription.library, "fields": list(subscription.fields),
                                       "purpose": subscription.purpose,
                                       "waiting_seconds": _age(subscription.requested_at.timestamp(), now)})
    return sorted(({"authority": authority, "count": len(requests),
                    "oldest_seconds": max(request["waiting_seconds"] for request in requests),
                    "requests": sorted(requests, key=lambda request: -request["waiting_seconds"])}
                   for authority, requests in waiting.items()), key=lambda group: (-group["count"], group["authority"]))


def open_objections(found: Mapping[str, objection_rules.Objection], now: datetime) -> list[dict[str, Any]]:
    """Objections without an answer, oldest first; no entity id (the owner has it on its topic)."""
    return [{"objection": objection.id, "library": objection.library, "field": objection.field,
             "raised_by": objection.raised_by, "owner": objection.owner, "reason": objection.reason,
             "age_seconds": _age(objection.raised_at.timestamp(), now)}
            for objection in objection_rules.select(found.values(), state="open")]


def open_conflicts(values: list[bytes | None], raised: Mapping[str, float], registry: Any,
                   now: datetime) -> list[dict[str, Any]]:
    """Conflicts without their authority's verdict, oldest first; names only, never the values."""
    rows = []
    for conflict in conflict_rules.fold(values).values():
        if not conflict.open:
            continue
        libraries = [library for library in registry.libraries()
                     if getattr(registry.policy(library).get(conflict.field), "authority", None) == conflict.authority]
        rows.append({"field": conflict.field, "library": "/".join(libraries) or "?", "authority": conflict.authority,
                     "reported_by": conflict.reported_by,
                     "age_seconds": _age(raised[conflict.id], now) if conflict.id in raised else None})
    return sorted(rows, key=lambda row: -(row["age_seconds"] or 0))


def dead_letter_summary(knowledge: Knowledge) -> dict[str, Any]:
    counts = knowledge.dead_letter_counts
    return {"total": sum(counts.values()),
            "by_reason_and_department": [{"library": library, "department": department, "reason": reason,
                                          "count": count}
                                         for (library, department, reason), count in
                                         sorted(counts.items(), key=lambda item: (-item[1], item[0]))],
            "recent": [{"library": letter.library, "department": letter.department, "reason": letter.reason,
                        "detail": letter.detail[:300], "at": letter.at, "origin": letter.origin}
                       for letter in knowledge.dead_letters]}


def attention(knowledge: Knowledge, registry: Any, now: datetime) -> dict[str, Any]:
    waiting = waiting_requests(knowledge.subscriptions.values(), now)
    objections = open_objections(knowledge.objections, now)
    conflicts = open_conflicts(knowledge.conflict_values, knowledge.conflict_raised, registry, now)
    dead = dead_letter_summary(knowledge)
    return {"waiting": waiting, "objections": objections, "conflicts": conflicts, "dead_letters": dead,
            "counts": {"waiting": sum(group["count"] for group in waiting), "objections": len(objections),
                       "conflicts": len(conflicts), "dead_letters": dead["total"]}}


# -- freshness now ------------------------------------------------------------------------
def _quantiles(summary: Mapping[str, Any] | None) -> dict[str, float | None]:
    summary = summary or {}
    return {quantile: summary.get(quantile) for quantile in ("p50", "p95", "p99")} | {"count": summary.get("count")}


def _measure(report: Mapping[str, Any], measure: str, department: str) -> dict[str, float | None]:
    figures = report.get(measure) or {}
    if department:
        return _quantiles((figures.get("by_department") or {}).get(department))
    return _quantiles(figures.get("all"))


def series(reports: Iterable[Mapping[str, Any]], since: float, department: str = "") -> list[dict[str, Any]]:
    """The reports of the window as chart points (at most CHART_POINTS, evenly thinned)."""
    chosen = [report for report in reports if _seconds(report.get("at")) >= since]
    step = max(1, -(-len(chosen) // CHART_POINTS))
    return [{"at": report.get("at"), "lateness": _measure(report, "source_lateness", department),
             "latency": _measure(report, "delivery_latency", department)} for report in chosen[::step]]


def freshness(knowledge: Knowledge, catalog: Catalog, now: datetime, window: str = "1h",
              department: str = "") -> dict[str, Any]:
    """Per library: the charts' points and the latest figures against the SLA; silent
    sources and open alerts (an alert whose episode has no recovery yet)."""
    since = now.timestamp() - WINDOWS.get(window, WINDOWS["1h"])
    libraries = []
    for name, library in sorted(catalog.libraries.items()):
        history = list(knowledge.reports.get(name, ()))
        latest = history[-1] if history else {}
        libraries.append({
            "library": name, "name": library.name.zh, "name_en": library.name.en,
            "sla": {"lateness_seconds": library.freshness.max_source_lateness.total_seconds(),
                    "latency_seconds": library.freshness.max_delivery_latency.total_seconds()},
            "reported_at": latest.get("at"), "series": series(history, since, department),
            "lateness_by_department": {d: _quantiles(s) for d, s in
                                       ((latest.get("source_lateness") or {}).get("by_department") or {}).items()},
            "latency_by_department": {d: _quantiles(s) for d, s in
                                      ((latest.get("delivery_latency") or {}).get("by_department") or {}).items()},
            "silent_sources": sorted(d for d, source in (latest.get("sources") or {}).items() if source.get("silent")),
            "sources": latest.get("sources") or {},
        })
    alerts = sorted((alert for alert in knowledge.alerts.values() if alert.get("state") == "alert"),
                    key=lambda alert: str(alert.get("opened_at")))
    return {"window": window if window in WINDOWS else "1h", "department": department, "libraries": libraries,
            "open_alerts": [{"kind": alert.get("kind"), "library": alert.get("library"),
                             "department": alert.get("department"), "message": alert.get("message"),
                             "age_seconds": _age(_seconds(alert.get("opened_at")), now)} for alert in alerts],
            "departments": sorted(catalog.departments), "windows": list(WINDOWS)}


# -- traceability -------------------------------------------------------------------------
def trace(knowledge: Knowledge, verification: audit.Verification, entity_id: str) -> dict[str, Any]:
    """The entity's sharing records (``audit.query``: one row per delivery) and, for each, whether
    ``audit verify`` got past it: verified, the first break, or after the break (not checked)."""
    positions = knowledge.by_entity.get(entity_id.strip(), [])
    records = [knowledge.records[position] for position in positions]
    where = {str(record.get("hash")): position for position, record in zip(positions, records)}
    rows = audit.query(records, entity_id=entity_id.strip())
    broken = verification.first_break
    for row in rows:
        position = where.get(str(row.get("hash")), -1)
        if broken is not None and position == broken.position:
            row["chain_state"] = f"broken here: {broken.message}"
        elif position < verification.checked:
            row["chain_state"] = "verified"
        elif broken is None:
            row["chain_state"] = "not verified yet (newer than the last verification)"
        else:
            row["chain_state"] = "not verified (after the first break)"
    chains = sorted({str(row.get("chain")) for row in rows})
    return {"entity_id": entity_id.strip(), "rows": rows[:TRACE_LIMIT], "count": len(rows), "chains": chains,
            "verification": {"ok": verification.ok, "checked": verification.checked,
                             "chains": len(verification.heads), "duplicates": len(verification.duplicates),
                             "first_break": None if broken is None else
                             {"position": broken.position, "chain": broken.chain, "kind": broken.kind,
                              "message": broken.message, "in_these_chains": broken.chain in chains}}}


def _age(since: float, now: datetime) -> float:
    return round(max(0.0, now.timestamp() - since), 1)

