"""`govbus departments add | list | rotate` and `govbus certs create`."""

from __future__ import annotations

import click

from govbus import clients
from govbus.security import certs, credentials, principals
from govbus.settings import get_settings
from govbus.topics.catalog import load_catalog

SERVICE_PRINCIPALS = (credentials.PROCESSORS, credentials.AUTHORITY, credentials.GOVERNANCE)


@click.group()
def departments() -> None:
    """Department principals on the broker (SASL/SCRAM-SHA-512); run as the admin principal."""


def _principal_names(name: str | None, everyone: bool) -> list[str]:
    settings = get_settings()
    if everyone:
        return [*SERVICE_PRINCIPALS, *load_catalog(settings.catalog_dir).departments]
    if not name:
        raise click.UsageError("name a department (or processors/governance principal), or pass --all")
    if name not in SERVICE_PRINCIPALS:
        load_catalog(settings.catalog_dir).require_department(name)
    return [name]


def _ensure(names: list[str], rotate: bool, show: bool) -> None:
    settings = get_settings()
    admin = clients.admin(settings)
    try:
        for name in names:
            login = principals.ensure(admin, settings.home, name, rotate=rotate)
            secret = f" password {login.password}" if show else ""
            click.echo(f"{name}: {'rotated' if rotate else 'ready'}; credentials in "
                       f"{credentials.directory(settings.home) / (name + '.json')}{secret}")
    finally:
        admin.close()


@departments.command()
@click.argument("name", required=False)
@click.option("--all", "everyone", is_flag=True, help="Every department of the catalog plus the processors and governance principals.")
@click.option("--show-password", is_flag=True, help="Print the password (it is otherwise only in the credentials file).")
def add(name: str | None, everyone: bool, show_password: bool) -> None:
    """Create a principal with generated credentials (stored owner-only); idempotent."""
    _ensure(_principal_names(name, everyone), rotate=False, show=show_password)


@departments.command()
@click.argument("name")
@click.option("--show-password", is_flag=True)
def rotate(name: str, show_password: bool) -> None:
    """Give a principal a new password; the old one stops working at once."""
    _ensure(_principal_names(name, False), rotate=True, show=show_password)


@departments.command("list")
def list_command() -> None:
    """Catalog departments and service principals: on the broker? credentials stored here?"""
    settings = get_settings()
    admin = clients.admin(settings)
    try:
        on_broker = set(principals.on_broker(admin))
    finally:
        admin.close()
    stored = set(credentials.known(settings.home))
    catalog = load_catalog(settings.catalog_dir)
    for name in [*SERVICE_PRINCIPALS, *catalog.departments]:
        label = f"{catalog.departments[name].zh} {catalog.departments[name].en}" if name in catalog.departments else "service"
        click.echo(f"{name:<22} {'on broker' if name in on_broker else 'missing  '}  "
                   f"{'credentials stored' if name in stored else 'no credentials here'}  {label}")


@click.group()
def certs() -> None:
    """TLS material for SASL_SSL."""


@certs.command("create")
@click.option("--host", "hosts", multiple=True, default=("127.0.0.1", "localhost"), show_default=True,
              help="Names and addresses the broker certificate is valid for.")
def create_command(hosts: tuple[str, ...]) -> None:
    """Make a private CA and a broker certificate in <home>/tls."""
    directory = get_settings().home / "tls"
    for path in certs.create(directory, list(hosts)):
        click.echo(f"wrote {path}")
    click.echo("Start the broker with GOVBUS_SECURITY_PROTOCOL=SASL_SSL; clients verify it with ca.pem.")
