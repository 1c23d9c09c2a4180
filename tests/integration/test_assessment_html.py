"""`govbus assess` on a real broker, and its HTML page as a person sees it in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image


from govbus import settings as settings_module
from govbus.cli import main
from govbus.consumers import objections
from govbus.processes import settings_environment
from govbus.processors.governance import control
from govbus.processors.governance.subscriptions import SubscriptionRequest
from govbus.producers.generate import generate
from govbus.producers.publisher import Publisher

from kafka_helpers import send_raw, until_allowed, wait_for

BLUE, ORANGE, PURPLE, RED = (31, 119, 180), (255, 127, 14), (148, 103, 189), (214, 39, 40)  # the charts' colours


def assess(bus, *arguments: str) -> str:
    settings_module.get_settings.cache_clear()
    try:
        outcome = CliRunner().invoke(main, ["assess", *arguments], env=settings_environment(bus.settings))
    finally:
        settings_module.get_settings.cache_clear()
    assert outcome.exit_code == 0, outcome.output
    return outcome.output


def chromium(page: Path, tmp_path: Path, *mode: str) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail("headless Chromium is needed to check the assessment page: `apt-get install chromium` "
                    "(./run test installs it from Debian's packages)")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1200,4000", *mode, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def colour_pixels(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    return sum(count for count, pixel in image.getcolors(maxcolors=1 << 20)
               if all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], colour)))


def test_assess_counts_the_bus_and_its_html_page_renders_charts(bus, start_processors, tmp_path) -> None:
    bus.apply_catalog()
    start_processors("gate", "router")
    subscription = control.request(bus.settings, SubscriptionRequest(
        department="hr_social_security", library="population", purpose="data_verification", fields=("citizen_id", "name")))
    assert subscription.state == "approved"
    time.sleep(3)  # the router takes up the approval
    now = datetime.now(timezone.utc)
    people = [{**person, "recorded_at": now.isoformat()} for person in generate("population", 6, seed=91, department="public_security")]
    people.append({**next(generate("population", 1, seed=92, department="public_security")),
                   "recorded_at": (now - timedelta(days=3)).isoformat()})  # older than the 24 h SLA
    with Publisher(bus.settings, "public_security", "population", names=bus.names) as publisher:
        assert all(publisher.publish(person).accepted for person in people)
    send_raw(bus.settings, bus.names.ingest("population", "civil_affairs"), b"not avro")
    # One objection, raised by health and answered by the field's authority, each as itself.
    start_processors("authority")
    health, public_security = bus.as_principal("health"), bus.as_principal("public_security")
    raised = until_allowed(lambda: objections.raise_objection(health, "population", people[0]["citizen_id"], "name",
                                                                "the name is misspelt"))
    objections.reject(public_security, raised.id, "the name matches the birth register, entry 1990-0042")
    wait_for(bus.settings, bus.names.shared("population"), 7)
    wait_for(bus.settings, bus.names.dlq("population"), 1)
    wait_for(bus.settings, bus.names.deliver("hr_social_security", "population"), 7, timeout=90)

    result = json.loads(assess(bus, "--format", "json", "--from", (now - timedelta(hours=1)).isoformat()))
    police = next(row for row in result["departments"] if row["department"] == "public_security")
    assert (police["published"], police["changes"], police["late"]) == (7, 7, 1), "the late change counts against it"
    assert police["within_sla_share"] == pytest.approx(6 / 7, abs=1e-3)
    assert police["objections_received"] == 1, "the genuine answer counts"
    assert 0 <= police["median_answer_seconds"] < 60
    civil = next(row for row in result["departments"] if row["department"] == "civil_affairs")
    assert (civil["published"], civil["rejected"], civil["rejected_share"]) == (1, 1, 1.0)
    population = next(row for row in result["libraries"] if row["library"] == "population")
    assert population["subscribed_departments"] == ["hr_social_security"] and population["delivered_to"] == ["hr_social_security"]
    assert population["delivery_latency"]["count"] >= 1
    later = json.loads(assess(bus, "--format", "json", "--from", (now + timedelta(hours=1)).isoformat(),
                              "--to", (now + timedelta(hours=2)).isoformat()))
    assert all(row["published"] == 0 for row in later["departments"]), "the period bounds what is counted"

    page = tmp_path / "assessment.html"
    assess(bus, "--format", "html", "--output", str(page))
    dom = chromium(page, tmp_path, "--dump-dom").stdout
    assert dom.count('<figure class="chart"') == 4
    charts = dom.split('<figure class="chart"')[1:]
    assert all("<svg" in chart and chart.count("<path") > 10 for chart in charts), "each chart is drawn"
    shot = tmp_path / "assessment.png"
    chromium(page, tmp_path, f"--screenshot={shot}")
    image = Image.open(shot).convert("RGB")
    assert colour_pixels(image, RED) > 2_000, "the share under 95 % (a red bar) and the SLA lines are on screen"
    assert colour_pixels(image, BLUE) > 300, "the p50 bars"
    assert colour_pixels(image, ORANGE) > 2_000 and colour_pixels(image, PURPLE) > 1_000, "p95/p99 and rejected bars"
