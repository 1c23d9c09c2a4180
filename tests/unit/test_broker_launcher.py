"""The local broker launcher's error paths, without starting a broker."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from govbus.broker import runtime
from govbus.broker.local import LocalCluster, ensure_port_free
from govbus.broker.runtime import BrokerError, find_java, kafka_version, parse_java_version


def test_kafka_version_is_pinned_in_the_pom() -> None:
    assert kafka_version().startswith("4.")


def test_missing_java_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
    with pytest.raises(BrokerError, match="Java 17 or newer is needed.*apt-get install"):
        find_java()


def _fake_java(directory: Path, version_line: str) -> Path:
    java = directory / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return directory


def test_too_old_java_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", str(_fake_java(tmp_path, 'openjdk version "11.0.2" 2019-01-15')))
    with pytest.raises(BrokerError, match="is Java 11; Kafka .* needs Java 17"):
        find_java()


def test_java_17_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", str(_fake_java(tmp_path, 'openjdk version "17.0.15" 2025-04-15')))
    assert find_java().major == 17


@pytest.mark.parametrize("output, major", [('java version "1.8.0_392"', 8), ('openjdk version "21" 2023-09-19', 21),
                                           ('openjdk version "17.0.15" 2025-04-15', 17)])
def test_java_version_strings_parse(output: str, major: int) -> None:
    assert parse_java_version(output) == major


def test_taken_port_is_refused_with_the_setting_to_change() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(BrokerError, match=f"Port {port} on 127.0.0.1 is taken.*GOVBUS_BROKER_PORT"):
            ensure_port_free(port)


def test_start_refuses_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        cluster = LocalCluster(tmp_path, ports=[(port, port + 1)])
        with pytest.raises(BrokerError, match=f"Port {port}"):
            cluster.start()


def test_missing_maven_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
    with pytest.raises(BrokerError, match="apt-get install maven"):
        runtime.ensure_jars(tmp_path)


def test_unreachable_maven_central_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_maven = tmp_path / "mvn"
    fake_maven.write_text("#!/bin/sh\necho 'Could not transfer artifact org.apache.kafka:kafka_2.13' ; exit 1\n")
    fake_maven.chmod(0o755)
    monkeypatch.setattr(runtime.shutil, "which", lambda name: str(fake_maven))
    with pytest.raises(BrokerError, match="Is Maven Central reachable") as refused:
        runtime.ensure_jars(tmp_path / "home")
    assert "Could not transfer artifact" in str(refused.value)


def test_status_of_a_never_started_broker_is_not_running(tmp_path: Path) -> None:
    (status,) = LocalCluster(tmp_path).status()
    assert not status.running and status.pid is None


def test_three_nodes_share_one_quorum_on_distinct_ports(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, nodes=3, port=29092, controller_port=29093)
    ports = [p for node in cluster.nodes for p in (node.port, node.controller_port)]
    assert len(set(ports)) == 6
    properties = cluster.server_properties(cluster.nodes[1])
    assert "node.id=2" in properties
    assert "controller.quorum.bootstrap.servers=127.0.0.1:29095,127.0.0.1:29096,127.0.0.1:29097" in properties
    assert "offsets.topic.replication.factor=3" in properties
