"""The governance console as a person uses it: a real headless Chromium (the system's, driven by
Playwright) on `govbus console`, which reads a real secured broker as governance while the
gate, the router, the freshness and the authority processors run.

One bus, one console and one browser serve the module's tests (starting them is most of the
time); each test looks at its own view and asserts on data it made or that the setup made.
Set GOVBUS_CONSOLE_SCREENSHOTS to a folder to keep a screenshot of each view (the README's).
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from govbus import settings as settings_module
from govbus.broker.provision import free_port
from govbus.cli import main
from govbus.console.process import ConsoleProcess
from govbus.processes import ProcessorProcess, settings_environment
from govbus.processors.governance import control
from govbus.processors.governance.subscriptions import Subscription, SubscriptionRequest
from govbus.producers.generate import generate
from govbus.producers.publisher import Publisher
from govbus.security.credentials import AUTHORITY, GOVERNANCE, PROCESSORS
from govbus.topics import apply as topic_apply
from govbus.topics.names import TopicNames

from kafka_helpers import send_raw, until_allowed, wait_for

playwright_api = pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")
WAIT_MS = 30_000  # how long the page may take to show a change (it asks every second)
SHOTS = os.environ.get("GOVBUS_CONSOLE_SCREENSHOTS")


@dataclass
class ConsoleBus:
    """The module's bus: settings, names, principals' passwords, and what the setup made."""

    settings: Any
    names: TopicNames
    passwords: dict[str, str]
    console: ConsoleProcess
    pending: Subscription
    people: list[dict[str, Any]]

    def as_principal(self, name: str) -> Any:
        return self.settings.logged_in_as(name, self.passwords.get(name, ""))


def _request(bus_settings: Any, department: str, library: str, fields: tuple[str, ...], purpose: str) -> Subscription:
    asked = SubscriptionRequest(department=department, library=library, fields=fields, purpose=purpose)
    return until_allowed(lambda: control.request(bus_settings, asked))


@pytest.fixture(scope="module")
def console_bus(broker, catalog, principals, tmp_path_factory) -> Iterator[ConsoleBus]:
    """A fresh prefix with the catalog applied, the processors (freshness reporting every
    second) and the authority running, three subscriptions (approved, pending, refused),
    five people published, and the console reading it all."""
    folder = tmp_path_factory.mktemp("console")
    prefix = f"t{uuid.uuid4().hex[:10]}."
    settings = broker.admin_settings(topic_prefix=prefix, client_id=f"govbus-test-{uuid.uuid4().hex[:6]}",
                                     processor_port=free_port(), home=folder / "govbus-home", freshness_interval=1.0)
    names = TopicNames(prefix)
    topic_apply.apply_catalog(settings, catalog, names)

    def login(name: str) -> Any:
        return settings.logged_in_as(name, principals.get(name, "")).model_copy(update={"processor_port": free_port()})

    workers = [ProcessorProcess(login(PROCESSORS), ["gate", "router", "freshness"], folder / "processors.log"),
               ProcessorProcess(login(AUTHORITY), ["authority"], folder / "authority.log")]
    console = ConsoleProcess(login(GOVERNANCE), free_port(), folder / "console.log")
    try:
        for worker in workers:
            worker.start()
        assert _request(login("health"), "health", "population", ("citizen_id", "name"),
                        "administrative_basis").state == "approved"
        pending = _request(login("civil_affairs"), "civil_affairs", "population",
                           ("citizen_id", "name", "household_address"), "work_reference")
        assert pending.state == "requested" and pending.awaiting == ("public_security",)
        assert _request(login("tax"), "tax", "legal_entity", ("credit_code", "tax_audit_note"),
                        "work_reference").state == "refused"
        now = datetime.now(timezone.utc).isoformat()
        people = [{**person, "recorded_at": now} for person in generate("population", 5, seed=19, department="public_security")]
        with Publisher(login("public_security"), "public_security", "population", names=names) as publisher:
            assert all(publisher.publish(person).accepted for person in people)
        wait_for(settings, names.deliver("health", "population"), len(people), timeout=90)
        console.start()
        yield ConsoleBus(settings, names, principals, console, pending, people)
    finally:
        stopped = console.stop()
        for worker in workers:
            worker.stop()
    assert stopped == 0, "a stop asked for is a clean exit"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.fail("the console tests need the system's Chromium: `apt-get install chromium` (./run test does)")
    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser, console_bus) -> Iterator[Any]:
    opened = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
        assert errors == [], f"the page's script failed: {errors}"
    finally:
        opened.close()


def _open(page: Any, console_bus: ConsoleBus, view: str) -> None:
    page.goto(f"{console_bus.console.address}#{view}")
    page.wait_for_function(f"() => JSON.parse(document.body.dataset.drawn || '{{}}')['{view}'] !== undefined",
                           timeout=WAIT_MS)


def _screenshot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"console-{name}.png"), full_page=True)


def _rows(page: Any, table: str, *attributes: str) -> set[tuple[str, ...]]:
    script = ("([table, names]) => [...document.querySelectorAll(`#${table} tbody tr[data-${names[0]}]`)]"
              ".map(row => names.map(name => row.dataset[name.replace(/-([a-z])/g, (_, c) => c.toUpperCase())]))")
    return {tuple(row) for row in page.evaluate(script, [table, list(attributes)])}


def _wait_rows(page: Any, table: str, attributes: tuple[str, ...], wanted: set[tuple[str, ...]]) -> None:
    deadline = time.monotonic() + WAIT_MS / 1000
    while (found := _rows(page, table, *attributes)) != wanted:
        assert time.monotonic() < deadline, f"{table}: {sorted(found)} is not {sorted(wanted)}"
        time.sleep(0.25)


def test_the_lineage_lists_exactly_the_approved_fields_and_shows_a_new_approval_without_reload(page, console_bus) -> None:
    _open(page, console_bus, "lineage")
    page.select_option("#lineage-filters select[name=state]", "approved")
    approved = {("population.citizen_id", "health", "approved"), ("population.name", "health", "approved")}
    _wait_rows(page, "lineage-table", ("field", "department", "state"), approved)
    page.select_option("#lineage-filters select[name=state]", "")
    page.wait_for_selector("#lineage-table tr[data-state=pending]", timeout=WAIT_MS)
    every = _rows(page, "lineage-table", "field", "department", "state")
    assert ("population.household_address", "civil_affairs", "pending") in every, every
    assert ("legal_entity.tax_audit_note", "tax", "refused") in every, "a refused request stays on the record"
    _screenshot(page, "lineage")

    control.approve(console_bus.as_principal("public_security"), console_bus.pending.id)
    page.select_option("#lineage-filters select[name=state]", "approved")
    civil = {(f"population.{name}", "civil_affairs", "approved") for name in ("citizen_id", "name", "household_address")}
    _wait_rows(page, "lineage-table", ("field", "department", "state"), approved | civil)  # no reload

    page.click("#lineage-table tr[data-field='population.household_address'] td.field a")  # who receives it?
    _wait_rows(page, "lineage-table", ("field", "department", "state"),
               {("population.household_address", "civil_affairs", "approved")})
    mask = page.text_content("#lineage-table tr[data-field='population.household_address'] td:nth-child(7)")
    assert mask == "address", "the schema masks the address for work_reference"
    assert page.locator("#lineage-graph svg g.node[data-node='population.household_address']").count() == 1


def test_needs_attention_shows_a_waiting_request_and_a_new_dead_letter_without_reload(page, console_bus) -> None:
    bus = console_bus
    waiting = control.request(bus.as_principal("health"), SubscriptionRequest(
        department="health", library="population", fields=("citizen_id", "marital_status"), purpose="administrative_basis"))
    assert waiting.awaiting == ("civil_affairs",)
    _open(page, bus, "attention")
    page.wait_for_selector("#waiting-table tr[data-authority=civil_affairs]", timeout=WAIT_MS)
    assert page.text_content("#waiting-table tr[data-authority=civil_affairs] td.count") == "1"
    assert _rows(page, "dead-letters-table", "library", "department", "reason") == set()

    send_raw(bus.as_principal("education"), bus.names.ingest("population", "education"), b"not avro")
    _wait_rows(page, "dead-letters-table", ("library", "department", "reason"),
               {("population", "education", "undecodable")})  # no reload
    assert page.text_content("#dead-letters-table td.count") == "1"
    _screenshot(page, "attention")


def test_the_freshness_charts_draw_the_processors_reports_against_the_sla(page, console_bus) -> None:
    _open(page, console_bus, "freshness")
    for measure in ("lateness", "latency"):
        chart = f"figure.chart[data-library=population][data-measure={measure}]"
        page.wait_for_selector(f"{chart}:not([data-points='0'])", timeout=WAIT_MS)
        points = page.get_attribute(f"{chart} polyline.p99", "points")
        assert len(points.split()) >= 2, f"the {measure} p99 line is drawn: {points!r}"
        assert page.locator(f"{chart} line.sla").count() == 1, "the SLA line is drawn"
    lateness = page.locator("div.library-card[data-library=population] table.departments").first.text_content()
    assert "public_security" in lateness, "the source's lateness is listed per department"
    _screenshot(page, "freshness")


def _audit_query(settings: Any, entity_id: str) -> set[tuple[str, ...]]:
    """`govbus audit query --entity` as governance, one tuple per printed delivery."""
    settings_module.get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["audit", "query", "--entity", entity_id], env=settings_environment(settings))
    finally:
        settings_module.get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    line = re.compile(r"^(\S+)\s+(\S+)\s+\S+:\S+ v(\d+)\s+purpose (\S+)\s+subscription (\S+)\s+fields (.*?)"
                      r"(?: \(masked: (.*)\))?$")
    found = {match.groups(default="") for match in map(line.match, result.output.splitlines()) if match}
    assert f"{len(found)} deliveries recorded." in result.output
    return found


def test_an_entitys_sharing_records_match_audit_query_and_the_chain_verifies(page, console_bus) -> None:
    entity = console_bus.people[0]["citizen_id"]
    expected = _audit_query(console_bus.as_principal(GOVERNANCE), entity)
    assert expected, "the setup's delivery to health is on the record"
    _open(page, console_bus, "trace")
    page.fill("#trace-form input[name=entity]", entity)
    page.click("#trace-form button[type=submit]")
    page.wait_for_selector("#trace-table tbody tr[data-subscription]", timeout=WAIT_MS)
    shown = page.evaluate("""() => [...document.querySelectorAll('#trace-table tbody tr[data-subscription]')]
        .map(row => ['delivered-at', 'department', 'version', 'purpose', 'subscription', 'fields', 'masked']
        .map(name => name === 'subscription' ? row.dataset.subscription : row.querySelector('td.' + name).textContent))""")
    shown = {tuple(row) for row in shown}
    assert shown == expected
    assert page.text_content("#chain-state").startswith("Audit chain verified")
    _screenshot(page, "trace")


def test_with_a_login_the_console_answers_only_to_its_name_and_password(console_bus, tmp_path) -> None:
    import base64
    import urllib.error
    import urllib.request

    password = "console-test-" + uuid.uuid4().hex[:8]
    other = ConsoleProcess(console_bus.as_principal(GOVERNANCE), free_port(), tmp_path / "console.log",
                           environment={"GOVBUS_CONSOLE_PASSWORD": password}, arguments=("--login",))
    with other:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{other.address}api/lineage", timeout=5)
        assert refused.value.code == 401 and "Basic" in refused.value.headers["www-authenticate"]
        token = base64.b64encode(f"governance:{password}".encode()).decode()
        asked = urllib.request.Request(f"{other.address}api/lineage", headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(asked, timeout=5) as answer:
            assert answer.status == 200
        wrong = base64.b64encode(b"governance:not-the-password").decode()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(f"{other.address}api/lineage",
                                                          headers={"Authorization": f"Basic {wrong}"}), timeout=5)
        assert refused.value.code == 401
