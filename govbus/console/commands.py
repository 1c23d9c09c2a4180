"""`govbus console`: serve the governance console, logged in to Kafka as ``governance``."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from govbus.errors import GovbusError
from govbus.security.credentials import ADMIN, GOVERNANCE
from govbus.settings import Settings, get_settings
from govbus.topics.catalog import load_catalog

DEFAULT_PORT = 8086
PASSWORD_VARIABLE = "GOVBUS_CONSOLE_PASSWORD"  # never an option: options show in the process list
USERNAME_VARIABLE = "GOVBUS_CONSOLE_USERNAME"


def loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def governance_settings(settings: Settings) -> Settings:
    """The settings logged in as governance, whoever the environment names: the console reads
    what governance may read and never runs as the admin super user."""
    if settings.sasl_username == ADMIN and settings.sasl_password:
        raise GovbusError("the console logs in as governance, never as admin: unset GOVBUS_SASL_PASSWORD (governance's "
                          "password is read from its credentials file) or set GOVBUS_SASL_USERNAME=governance")
    if not settings.secured or settings.sasl_username == GOVERNANCE:
        return settings
    return settings.model_copy(update={"sasl_username": GOVERNANCE, "sasl_password": None})


def login_for(settings: Settings, host: str, asked: bool | None = None) -> tuple[str, str] | None:
    """No login on the loopback address unless `asked` (a reverse proxy on the same machine
    makes loopback reachable from afar); elsewhere always. The name and password are settings
    (GOVBUS_CONSOLE_USERNAME, GOVBUS_CONSOLE_PASSWORD), never options: options show in the
    process list."""
    if asked is False and not loopback(host):
        raise GovbusError(f"bound to {host}, the console always asks for a login; --no-login only on 127.0.0.1")
    if not asked and loopback(host):
        return None
    password = settings.console_password or ""
    if len(password) < 12:
        raise GovbusError(f"bound to {host}{' with --login' if asked else ''}, the console asks for a login: set "
                          f"{PASSWORD_VARIABLE} (12 characters or more; the name is {USERNAME_VARIABLE}, default "
                          f"{GOVERNANCE}), or bind to 127.0.0.1")
    return settings.console_username, password


@click.command("console")
@click.option("--host", help="Address to bind (default GOVBUS_CONSOLE_HOST, 127.0.0.1); any but loopback asks for a "
                             "login (GOVBUS_CONSOLE_PASSWORD).")
@click.option("--port", type=int, help=f"Port (default GOVBUS_CONSOLE_PORT, {DEFAULT_PORT}).")
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Serve HTTPS with this certificate (PEM), e.g. from `govbus certs create`.")
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Its private key (PEM).")
@click.option("--login/--no-login", "asked", default=None,
              help="Ask for a login even on loopback (behind a reverse proxy); the default asks only off loopback.")
def console(host: str | None, port: int | None, certfile: Path | None, keyfile: Path | None,
            asked: bool | None) -> None:
    """Serve the governance console: lineage, freshness now, what needs attention, and
    traceability of an entity's sharing records, live from the bus's own topics."""
    settings = get_settings()
    host, port = host or settings.console_host, port or settings.console_port
    serve(settings, host, port, login_for(settings, host, asked), certfile, keyfile)


def serve(settings: Settings, host: str, port: int, login: tuple[str, str] | None,
          certfile: Path | None = None, keyfile: Path | None = None) -> None:
    """Read the bus and serve the page until SIGINT or SIGTERM; then stop reading."""
    import uvicorn

    from govbus.console.live import Live
    from govbus.console.web import application
    from govbus.schemas.registry import default_registry

    reader = governance_settings(settings)
    live = Live(reader, load_catalog(reader.catalog_dir)).start()
    try:
        config = uvicorn.Config(application(live, default_registry(), login), host=host, port=port,
                                log_level="warning", access_log=False, ssl_certfile=certfile, ssl_keyfile=keyfile,
                                timeout_graceful_shutdown=5)
        scheme = "https" if certfile else "http"
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"govbus console at {scheme}://{shown}:{port}/ (reading the bus as {reader.sasl_username}"
                   + (", login required" if login else "") + ")", err=True)
        _server_class()(config).run()
    finally:
        live.stop()


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but a stop asked for (SIGTERM, Ctrl-C) ends with exit 0 once the
        requests in hand are answered: uvicorn raises the signal again after its graceful stop,
        which `docker compose stop` and the tests would read as a crash."""

        def handle_exit(self, sig: int, frame: object) -> None:
            super().handle_exit(sig, frame)  # type: ignore[arg-type]
            self._captured_signals.clear()

    return Server
