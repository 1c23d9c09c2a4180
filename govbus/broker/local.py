"""A real Apache Kafka cluster in KRaft mode on loopback, run from Maven Central's jars.

Each node is one JVM that is both broker and controller. A node's files live in
``<home>/broker/node-<id>/``: ``data/`` (the log directories), ``logs/server.log``,
``server.properties`` and ``node.json`` (pid, ports, version). They survive stop and start,
so topics and their data do too.

Everything there is the owner's only (folders 0700, files 0600): the log directories hold
every department's records and the configuration the inter-broker password. The files this
module writes are created so (never world-readable for a moment), and the JVMs run with
umask 077, so that the segments, checkpoints and logs Kafka makes are too.

Why one module of about 510 lines: one node's configuration, processes and its cluster's start and stop are one lifecycle.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from govbus.broker.runtime import BrokerError, ensure_jars, find_java, kafka_version

CONTROLLER_USER = "controller"  # the nodes' own principal on the controller listener
PRIVATE_UMASK = 0o077  # the JVMs' files: owner-only, whatever the caller's umask


def private_directory(path: Path) -> Path:
    """``path`` (and missing parents) made and kept owner-only (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, text: str, *, append: bool = False) -> Path:
    """Write ``text`` to a file that is owner-only (0600) from its creation on."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    descriptor = os.open(path, flags, 0o600)
    os.fchmod(descriptor, 0o600)  # an older file may have been made world-readable
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    return path


_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


@dataclass(frozen=True)
class BrokerSecurity:
    """SASL/SCRAM on the client listener (and TLS when ``tls_directory`` holds the material
    made by ``govbus certs create``). ``admin`` is a super user created at format time.

    The KRaft controller listener authenticates too, with SASL/PLAIN: SCRAM credentials live
    in the cluster metadata, which the controllers serve, so they cannot check a SCRAM login
    before there is a quorum; PLAIN's users are in the JAAS configuration instead. Its one
    user, ``controller`` (the nodes themselves, broker to controller and controller to
    controller), is a super user; nobody else gets in, so nobody can grant ACLs through the
    controller port (``--bootstrap-controller``) as an anonymous super user."""

    admin_password: str
    tls_directory: Path | None = None

    @property
    def listener(self) -> str:
        return "SASL_SSL" if self.tls_directory else "SASL_PLAINTEXT"

    @property
    def controller_password(self) -> str:
        """The controller user's password, derived from the admin's: the same on every node and
        across restarts without another secret to store (and it does not reveal the admin's)."""
        return hmac.new(self.admin_password.encode(), b"govbus KRaft controller listener", hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class NodeSpec:
    """Where one node listens and keeps its files."""

    node_id: int
    port: int
    controller_port: int
    directory: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.directory / "node.json"

    @property
    def log_file(self) -> Path:
        return self.directory / "logs" / "server.log"


@dataclass(frozen=True)
class NodeStatus:
    node_id: int
    running: bool
    pid: int | None
    bootstrap: str
    version: str | None
    data_directory: Path


class LocalCluster:
    """Start, stop and inspect KRaft nodes kept under ``home``; every listener binds to
    127.0.0.1 only."""

    def __init__(
        self,
        home: Path,
        *,
        nodes: int = 1,
        port: int = 9092,
        controller_port: int = 9093,
        heap: str = "512m",
        jar_cache: Path | None = None,
        ports: list[tuple[int, int]] | None = None,
        security: BrokerSecurity | None = None,
    ) -> None:
        """``ports`` gives each node's (client, controller) ports explicitly; otherwise node
        ``i`` listens on ``port + i`` and ``controller_port + i`` (moved past the client ports
        when they would overlap)."""
        if ports is None:
            if nodes < 1:
                raise BrokerError("A cluster needs at least one node.")
            controller_base = controller_port if nodes == 1 else max(controller_port, port + nodes)
            ports = [(port + i, controller_base + i) for i in range(nodes)]
        self.home = home
        self.heap = heap
        self.jar_cache = jar_cache or home
        self.security = security
        self.nodes = [
            NodeSpec(i + 1, client, controller, home / "broker" / f"node-{i + 1}")
            for i, (client, controller) in enumerate(ports)
        ]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    # -- start -------------------------------------------------------------------------------
    def start(self, *, timeout: float = 120.0) -> str:
        """Start every node, wait until the cluster answers clients; return the bootstrap."""
        running = [status for status in self.status() if status.running]
        if running:
            raise BrokerError(
                f"A local broker is already running (node {running[0].node_id}, pid "
                f"{running[0].pid}, {running[0].bootstrap}). Use it, or stop it first with "
                "`govbus broker stop`."
            )
        for node in self.nodes:
            for port in (node.port, node.controller_port):
                ensure_port_free(port)
        java = find_java()
        libs = ensure_jars(self.jar_cache)
        self._format_if_new(java.executable, libs)
        processes = [self._launch(java.executable, libs, node) for node in self.nodes]
        self._wait_ready(processes, timeout)
        return self.bootstrap_servers

    def _format_if_new(self, java: str, libs: Path) -> None:
        new_nodes = [node for node in self.nodes if not (node.directory / "data" / "meta.properties").exists()]
        if not new_nodes:
            return
        if len(new_nodes) != len(self.nodes):
            raise BrokerError(
                f"Some nodes under {self.home / 'broker'} are formatted and some are not; "
                "remove that directory to start afresh."
            )
        cluster_id = self._kafka_tool(java, libs, ["kafka.tools.StorageTool", "random-uuid"]).strip()
        directory_ids = {node.node_id: _random_directory_id() for node in self.nodes}
        voters = ",".join(
            f"{node.node_id}@127.0.0.1:{node.controller_port}:{directory_ids[node.node_id]}"
            for node in self.nodes
        )
        for node in self.nodes:
            self._write_configuration(node)
            arguments = ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(node.directory / "server.properties")]
            if self.security:
                arguments += ["--add-scram", f"SCRAM-SHA-512=[name=admin,password={self.security.admin_password}]"]
            if len(self.nodes) == 1:
                arguments.append("--standalone")
            else:
                arguments += ["--initial-controllers", voters]
            self._kafka_tool(java, libs, arguments)
            if len(self.nodes) > 1:
                _set_directory_id(node.directory / "data" / "meta.properties", directory_ids[node.node_id])

    def _kafka_tool(self, java: str, libs: Path, arguments: list[str]) -> str:
        """Run one of Kafka's tools. Its arguments (the admin password, at format time) go in an
        owner-only ``@argfile`` that Java's launcher reads (JDK 9+) and that is deleted after
        the run, never on the command line, which every user of the machine can read in
        /proc/<pid>/cmdline (``ps``)."""
        options = ["-Xmx256m", f"-Dlog4j2.configurationFile={self._log4j2(self.nodes[0])}", "-cp", f"{libs}/*", *arguments]
        descriptor, argfile = tempfile.mkstemp(prefix="kafka-tool-", suffix=".args", dir=self.home / "broker")
        try:
            with os.fdopen(descriptor, "w") as file:  # mkstemp: 0600, in the 0700 broker folder
                file.write("\n".join(_argfile_quoted(option) for option in options) + "\n")
            completed = subprocess.run([java, f"@{argfile}"], capture_output=True, text=True, check=False,
                                       umask=PRIVATE_UMASK)
        finally:
            os.unlink(argfile)
        if completed.returncode != 0:
            raise BrokerError(f"{arguments[0]} {arguments[1]} failed:\n{completed.stderr or completed.stdout}")
        return completed.stdout

    def _write_configuration(self, node: NodeSpec) -> None:
        self._private_directories(node)
        write_private(node.directory / "server.properties", self.server_properties(node))  # the inter-broker password
        self._log4j2(node)

    def _private_directories(self, node: NodeSpec) -> None:
        """The node's folders, owner-only; ``broker/`` too, so that nobody else even lists the nodes."""
        private_directory(self.home / "broker")
        for path in (node.directory, node.directory / "data", node.directory / "logs"):
            private_directory(path)

    def _log4j2(self, node: NodeSpec) -> Path:
        self._private_directories(node)
        return write_private(node.directory / "log4j2.properties", _LOG4J2.format(log_file=node.log_file))

    def server_properties(self, node: NodeSpec) -> str:
        """The broker configuration; small buffers because the machines are small."""
        quorum = ",".join(f"127.0.0.1:{other.controller_port}" for other in self.nodes)
        replication = min(3, len(self.nodes))
        listener = self.security.listener if self.security else "PLAINTEXT"
        properties = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.bootstrap.servers": quorum,
            "listeners": f"{listener}://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"{listener}://127.0.0.1:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": listener,
            # The controller listener authenticates (SASL/PLAIN) when the client listener does.
            "listener.security.protocol.map": f"{listener}:{listener},CONTROLLER:{'SASL_PLAINTEXT' if self.security else 'PLAINTEXT'}",
            "log.dirs": node.directory / "data",
            "num.partitions": 1,
            "offsets.topic.replication.factor": replication,
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": min(2, replication),
            "share.coordinator.state.topic.replication.factor": replication,
            "share.coordinator.state.topic.min.isr": min(2, replication),
            "group.initial.rebalance.delay.ms": 0,
            "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
            "num.network.threads": 2,
            "num.io.threads": 4,
            "auto.create.topics.enable": "false",
            **(self._security_properties() if self.security else {}),
        }
        return "".join(f"{key}={value}\n" for key, value in properties.items())

    def _security_properties(self) -> dict[str, object]:
        security = self.security
        name = security.listener.lower()
        jaas = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
                f'username="admin" password="{security.admin_password}";')
        controller = security.controller_password
        controller_jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
                           f'username="{CONTROLLER_USER}" password="{controller}" user_{CONTROLLER_USER}="{controller}";')
        properties: dict[str, object] = {
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            f"listener.name.{name}.scram-sha-512.sasl.jaas.config": jaas,
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": controller_jaas,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:admin;User:{CONTROLLER_USER}",
        }
        if security.tls_directory:
            properties |= {
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": security.tls_directory / "broker-keystore.pem",
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": security.tls_directory / "ca.pem",
                "ssl.endpoint.identification.algorithm": "https",
            }
        return properties

    def _launch(self, java: str, libs: Path, node: NodeSpec) -> subprocess.Popen[bytes]:
        self._write_configuration(node)
        command = [
            java, f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", f"-Dkafka.logs.dir={node.log_file.parent}",
            f"-Dlog4j2.configurationFile={node.directory / 'log4j2.properties'}",
            "-cp", f"{libs}/*", "kafka.Kafka", str(node.directory / "server.properties"),
        ]
        console = os.open(node.directory / "logs" / "console.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(console, 0o600)
        try:
            process = subprocess.Popen(command, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, umask=PRIVATE_UMASK)
        finally:
            os.close(console)  # the child has its own copy
        record = {"pid": process.pid, "version": kafka_version(), "port": node.port,
                  "controller_port": node.controller_port, "started_at": time.time()}
        write_private(node.pid_file, json.dumps(record))
        return process

    def _wait_ready(self, processes: list[subprocess.Popen[bytes]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for node, process in zip(self.nodes, processes):
            while not broker_answers(node.bootstrap, security=self.client_security()):
                if process.poll() is not None:
                    raise BrokerError(
                        f"Kafka node {node.node_id} exited with code {process.returncode} while "
                        f"starting. The end of {node.log_file}:\n{_tail(node)}"
                    )
                if time.monotonic() > deadline:
                    self.stop()
                    raise BrokerError(f"Kafka did not answer on {node.bootstrap} within {timeout:.0f} s; see {node.log_file}.\n{_tail(node)}")
                time.sleep(0.5)

    def client_security(self) -> dict | None:
        """kafka-python settings with which the admin reaches this cluster."""
        if not self.security:
            return None
        from govbus import redaction

        redaction.install()
        redaction.remember(self.security.admin_password)
        config = {"security_protocol": self.security.listener, "sasl_mechanism": "SCRAM-SHA-512",
                  "sasl_plain_username": "admin", "sasl_plain_password": self.security.admin_password}
        if self.security.tls_directory:
            import ssl

            config["ssl_context"] = ssl.create_default_context(cafile=str(self.security.tls_directory / "ca.pem"))
        return config

    def pids(self) -> list[int]:
        """The process ids of the nodes now running (the bench counts their CPU)."""
        return [pid for pid in (_running_pid(node) for node in self.nodes) if pid is not None]

    # -- stop and status ---------------------------------------------------------------------
    def stop(self, *, timeout: float = 60.0) -> list[str]:
        """SIGTERM every running node, wait for a clean exit, SIGKILL what does not exit.

        All nodes are asked at once: a node stopped after the others would wait in vain for a
        controller quorum to acknowledge its controlled shutdown."""
        reports = []
        pids = {node.node_id: _running_pid(node) for node in self.nodes}
        for pid in pids.values():
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
        for node in reversed(self.nodes):
            pid = pids[node.node_id]
            if pid is None:
                reports.append(f"node {node.node_id}: not running")
                continue
            if _wait_exit(pid, timeout):
                reports.append(f"node {node.node_id}: stopped cleanly (pid {pid})")
            else:
                os.kill(pid, signal.SIGKILL)
                _wait_exit(pid, 10)
                reports.append(f"node {node.node_id}: did not stop within {timeout:.0f} s; killed (pid {pid})")
        return reports

    def kill(self, node_id: int) -> None:
        """Stop one node abruptly (SIGKILL), as a crash would; for failover tests."""
        node = self.nodes[node_id - 1]
        pid = _running_pid(node)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            _wait_exit(pid, 10)

    def status(self) -> list[NodeStatus]:
        statuses = []
        for node in self.nodes:
            record = _read_record(node)
            pid = _running_pid(node)
            statuses.append(NodeStatus(node.node_id, pid is not None, pid, node.bootstrap,
                                       record.get("version") if record else None, node.directory / "data"))
        return statuses


def ensure_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the JVM does: a port whose old connections linger in TIME_WAIT is still free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise BrokerError(
                f"Port {port} on 127.0.0.1 is taken ({error.strerror}); another broker or "
                "program listens there. Stop it, or choose other ports with "
                "GOVBUS_BROKER_PORT and GOVBUS_CONTROLLER_PORT."
            ) from error


def broker_answers(bootstrap: str, timeout: float = 3.0, security: dict | None = None) -> bool:
    """True when a broker answers a metadata request (not merely accepts TCP)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaConfigurationError, KafkaError

    if not any(_port_open(address, timeout) for address in bootstrap.split(",")):
        return False  # nothing listens: say so at once instead of waiting out a bootstrap
    milliseconds = int(timeout * 1000)
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=milliseconds,
                                 bootstrap_timeout_ms=milliseconds, client_id="govbus-probe", **(security or {}))
    except KafkaConfigurationError:
        raise
    except (KafkaError, OSError):
        return False
    try:
        admin.describe_cluster()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def _port_open(address: str, timeout: float) -> bool:
    host, _, port = address.strip().rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _argfile_quoted(argument: str) -> str:
    """One argument as a Java @argfile line: double-quoted, its backslashes and quotes escaped."""
    return '"' + argument.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _random_directory_id() -> str:
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _set_directory_id(meta: Path, directory_id: str) -> None:
    lines = [line for line in meta.read_text().splitlines() if not line.startswith("directory.id=")]
    meta.write_text("\n".join([*lines, f"directory.id={directory_id}"]) + "\n")


def _read_record(node: NodeSpec) -> dict | None:
    try:
        return json.loads(node.pid_file.read_text())
    except (OSError, ValueError):
        return None


def _running_pid(node: NodeSpec) -> int | None:
    record = _read_record(node)
    if not record:
        return None
    pid = int(record["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists() and b"kafka.Kafka" not in cmdline.read_bytes():
        return None  # the pid was reused by another program
    return pid


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
            if finished == pid:
                return True
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _tail(node: NodeSpec, lines: int = 20) -> str:
    text = ""
    for path in (node.log_file, node.directory / "logs" / "console.log"):
        if path.exists():
            text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
    return text.strip()
