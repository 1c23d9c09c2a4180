"""The assessment's tally and its four forms, from messages made by hand (no broker)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from govbus.consumers import objections
from govbus.processors.gate import deadletters
from govbus.processors.governance import subscriptions as subscription_rules
from govbus.schemas.registry import default_registry
from govbus.processors.governance.assessment import Tally
from govbus.processors.governance.assessment_report import human, render
from govbus.schemas.framing import ACCEPTED_AT, BACKFILL, LATE, ROUTED_AT, SOURCE_DEPARTMENT, heartbeat_headers
from govbus.topics.names import TopicNames

NAMES = TopicNames("p.")
END = datetime(2025, 3, 1, tzinfo=timezone.utc)
START = END - timedelta(days=1)
T = START.timestamp() + 3600


def message(headers=(), value: bytes | None = b"", key: bytes = b"k", at: float = T) -> SimpleNamespace:
    return SimpleNamespace(headers=list(headers), value=value, key=key, timestamp=int(at * 1000))


def change(department: str, lateness: float, late: bool | None = None, backfill: bool = False) -> SimpleNamespace:
    recorded = datetime.fromtimestamp(T - lateness, timezone.utc).isoformat()
    headers = [("ce_time", recorded.encode()), (ACCEPTED_AT, str(int(T * 1000)).encode()),
               (SOURCE_DEPARTMENT, department.encode()), (BACKFILL, b"true" if backfill else b"false")]
    if late is not None:
        headers.append((LATE, b"true" if late else b"false"))
    return message(headers)


def objection(identifier: str, step: str, at: float, owner: str = "public_security",
              by: str | None = None) -> SimpleNamespace:
    """A step as the authority processor records it (the owner is named when it is raised)."""
    moment = datetime.fromtimestamp(at, timezone.utc)
    if step == "raised":
        body = objections.raised_event(identifier, library="population", entity_id="610102199001011234",
                                       field="name", reason="wrong", by=by or "health", owner=owner, at=moment)
    else:
        body = objections.answer_event(identifier, step, by=by or owner, at=moment, reason="checked",
                                       correction_event_id="ev-1")
    return message(value=json.dumps(body).encode())


@pytest.fixture
def assessment(catalog) -> dict:
    tally = Tally(catalog, NAMES)
    ingest = NAMES.ingest("population", "civil_affairs")
    for _ in range(10):
        tally.ingest(ingest, message())
    tally.ingest(ingest, message(heartbeat_headers("civil_affairs", "x")))
    for lateness in (10, 20, 30, 40, 50, 60, 70, 80):
        tally.shared("population", change("civil_affairs", lateness, late=False))
    tally.shared("population", change("civil_affairs", 2 * 86_400, late=True))
    tally.shared("population", change("civil_affairs", 3 * 86_400))  # no LATE header: judged by the SLA
    tally.shared("population", change("civil_affairs", 9 * 86_400, backfill=True))  # a snapshot: not a change
    origin = deadletters.dead_letter_headers([], deadletters.Rejection("invalid", "[]"), "gate", ingest, 0, 1)
    tally.dead_letter(message(origin))
    tally.dead_letter(message(origin))
    conflict = {"conflict_id": "c1", "authoritative_department": "public_security", "reported_department": "civil_affairs"}
    tally.conflict(message(value=json.dumps(conflict).encode()))
    tally.conflict(message(value=json.dumps(conflict).encode()))  # re-emitted after a restart: counted once
    for identifier, age in (("c2", 3600), ("c3", 7200)):
        tally.conflict(message(value=json.dumps({**conflict, "conflict_id": identifier}).encode(), at=T - age))
    tally.verdict(message(value=json.dumps({"kind": "verdict", "conflict_id": "c3", "verdict": "kept"}).encode()))
    tally.verdict(message(value=json.dumps({"kind": "refused", "conflict_id": "c2", "verdict": "kept"}).encode()))
    for record in (objection("o1", "raised", T), objection("o1", "resolved", T + 600), objection("o2", "raised", T),
                   objection("o2", "rejected", T + 1800), objection("o3", "raised", T + 60),
                   objection("o3", "resolved", T + 90, by="tax"),  # not the owner: not an answer
                   objection("old", "raised", T - 5 * 86_400), message(value=b"not json"),
                   message(value=json.dumps({"objection": "o9", "step": "raised", "at": "2025-03-01T08:00:00"}).encode())):
        tally.objection(record)
    for identifier, department, until in (("sub-1", "health", None), ("sub-2", "tax", None),
                                          ("sub-3", "civil_affairs", START.date() - timedelta(days=1))):
        asked = subscription_rules.SubscriptionRequest(department=department, library="population", until=until,
                                                       fields=("citizen_id", "name"), purpose="administrative_basis")
        judged = subscription_rules.evaluate(asked, catalog, default_registry(), START - timedelta(days=3), identifier)
        tally.subscription(message(value=subscription_rules.to_json(judged), key=identifier.encode()))
    tally.subscription(message(value=None, key=b"sub-2"))  # deleted; sub-3 expired by the clock
    deliver = NAMES.deliver("health", "population")
    for latency in (0.1, 0.2, 0.3, 9.0):
        tally.delivery(deliver, message([(ACCEPTED_AT, str(int(T * 1000)).encode()),
                                         (ROUTED_AT, str(int((T + latency) * 1000)).encode())]))
    tally.delivery(deliver, message([(ACCEPTED_AT, b"1"), (ROUTED_AT, str(int(T * 1000)).encode()), (BACKFILL, b"true")]))
    return tally.result(START, END)


def department(assessment: dict, name: str) -> dict:
    return next(row for row in assessment["departments"] if row["department"] == name)


def test_a_department_is_assessed_on_what_it_published(assessment) -> None:
    civil = department(assessment, "civil_affairs")
    assert (civil["published"], civil["heartbeats"], civil["changes"], civil["late"]) == (10, 1, 10, 2)
    assert civil["within_sla_share"] == 0.8
    assert civil["lateness"]["p50"] == pytest.approx(50, rel=0.02)
    assert civil["rejected"] == 2 and civil["rejected_share"] == 0.2 and civil["rejected_by_reason"] == {"invalid": 2}
    assert civil["libraries"]["population"]["late"] == 2
    assert (civil["conflicts_reported"], civil["conflicts_to_verify"]) == (3, 0)


def test_open_conflicts_and_the_oldest_ones_age_are_counted_against_their_authority(assessment) -> None:
    police = department(assessment, "public_security")
    assert police["conflicts_to_verify"] == 3
    assert police["conflicts_open"] == 2, "the one with a verdict is closed; a refused verdict closes nothing"
    assert police["oldest_open_conflict_seconds"] == pytest.approx(END.timestamp() - (T - 3600))
    assert department(assessment, "civil_affairs")["conflicts_open"] == 0


def test_objections_are_counted_against_their_owner_with_the_median_time_to_answer(assessment) -> None:
    police = department(assessment, "public_security")
    assert (police["objections_received"], police["objections_answered"]) == (3, 2)
    assert police["median_answer_seconds"] == pytest.approx(1200)
    assert department(assessment, "tax")["median_answer_seconds"] is None


def test_a_library_reports_who_receives_it_and_how_fresh(assessment) -> None:
    population = next(row for row in assessment["libraries"] if row["library"] == "population")
    assert population["subscribed_departments"] == ["health"] and population["receiving_departments"] == 1
    assert population["delivered_to"] == ["health"] and population["deliveries"] == 5
    assert population["live_deliveries"] == 4 and population["within_sla_share"] == 0.75
    assert population["delivery_latency"]["p50"] == pytest.approx(0.2, rel=0.02)
    assert population["by_department"]["health"]["count"] == 4


def test_every_format_renders(assessment) -> None:
    text = render(assessment, "table")
    assert "civil_affairs" in text and "80.0 %" in text
    rows = list(csv.DictReader(io.StringIO(render(assessment, "csv"))))
    assert {"scope": "department", "subject": "civil_affairs", "measure": "late", "value": "2"}.items() <= next(
        row for row in rows if row["subject"] == "civil_affairs" and row["measure"] == "late").items()
    assert json.loads(render(assessment, "json")) == assessment
    page = render(assessment, "html")
    assert page.count("<figure class=\"chart\"") == 4 and page.count("<svg") == 4
    assert not any(fetch in page for fetch in ("<script", "<link", "src=", "url(http")), "nothing to fetch: it works offline"
    with pytest.raises(ValueError):
        render(assessment, "pdf")


def test_an_empty_period_still_renders_every_chart(catalog) -> None:
    page = render(Tally(catalog, NAMES).result(START, END), "html")
    assert page.count("<svg") == 4


@pytest.mark.parametrize("seconds, text", [(0.25, "250 ms"), (5, "5 s"), (90, "1.5 min"), (600, "10 min"),
                                           (86_400, "1 d"), (36 * 3600, "1.5 d")])
def test_durations_read_as_people_say_them(seconds: float, text: str) -> None:
    assert human(seconds) == text
