"""Traps an operator falls into on a real broker: world-readable data, passwords in logs or
on the process list, the development key secret, an open controller listener."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def local(broker):
    """A broker whose files and controller port this suite holds: the session's own when it
    started one (CI always does), else a throw-away local one for this module — never a skip."""
    if broker.cluster is not None:
        yield broker
        return
    from govbus.broker.provision import local_broker
    from govbus.settings import Settings

    own = local_broker(Settings())
    try:
        yield own
    finally:
        own.close()


def test_nothing_the_local_broker_keeps_is_readable_by_others(local) -> None:
    cluster = local.cluster
    exposed = []
    for node in cluster.nodes:
        for path in [node.directory, *node.directory.rglob("*")]:
            if stat.S_IMODE(path.lstat().st_mode) & 0o077 and not path.is_symlink():
                exposed.append(f"{oct(stat.S_IMODE(path.lstat().st_mode))} {path}")
    assert len(list(cluster.nodes[0].directory.joinpath("data").iterdir())) > 3, "the broker has written its data"
    assert exposed == [], "\n".join(exposed[:20])
    assert stat.S_IMODE(Path(cluster.home, "broker").stat().st_mode) == 0o700


def test_govbus_v_never_prints_the_principals_password(bus) -> None:
    import subprocess
    import sys

    from govbus.processes import settings_environment

    assert bus.secured and bus.settings.sasl_password
    completed = subprocess.run([sys.executable, "-m", "govbus.cli", "-v", "topics", "list"], capture_output=True,
                               text=True, timeout=120, env=settings_environment(bus.settings), check=False)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-2000:]
    assert "Starting KafkaAdminClient with configuration" in output, "-v logs the client's configuration"
    assert bus.settings.sasl_password not in output


def _acl_command(cluster, tmp_path: Path, name: str, client_config: dict[str, str], *arguments: str):
    """Kafka's own kafka-acls (AclCommand) against a node's controller listener, as an operator
    or an intruder on the machine would run it (``--bootstrap-controller``)."""
    import subprocess

    from govbus.broker.runtime import find_java, jar_directory

    config = tmp_path / f"{name}.properties"
    config.write_text("".join(f"{key}={value}\n" for key, value in
                              {"request.timeout.ms": 3000, "default.api.timeout.ms": 8000, **client_config}.items()))
    command = [find_java().executable, "-Xmx128m", "-cp", f"{jar_directory(cluster.jar_cache)}/*",
               "org.apache.kafka.tools.AclCommand", "--bootstrap-controller",
               f"127.0.0.1:{cluster.nodes[0].controller_port}", "--command-config", str(config), *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_the_controller_listener_lets_nobody_in_without_credentials(local, bus, tmp_path: Path) -> None:
    from govbus import clients
    from govbus.topics import acls

    cluster = local.cluster
    forged = f"{bus.names.prefix}ingest."
    grant = ["--add", "--allow-principal", "User:mallory", "--operation", "Write", "--topic", forged,
             "--resource-pattern-type", "prefixed"]
    anonymous = _acl_command(cluster, tmp_path, "anonymous", {}, *grant)
    admin = clients.admin(local.admin_settings())  # the broker behind that controller port
    try:
        granted = [acl for acl in acls.current(admin, ["mallory"], bus.names, bus.catalog)]
    finally:
        admin.close()
    assert granted == [], f"an anonymous client granted ACLs through the controller port:\n{anonymous.stdout}"
    assert anonymous.returncode != 0 or "Error" in anonymous.stdout + anonymous.stderr

    # The nodes' own principal does get in: the listener authenticates, it is not merely shut.
    from govbus.broker.local import CONTROLLER_USER

    password = cluster.security.controller_password
    login = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
             "sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule required "
                                 f'username="{CONTROLLER_USER}" password="{password}";'}
    listed = _acl_command(cluster, tmp_path, "controller", login, "--list", "--topic", forged,
                          "--resource-pattern-type", "prefixed")
    assert listed.returncode == 0, listed.stdout + listed.stderr
