"""The freshness monitor: delays read from headers, SLA episodes without storms, silent sources."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from govbus.processors.runtime import metrics
from govbus.processors.freshness.monitor import FreshnessMonitor
from govbus.processors.gate.logic import GateLogic
from govbus.producers.generate import generate
from govbus.producers.records import to_event
from govbus.schemas.codec import default_codec
from govbus.schemas.framing import (ACCEPTED_AT, BACKFILL, LATE, ROUTED_AT, SOURCE_DEPARTMENT, cloudevent_headers,
                                    entity_key, header_map, heartbeat_headers, heartbeat_key, is_heartbeat)
from govbus.topics.names import TopicNames

T0 = 1_700_000_000.0
NAMES = TopicNames("p.")
SECRET = b"test-secret"
DAY = 86_400


def shared_headers(recorded_at: float, accepted_at: float, department: str = "civil_affairs",
                   backfill: bool = False) -> list[tuple[str, bytes]]:
    moment = datetime.fromtimestamp(recorded_at, timezone.utc).isoformat(timespec="milliseconds")
    return [("ce_time", moment.replace("+00:00", "Z").encode()), (ACCEPTED_AT, str(int(accepted_at * 1000)).encode()),
            (SOURCE_DEPARTMENT, department.encode()), (BACKFILL, b"true" if backfill else b"false")]


def delivery_headers(accepted_at: float, routed_at: float) -> list[tuple[str, bytes]]:
    return [(ACCEPTED_AT, str(int(accepted_at * 1000)).encode()), (ROUTED_AT, str(int(routed_at * 1000)).encode())]


@pytest.fixture
def monitor(catalog) -> FreshnessMonitor:
    return FreshnessMonitor(catalog, NAMES, started=T0, window=600, settle=10)


def test_changes_within_the_sla_raise_no_alert_and_are_measured(monitor) -> None:
    for step in range(50):
        now = T0 + step
        assert monitor.accepted("population", shared_headers(now - 60 - step, now), now) == []
    report = monitor.report(T0 + 50)["population"]
    assert report["source_lateness"]["all"]["count"] == 50
    assert report["source_lateness"]["by_department"]["civil_affairs"]["p50"] == pytest.approx(85, rel=0.02)
    assert report["late_changes"] == {}
    assert report["open_alerts"] == []


def test_a_run_of_late_changes_raises_one_alert_and_one_recovery(monitor) -> None:
    late = [monitor.accepted("population", shared_headers(T0 + s - 2 * DAY, T0 + s), T0 + s) for s in range(5)]
    alerts = [alert for found in late for alert in found]
    assert len(alerts) == 1, "one alert per breach episode, not per event"
    alert = alerts[0]
    assert (alert["kind"], alert["state"], alert["library"], alert["department"]) == (
        "source_lateness", "alert", "population", "civil_affairs")
    assert alert["observed_seconds"] == pytest.approx(2 * DAY, rel=0.001) and alert["limit_seconds"] == DAY
    assert monitor.report(T0 + 5)["population"]["late_changes"] == {"civil_affairs": 5}
    assert monitor.accepted("population", shared_headers(T0 + 6, T0 + 7), T0 + 7) == [], "not settled yet"
    assert monitor.check(T0 + 8) == []
    (recovery,) = monitor.check(T0 + 20)
    assert (recovery["state"], recovery["episode"]) == ("recovery", alert["episode"])
    assert monitor.check(T0 + 30) == []


def test_an_episode_stays_open_while_late_changes_keep_coming(monitor) -> None:
    monitor.accepted("population", shared_headers(T0 - 2 * DAY, T0), T0)
    for step in range(1, 40):
        now = T0 + step
        on_time = step % 2 == 0
        recorded = now - 1 if on_time else now - 2 * DAY
        assert monitor.accepted("population", shared_headers(recorded, now), now) == []
        assert monitor.check(now) == []


def test_snapshots_and_history_older_than_the_window_are_not_measured(monitor) -> None:
    assert monitor.accepted("population", shared_headers(T0 - 30 * DAY, T0, backfill=True), T0) == []
    assert monitor.accepted("population", shared_headers(T0 - 3 * DAY, T0 - DAY), T0) == []
    assert monitor.report(T0)["population"]["source_lateness"]["all"] is None


def test_the_gate_marks_a_change_older_than_the_sla_late(catalog) -> None:
    codec = default_codec()
    gate = GateLogic("population", catalog, codec, NAMES, secret=SECRET)
    record = next(generate("population", 1, seed=3, department="public_security"))
    event = to_event("population", "public_security", record, "test")
    key, value = entity_key(SECRET, "population", event["entity_id"]), codec.encode("population", event)
    headers = cloudevent_headers(event, "population", 1, key)
    topic = NAMES.ingest("population", "public_security")
    recorded = event["recorded_at"].timestamp()
    on_time = gate.handle(topic, 0, 0, key, value, headers, None, now=recorded + 5)
    late = gate.handle(topic, 0, 1, key, value, headers, None, now=recorded + 2 * DAY)
    assert header_map(on_time.outputs[0].headers)[LATE] == b"false"
    assert header_map(late.outputs[0].headers)[LATE] == b"true"
    assert late.outputs[0].topic == NAMES.shared("population"), "late changes are still delivered"


def test_the_gate_skips_heartbeats(catalog) -> None:
    gate = GateLogic("population", catalog, default_codec(), NAMES, secret=SECRET)
    headers = heartbeat_headers("civil_affairs", "hukou")
    assert is_heartbeat(headers)
    step = gate.handle(NAMES.ingest("population", "civil_affairs"), 0, 0, heartbeat_key("civil_affairs"), b"",
                       headers, None)
    assert (step.status, step.outputs) == ("heartbeat", [])


def test_a_change_event_is_not_a_heartbeat() -> None:
    event = to_event("population", "civil_affairs", next(generate("population", 1, seed=1, department="civil_affairs")), "x")
    assert not is_heartbeat(cloudevent_headers(event, "population", 1, b"k"))
    assert not is_heartbeat([])


def test_a_source_silent_past_its_cadence_raises_one_alert_and_recovers_when_seen(monitor, catalog) -> None:
    cadence = catalog.library("population").sources["public_security"].cadence.total_seconds()
    assert [a for a in monitor.check(T0 + cadence - 1) if a["department"] == "public_security"] == []
    alerts = [a for a in monitor.check(T0 + cadence + 1) if a["library"] == "population"
              and a["department"] == "public_security"]
    assert [(a["kind"], a["state"]) for a in alerts] == [("source_silent", "alert")]
    assert [a for a in monitor.check(T0 + cadence + 50) if a["department"] == "public_security"
            and a["library"] == "population"] == [], "no alert storm"
    (recovery,) = monitor.seen("population", "public_security", T0 + cadence + 60, T0 + cadence + 60)
    assert (recovery["kind"], recovery["state"], recovery["episode"]) == ("source_silent", "recovery", alerts[0]["episode"])
    assert monitor.seen("population", "public_security", T0 + cadence + 61, T0 + cadence + 61) == []


def test_a_message_stamped_in_the_future_does_not_keep_a_silent_source_alive(monitor, catalog) -> None:
    cadence = catalog.library("population").sources["public_security"].cadence.total_seconds()
    monitor.seen("population", "public_security", T0 + 10 * 365 * 86400, T0 + 1)  # one message "from 2036"

    alerts = [a for a in monitor.check(T0 + 1 + cadence + 1) if a["library"] == "population"
              and a["department"] == "public_security"]
    assert [(a["kind"], a["state"]) for a in alerts] == [("source_silent", "alert")]


def test_heartbeats_keep_a_source_alive(monitor, catalog) -> None:
    cadence = catalog.library("population").sources["public_security"].cadence.total_seconds()
    for beat in range(1, 6):
        now = T0 + beat * cadence * 0.9
        monitor.seen("population", "public_security", now, now)
        assert [a for a in monitor.check(now + 1) if a["department"] == "public_security"
                and a["library"] == "population"] == []


def test_delivery_latency_is_measured_per_receiving_department(monitor) -> None:
    topic = NAMES.deliver("health", "population")
    for step in range(10):
        assert monitor.delivered(topic, delivery_headers(T0 + step, T0 + step + 0.2), T0 + step + 1) == []
    (alert,) = monitor.delivered(topic, delivery_headers(T0 + 11, T0 + 20), T0 + 20)
    assert (alert["kind"], alert["department"], alert["role"]) == ("delivery_latency", "health", "receiver")
    report = monitor.report(T0 + 21)["population"]["delivery_latency"]
    assert report["by_department"]["health"]["count"] == 11
    assert report["by_department"]["health"]["p50"] == pytest.approx(0.2, rel=0.02)
    assert monitor.delivered(NAMES.shared("population"), delivery_headers(T0, T0 + 99), T0 + 99) == []


def test_the_report_exports_percentiles_to_prometheus(monitor) -> None:
    monitor.accepted("credit", shared_headers(T0 - 3, T0, department="market_regulation"), T0)
    monitor.report(T0)
    value = metrics.registry.get_sample_value(
        "govbus_freshness_seconds", {"library": "credit", "department": "market_regulation",
                                     "measure": "source_lateness", "quantile": "p50"})
    assert value == pytest.approx(3, rel=0.02)
    assert b"govbus_freshness_seconds" in metrics.exposition()
