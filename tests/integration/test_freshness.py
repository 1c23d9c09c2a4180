"""Freshness on a real broker: silent sources, late changes, the reports and /metrics."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from govbus.processors.governance import control
from govbus.processors.governance.subscriptions import SubscriptionRequest
from govbus.producers.generate import generate
from govbus.producers.publisher import Publisher
from govbus.schemas.codec import default_codec
from govbus.schemas.framing import header_map
from govbus.settings import PROJECT_ROOT

from kafka_helpers import read_topic, wait_for

CADENCE = 4  # seconds: civil affairs' cadence for population in the test's catalog


def catalog_with_short_cadence(folder: Path) -> Path:
    """A copy of the catalog in which civil affairs must be heard on population every few seconds."""
    folder.mkdir()
    for path in (PROJECT_ROOT / "topics").glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    population = yaml.safe_load((folder / "population.yaml").read_text(encoding="utf-8"))
    population["sources"]["civil_affairs"]["cadence"] = f"{CADENCE}s"
    (folder / "population.yaml").write_text(yaml.safe_dump(population, allow_unicode=True), encoding="utf-8")
    return folder


def alerts(bus, **wanted) -> list[dict]:
    found = [json.loads(message.value) for message in read_topic(bus.settings, bus.names.bus("control.alerts"))]
    return [alert for alert in found if all(alert.get(name) == value for name, value in wanted.items())]


def wait_for_alert(bus, timeout: float = 90, **wanted) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = alerts(bus, **wanted)
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no alert {wanted} within {timeout} s; alerts: {alerts(bus)}")


def scrape(worker) -> dict[str, float]:
    """The worker's /metrics as {'name{labels}': value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.settings.processor_port}/metrics", timeout=5) as answer:
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    figures = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            figures[name] = float(value)
    return figures


def test_an_on_time_source_raises_no_alert_a_silent_one_does_and_recovers(bus, start_processors, tmp_path) -> None:
    bus.settings = bus.settings.model_copy(update={"catalog_dir": catalog_with_short_cadence(tmp_path / "catalog"),
                                                   "freshness_interval": 1.0})
    bus.apply_catalog()
    start_processors("gate", "freshness")
    people = list(generate("population", 8, seed=81, department="civil_affairs"))
    with Publisher(bus.settings, "civil_affairs", "population", names=bus.names) as publisher:
        for number, person in enumerate(people):  # a change or a heartbeat every half second
            publisher.publish({"citizen_id": person["citizen_id"], "sequence": 1, "marital_status": "married"})
            publisher.flush()
            time.sleep(0.25)
            publisher.heartbeat()
            publisher.flush()
            time.sleep(0.25)
        stopped = time.time()
        wait_for(bus.settings, bus.names.bus("metrics.freshness"), 2)
        assert alerts(bus, department="civil_affairs") == [], "a source on time raises no alert"

        silent = wait_for_alert(bus, kind="source_silent", department="civil_affairs", library="population")
        assert silent["state"] == "alert" and silent["role"] == "source"
        assert silent["limit_seconds"] == CADENCE and silent["observed_seconds"] > CADENCE
        raised = datetime.fromisoformat(silent["at"]).timestamp()
        assert raised >= stopped + CADENCE - 1, "not before the cadence ran out"
        assert "civil_affairs" in silent["message"]

        publisher.heartbeat()
        publisher.flush()
        recovery = wait_for_alert(bus, kind="source_silent", department="civil_affairs", state="recovery")
    assert recovery["episode"] == silent["episode"] and recovery["duration_seconds"] > 0
    assert len(alerts(bus, kind="source_silent", department="civil_affairs", state="alert")) == 1, "no alert storm"
    assert alerts(bus, kind="source_lateness") == [], "changes on time"
    reports = [json.loads(m.value) for m in read_topic(bus.settings, bus.names.bus("metrics.freshness"))]
    population = [r for r in reports if r["library"] == "population"][-1]
    assert population["sources"]["civil_affairs"]["heard"] is True
    assert population["source_lateness"]["by_department"]["civil_affairs"]["count"] == len(people)


def test_a_change_older_than_its_sla_is_delivered_marked_late_and_counted(bus, start_processors) -> None:
    bus.settings = bus.settings.model_copy(update={"freshness_interval": 1.0})
    bus.apply_catalog()
    worker = start_processors("gate", "router", "freshness")
    subscription = control.request(bus.settings, SubscriptionRequest(
        department="hr_social_security", library="population", purpose="data_verification",
        fields=("citizen_id", "name", "sex")))
    assert subscription.state == "approved"
    time.sleep(3)  # the router takes up the approval: what follows is delivered live, not as a backfill
    before = scrape(worker)
    now = datetime.now(timezone.utc)
    people = [{**person, "recorded_at": now.isoformat()}  # generated records carry a fixed 2024 time
              for person in generate("population", 6, seed=82, department="public_security")]
    old = {**people[0], "recorded_at": (now - timedelta(days=2)).isoformat()}
    with Publisher(bus.settings, "public_security", "population", names=bus.names) as publisher:
        assert all(publisher.publish(record).accepted for record in [old, *people[1:]])

    shared = wait_for(bus.settings, bus.names.shared("population"), 6)
    late = {default_codec().decode(m.value)[1]["entity_id"]: header_map(m.headers)["govbus_late"] for m in shared}
    assert late.pop(old["citizen_id"]) == b"true" and set(late.values()) == {b"false"}
    delivered = wait_for(bus.settings, bus.names.deliver("hr_social_security", "population"), 6)
    marks = {default_codec().decode(m.value)[1]["entity_id"]: header_map(m.headers).get("govbus_late") for m in delivered}
    assert marks[old["citizen_id"]] == b"true", "late changes are still delivered, marked late"

    alert = wait_for_alert(bus, kind="source_lateness", department="public_security")
    assert alert["state"] == "alert" and alert["observed_seconds"] > 86_400
    assert len(alerts(bus, kind="source_lateness", state="alert")) == 1, "one alert for the episode (its recovery may follow once it settles)"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reports = [json.loads(m.value) for m in read_topic(bus.settings, bus.names.bus("metrics.freshness"))]
        latest = [r for r in reports if r["library"] == "population"][-1]
        if latest["delivery_latency"]["all"] and latest["late_changes"]:
            break
        time.sleep(1)
    assert latest["late_changes"] == {"public_security": 1}
    assert latest["source_lateness"]["by_department"]["public_security"]["count"] == 6
    assert latest["delivery_latency"]["by_department"]["hr_social_security"]["count"] >= 1

    after = scrape(worker)
    key = 'govbus_events_in_total{library="population",processor="freshness"}'
    assert after[key] >= before.get(key, 0) + 6, "the figures move as events flow"
    assert after['govbus_late_changes_total{department="public_security",library="population"}'] == 1
    assert after['govbus_sla_breaches_total{department="public_security",kind="source_lateness",library="population"}'] == 1
    assert any(name.startswith("govbus_freshness_seconds{") for name in after)
    assert any(name.startswith("govbus_consumer_lag{") for name in after)
