"""`govbus broker start | stop | status`."""

from __future__ import annotations

import time

import click

from govbus.broker.local import BrokerSecurity, LocalCluster
from govbus.broker.runtime import BrokerError, kafka_version
from govbus.security import credentials
from govbus.settings import Settings, get_settings


def local_cluster(settings: Settings, nodes: int = 1) -> LocalCluster:
    """The local cluster as the settings describe it: SASL/SCRAM unless they say PLAINTEXT,
    over TLS when they say SASL_SSL (material from `govbus certs create`)."""
    return LocalCluster(settings.home, nodes=nodes, port=settings.broker_port,
                        controller_port=settings.controller_port, heap=settings.broker_heap,
                        security=broker_security(settings))


def broker_security(settings: Settings) -> BrokerSecurity | None:
    if settings.security_protocol == "PLAINTEXT":
        return None
    try:
        admin = credentials.load(settings.home, credentials.ADMIN)
    except Exception:  # noqa: BLE001 - first start: make the admin principal
        admin = credentials.generate(credentials.ADMIN)
        credentials.save(settings.home, admin)
    tls = None
    if settings.security_protocol == "SASL_SSL":
        tls = settings.home / "tls"
        if not (tls / "broker-keystore.pem").exists():
            raise BrokerError(f"SASL_SSL needs TLS material in {tls}; make it with `govbus certs create`.")
    return BrokerSecurity(admin.password, tls)


@click.group()
def broker() -> None:
    """Run a real Kafka broker (KRaft mode) on 127.0.0.1 from Maven Central's jars.

    Files live under GOVBUS_HOME (default ~/.govbus): the jar cache in kafka-<version>/libs,
    each node's data in broker/node-<n>/data and its log in broker/node-<n>/logs/server.log.
    """


@broker.command()
@click.option("--nodes", default=1, show_default=True, help="Number of KRaft nodes (broker+controller each).")
def start(nodes: int) -> None:
    """Start the local broker and wait until it answers clients."""
    settings = get_settings()
    cluster = local_cluster(settings, nodes)
    click.echo(f"Starting Apache Kafka {kafka_version()} ({nodes} node{'s' if nodes > 1 else ''}, heap {settings.broker_heap}) …")
    began = time.monotonic()
    bootstrap = cluster.start()
    click.echo(f"Ready in {time.monotonic() - began:.1f} s. Bootstrap address: {bootstrap}")
    click.echo(f"Data and logs: {settings.home / 'broker'}")
    if cluster.security:
        click.echo(f"Security: {cluster.security.listener} with SCRAM-SHA-512; principals' credentials in "
                   f"{credentials.directory(settings.home)} (admin is the operators' super user).")
    else:
        click.echo("Security: none (PLAINTEXT, GOVBUS_SECURITY_PROTOCOL=PLAINTEXT): for quick local development only.")


@broker.command()
@click.option("--nodes", default=1, show_default=True)
def stop(nodes: int) -> None:
    """Stop the local broker cleanly (SIGTERM, wait, then report)."""
    for line in local_cluster(get_settings(), nodes).stop():
        click.echo(line)


@broker.command()
@click.option("--nodes", default=1, show_default=True)
def status(nodes: int) -> None:
    """Say whether the local broker runs, where, which version and where its data is."""
    any_running = False
    for node in local_cluster(get_settings(), nodes).status():
        any_running |= node.running
        state = f"running (pid {node.pid})" if node.running else "not running"
        click.echo(f"node {node.node_id}: {state}, address {node.bootstrap}, "
                   f"Kafka {node.version or kafka_version()}, data {node.data_directory}")
    raise SystemExit(0 if any_running else 3)
