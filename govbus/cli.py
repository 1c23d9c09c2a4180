"""`govbus`: one command for everything; each area keeps its subcommands beside its code."""

from __future__ import annotations

import logging
import sys

import click

from govbus import redaction
from govbus.errors import GovbusError


class _Group(click.Group):
    """Prints a user's mistake as one clear message and exit 1, not as a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except GovbusError as error:
            raise click.ClickException(str(error)) from error


@click.group(cls=_Group)
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level, the Kafka client's retries included.")
def main(verbose: bool) -> None:
    """govbus: the event-driven exchange bus for government data sharing.

    Configure with GOVBUS_* environment variables (or a govbus.env file), e.g.
    GOVBUS_BOOTSTRAP_SERVERS=127.0.0.1:9092.
    """
    configure_logging(verbose)


def configure_logging(verbose: bool) -> None:
    """Debug level with -v; either way no password reaches the log (``govbus.redaction``)."""
    redaction.install()
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:  # the Kafka client logs transient retries as errors; our messages say what failed
        logging.getLogger("kafka").setLevel(logging.CRITICAL)


def _register() -> None:
    from govbus.bench.commands import bench
    from govbus.broker.commands import broker
    from govbus.console.commands import console
    from govbus.consumers.commands import events, objections, subscribe
    from govbus.demo import demo
    from govbus.processors.governance.assess_command import assess
    from govbus.processors.commands import dlq, processors
    from govbus.processors.governance.conflict_commands import conflicts
    from govbus.processors.governance.control_commands import audit_group, subscriptions
    from govbus.producers.commands import generate, publish, rejections
    from govbus.schemas.commands import schemas
    from govbus.security.commands import certs, departments
    from govbus.simulate.commands import simulate
    from govbus.topics.commands import acl, topics

    for command in (broker, topics, acl, departments, certs, schemas, generate, publish, rejections, processors, dlq, subscriptions, audit_group, subscribe, events, objections, conflicts, assess, console, demo, bench, simulate):
        main.add_command(command)


_register()


if __name__ == "__main__":
    main()
