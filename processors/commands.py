"""`govbus processors run | health` and `govbus dlq list | replay`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import click

from govbus.errors import GovbusError
from govbus.processors.governance import replay as replay_plan
from govbus.settings import get_settings
from govbus.topics.names import TopicNames


@click.group()
def processors() -> None:
    """The stream processors: the gate and the router (batched, confluent-kafka) and freshness (faust)."""


@processors.command("run")
@click.argument("names", nargs=-1, required=True)
@click.option("--loglevel", default="info", type=click.Choice(["crit", "error", "warn", "info", "debug"]), show_default=True)
def run_command(names: tuple[str, ...], loglevel: str) -> None:
    """Run processors in one worker: gate, router, freshness, or all (as govbus-processors);
    authority, in a worker of its own logged in as govbus-authority.

    Workers started with the same processors share the work through their consumer group;
    start more of them to scale out (up to the number of partitions).
    """
    from govbus.processors.runtime.worker import PROCESSORS, SEPARATE, run

    chosen = list(PROCESSORS) if "all" in names else list(names)
    unknown = [name for name in chosen if name not in (*PROCESSORS, *SEPARATE)]
    if unknown:
        raise click.BadParameter(f"unknown processor(s) {', '.join(unknown)}; choose from "
                                 f"{', '.join((*PROCESSORS, *SEPARATE))} or all")
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


def _choice_options(command):
    """The filters `dlq list` and `dlq replay` share: reason, source department, rejection time."""
    for option in reversed([
        click.option("--reason", help="Only this reason code (see `dlq list`)."),
        click.option("-d", "--department", help="Only the events this source department sent."),
        click.option("--since", help="Only those rejected at or after this time (ISO 8601 with an offset)."),
        click.option("--until", help="Only those rejected before this time (ISO 8601 with an offset)."),
    ]):
        command = option(command)
    return command


def _choice(reason: str | None, department: str | None, since: str | None, until: str | None) -> replay_plan.Choice:
    try:
        return replay_plan.Choice(reason, department, replay_plan.parse_time(since, "--since"),
                                  replay_plan.parse_time(until, "--until"))
    except GovbusError as error:
        raise click.BadParameter(str(error)) from error


def _read(library: str) -> tuple[TopicNames, list[replay_plan.DeadLetter], set[str]]:
    settings = get_settings()
    names = TopicNames(settings.topic_prefix)
    try:
        return (names, replay_plan.dead_letters(settings, names, library),
                replay_plan.replayed_marks(settings, names, library))
    except GovbusError as error:
        raise click.ClickException(str(error)) from error


@dlq.command("list")
@click.argument("library")
@_choice_options
@click.option("--all", "everything", is_flag=True, help="Also those already replayed.")
def list_command(library: str, reason: str | None, department: str | None, since: str | None, until: str | None,
                 everything: bool) -> None:
    """List the dead letters of a library not yet replayed: where from, when, why."""
    names, letters, marks = _read(library)
    choice = _choice(reason, department, since, until)
    shown = hidden = 0
    for letter in letters:
        if not choice.admits(letter, names):
            continue
        replayed = letter.mark in marks
        if replayed and not everything:
            hidden += 1
            continue
        shown += 1
        info = letter.info
        click.echo(f"{letter.mark}  {info.get('time', '?')}  {letter.reason:<22} "
                   f"from {info.get('topic', '?')}[{info.get('partition', '?')}]@{info.get('offset', '?')}"
                   f"{'  (replayed)' if replayed else ''}  {info.get('detail', '')}")
    click.echo(f"{shown} dead letter(s)." + (f" {hidden} already replayed (--all shows them)." if hidden else ""))


@dlq.command()
@click.argument("library")
@_choice_options
@click.option("--dry-run", is_flag=True, help="Say what would be sent; send nothing, mark nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def replay(library: str, reason: str | None, department: str | None, since: str | None, until: str | None,
           dry_run: bool, yes: bool) -> None:
    """Send dead letters back to the topic they came from, once their cause is fixed.

    Each letter is sent once: a mark in dlq.<library>.replayed, written in the same transaction,
    keeps a second run from sending it again. The gate judges it again: what is still wrong
    comes back as a new dead letter with its reason (and the next replay offers that one), and
    an event that was applied meanwhile is recognised by its sequence and not applied twice.
    """
    names, letters, marks = _read(library)
    chosen = replay_plan.plan(letters, marks, _choice(reason, department, since, until), names)
    for letter, problem in chosen.unsendable:
        click.echo(f"cannot replay {letter.mark} ({letter.reason}): {problem}", err=True)
    if chosen.already_replayed:
        click.echo(f"{chosen.already_replayed} chosen dead letter(s) were replayed before; not sent again.")
    if not chosen.send:
        click.echo("No dead letters to replay.")
        return
    if dry_run:
        for letter in chosen.send:
            click.echo(f"would replay {letter.mark}  {letter.reason:<22} to {letter.origin}")
        click.echo(f"Dry run: {len(chosen.send)} dead letter(s) would be replayed; nothing sent.")
        return
    if not yes:
        click.confirm(f"Replay {len(chosen.send)} dead letter(s) of {library}?", abort=True)
    try:
        replay_plan.send(get_settings(), names, library, chosen.send)
    except GovbusError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Replayed {len(chosen.send)} dead letter(s).")
