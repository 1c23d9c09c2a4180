"""`govbus processors run | health` and `govbus dlq list | replay`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import click

from govbus import clients
from govbus.processors import deadletters
from govbus.settings import get_settings
from govbus.topics.names import TopicNames


@click.group()
def processors() -> None:
    """The stream processors: the gate and the router (batched, confluent-kafka) and freshness (faust)."""


@processors.command("run")
@click.argument("names", nargs=-1, required=True)
@click.option("--loglevel", default="info", type=click.Choice(["crit", "error", "warn", "info", "debug"]), show_default=True)
def run_command(names: tuple[str, ...], loglevel: str) -> None:
    """Run processors in one worker: gate, router, freshness, or all.

    Workers started with the same processors share the work through their consumer group;
    start more of them to scale out (up to the number of partitions).
    """
    from govbus.processors.worker import PROCESSORS, run

    chosen = list(PROCESSORS) if "all" in names else list(names)
    unknown = [name for name in chosen if name not in PROCESSORS]
    if unknown:
        raise click.BadParameter(f"unknown processor(s) {', '.join(unknown)}; choose from {', '.join(PROCESSORS)} or all")
    run(get_settings(), chosen, loglevel)


@processors.command()
def health() -> None:
    """Ask the local worker whether it is ready (exit 0) or not (exit 1)."""
    port = get_settings().processor_port
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            body = json.load(answer)
    except urllib.error.HTTPError as error:
        body = json.load(error)
    except OSError as error:
        raise click.ClickException(f"no processor answers on 127.0.0.1:{port} ({error}); is one running?") from error
    click.echo(json.dumps(body, indent=2, ensure_ascii=False))
    raise SystemExit(0 if body.get("status") == "ready" else 1)


@click.group()
def dlq() -> None:
    """Dead letters: events a processor rejected, with their reasons."""


def _dead_letters(library: str, consumer_timeout_ms: int = 3000):
    settings = get_settings()
    topic = TopicNames(settings.topic_prefix).dlq(library)
    consumer = clients.consumer(settings, topic, consumer_timeout_ms=consumer_timeout_ms)
    try:
        yield from consumer
    finally:
        consumer.close()


@dlq.command("list")
@click.argument("library")
@click.option("--reason", help="Only this reason code.")
def list_command(library: str, reason: str | None) -> None:
    """List the dead letters of a library: where from, when, why."""
    shown = 0
    for message in _dead_letters(library):
        info = deadletters.describe(list(message.headers))
        if reason and info.get("reason") != reason:
            continue
        shown += 1
        click.echo(f"{message.partition}:{message.offset}  {info.get('time', '?')}  {info.get('reason', '?'):<22} "
                   f"from {info.get('topic', '?')}[{info.get('partition', '?')}]@{info.get('offset', '?')}  {info.get('detail', '')}")
    click.echo(f"{shown} dead letter(s).")


@dlq.command()
@click.argument("library")
@click.option("--reason", help="Only this reason code.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def replay(library: str, reason: str | None, yes: bool) -> None:
    """Send dead letters back to the topic they came from, once their cause is fixed.

    The gate judges them again: what is still wrong comes back here with its reason, and an
    event that was applied meanwhile is recognised by its sequence and not applied twice.
    """
    chosen = [m for m in _dead_letters(library)
              if not reason or deadletters.describe(list(m.headers)).get("reason") == reason]
    if not chosen:
        click.echo("No dead letters to replay.")
        return
    if not yes:
        click.confirm(f"Replay {len(chosen)} dead letter(s) of {library}?", abort=True)
    producer = clients.producer(get_settings())
    for message in chosen:
        origin = deadletters.describe(list(message.headers))["topic"]
        producer.send(origin, key=message.key, value=message.value, headers=deadletters.original_headers(list(message.headers)))
    producer.flush()
    producer.close()
    click.echo(f"Replayed {len(chosen)} dead letter(s).")
