"""Each govbus service of docker/compose.yaml, run as the file says against a real broker.

No Docker engine is needed: a service's `command` is what the image's entrypoint (`govbus`)
receives, so `python -m govbus.cli <command…>` with the service's environment is what the
container would run. Only where the deployment differs from this machine is anything
replaced: the brokers' address, the topic prefix (this test's own), the security settings
(the test broker's), the processor port (a free one), GOVBUS_HOME and the subscriber's
database (the session's PostgreSQL). One-shot services must exit 0; long-running ones must
become ready and then stop cleanly (exit 0) on SIGTERM, as `docker compose stop` asks them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

import pg
from govbus.broker.provision import free_port
from govbus.processes import settings_environment, stop_process
from govbus.processors.governance import control
from govbus.processors.governance.subscriptions import SubscriptionRequest
from govbus.security import credentials
from govbus.settings import PROJECT_ROOT

from kafka_helpers import topic_names

COMPOSE = PROJECT_ROOT / "docker" / "compose.yaml"
DOCKERFILE = "docker/Dockerfile"
SUBSCRIBER_DEPARTMENT = "civil_affairs"  # the compose file's subscriber

# Services of the project's image that cannot run here, each with why; the reason is checked,
# so an entry that no longer holds fails the test instead of hiding a service.
NOT_RUNNABLE_HERE: dict[str, tuple[str, Callable[[], bool]]] = {}


def interpolate(value: object, variables: dict[str, str]) -> object:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error} (and $$ for a dollar)."""
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.group("name"), match.group("operator"), match.group("argument") or ""
        current = variables.get(name)
        if operator == ":-":
            return current or argument
        if operator == ":?":
            assert current, f"compose needs ${name}: {argument}"
        return current or ""

    return re.sub(r"\$\$|\$\{(?P<name>\w+)(?:(?P<operator>:[-?])(?P<argument>[^}]*))?\}", replace, value)


def project_services() -> dict[str, dict]:
    """The services that run the project's image, in the order the compose file starts them."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    ours = {name: service for name, service in services.items()
            if (service.get("build") or {}).get("dockerfile") == DOCKERFILE}
    return dict(sorted(ours.items(), key=lambda item: _depth(item[0], services)))


def _depth(name: str, services: dict[str, dict]) -> int:
    return 1 + max((_depth(parent, services) for parent in services[name].get("depends_on") or {}), default=0)


def one_shot(service: dict) -> bool:
    return service.get("restart") == "no"


class Service:
    """One compose service run locally as `python -m govbus.cli <command…>`."""

    def __init__(self, name: str, service: dict, bus, variables: dict[str, str], replacements: dict[str, str],
                 log: Path) -> None:
        self.name = name
        self.command = [str(part) for part in interpolate(service["command"], variables)]
        environment = {key: str(interpolate(value, variables)) for key, value in (service.get("environment") or {}).items()}
        self.port = free_port()
        self.environment = {**settings_environment(bus.settings), **environment,
                            "GOVBUS_BOOTSTRAP_SERVERS": bus.settings.bootstrap_servers,
                            "GOVBUS_TOPIC_PREFIX": bus.settings.topic_prefix,
                            "GOVBUS_PROCESSOR_PORT": str(self.port),
                            "GOVBUS_CONSOLE_HOST": "127.0.0.1", "GOVBUS_CONSOLE_PORT": str(self.port),  # loopback here
                            "GOVBUS_HOME": str(bus.settings.home)}
        for key, value in settings_environment(bus.settings).items():
            if key.startswith(("GOVBUS_SECURITY", "GOVBUS_SASL", "GOVBUS_SSL")):
                self.environment[key] = value
        if environment.get("GOVBUS_SASL_USERNAME") == credentials.GOVERNANCE and bus.passwords:
            # The console refuses to run as the admin: it logs in as governance, as the file says.
            self.environment.update({"GOVBUS_SASL_USERNAME": credentials.GOVERNANCE,
                                     "GOVBUS_SASL_PASSWORD": bus.passwords[credentials.GOVERNANCE]})
        self.command = [replacements.get(part, part) for part in self.command]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "govbus.cli", *self.command], env=self.environment,
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def run_once(self, timeout: float = 180) -> int:
        self.start()
        return self.process.wait(timeout)

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as error:
            return json.load(error)
        except (OSError, ValueError):
            return None

    def wait_ready(self, timeout: float = 180, settle: float = 10) -> None:
        """A processor is ready when its /health says so; another service when it is still
        running after ``settle`` seconds."""
        started = time.monotonic()
        processor = self.command[:2] == ["processors", "run"]
        while time.monotonic() < started + timeout:
            assert self.process.poll() is None, f"{self.name} exited with {self.process.returncode}:\n{self.tail()}"
            if (self.health() or {}).get("status") == "ready" if processor else time.monotonic() > started + settle:
                return
            time.sleep(0.5)
        raise AssertionError(f"{self.name} not ready within {timeout:.0f} s:\n{self.tail()}")

    def stop(self, timeout: float = 60) -> int | None:
        return stop_process(self.process, timeout)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


def test_every_project_service_is_run_here_or_says_why_not(bus) -> None:
    services = project_services()
    assert {"topics", "gate", "router", "freshness", "subscriber"} <= set(services)
    command = services["subscriber"]["command"]
    assert command[command.index("--department") + 1] == SUBSCRIBER_DEPARTMENT
    for name, (reason, still_true) in NOT_RUNNABLE_HERE.items():
        assert name in services, f"{name} is listed as not runnable but is not in the compose file"
        assert still_true(), f"{name}: no longer true that {reason}; remove it from NOT_RUNNABLE_HERE"


def test_each_service_command_of_the_compose_file_runs_against_the_broker(bus, request, tmp_path: Path) -> None:
    services = {name: service for name, service in project_services().items() if name not in NOT_RUNNABLE_HERE}
    # The session's bus keys with the development secret, which a production deployment refuses.
    variables = {**os.environ, "GOVBUS_KEY_SECRET": bus.settings.key_secret, "POSTGRES_PASSWORD": "compose-test",
                 "GOVBUS_CONSOLE_PASSWORD": "compose-test-console",
                 "GOVBUS_TOPIC_PREFIX": bus.settings.topic_prefix, "GOVBUS_ENVIRONMENT": bus.settings.environment}
    replacements = {}
    if any("--store" in service["command"] for service in services.values()):
        replacements = {interpolate(service["command"][service["command"].index("--store") + 1], variables):
                        pg.fresh_database(request.getfixturevalue("postgres_dsn")) for service in services.values() if "--store" in service["command"]}
    runs = {name: Service(name, service, bus, variables, replacements, tmp_path / f"{name}.log")
            for name, service in services.items()}
    # The session's principals, stored where the services keep credentials: the `credentials`
    # init service must reuse them (as on a restarted deployment), not lock every client out.
    for name, password in bus.passwords.items():
        credentials.save(bus.settings.home, credentials.Credentials(name, password))

    for name, service in services.items():
        if one_shot(service):
            assert runs[name].run_once() == 0, f"{name} ({runs[name].command}):\n{runs[name].tail()}"
    _assert_the_catalog_was_applied(bus)
    stored = {name: credentials.load(bus.settings.home, name).password for name in bus.passwords}
    assert stored == bus.passwords, "running the init services again changes no principal's password"

    long_running = [runs[name] for name, service in services.items() if not one_shot(service)]
    processors = [run for run in long_running if run.command[:2] == ["processors", "run"]]
    try:
        for run in processors:
            run.start()
        for run in processors:
            run.wait_ready()
        _approve_a_subscription_for_the_subscriber(bus)  # as an operator does before it starts
        for run in long_running:
            if run not in processors:
                run.start().wait_ready()
    finally:
        codes = {run.name: run.stop() for run in long_running}
    assert codes == {run.name: 0 for run in long_running}, {run.name: run.tail() for run in long_running if codes[run.name]}


def _approve_a_subscription_for_the_subscriber(bus) -> None:
    """The subscriber refuses to start for a department with nothing to receive; give it
    a subscription and wait for the router to make its delivery topic."""
    subscription = control.request(bus.settings, SubscriptionRequest(
        department=SUBSCRIBER_DEPARTMENT, library="population", fields=("citizen_id", "name"),
        purpose="administrative_basis"))
    if subscription.state != "approved":
        control.approve(bus.settings, subscription.id, "public_security")
    topic = bus.names.deliver(SUBSCRIBER_DEPARTMENT, "population")
    deadline = time.monotonic() + 120
    while topic not in topic_names(bus.settings):
        assert time.monotonic() < deadline, f"the router did not make {topic}"
        time.sleep(1)


def _assert_the_catalog_was_applied(bus) -> None:
    existing = topic_names(bus.settings)
    wanted = {spec.name for spec in bus.catalog.topic_specs(bus.names)}
    assert wanted <= existing, f"the init service did not make {sorted(wanted - existing)[:5]} …"
