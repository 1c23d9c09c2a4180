"""`govbus subscribe` (a department's local current view), `govbus events` (the life events
its store logged) and `govbus objections …`."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from govbus import clients, collector
from govbus.consumers import objections as sdk
from govbus.consumers.corrections import parse_correction
from govbus.consumers.progress import LibraryStatus
from govbus.consumers.stores import StoreError, open_store
from govbus.consumers.stores.sqlite import MEMORY, path_from_url
from govbus.consumers.subscriber import Subscriber, SubscriberError
from govbus.schemas.registry import default_registry
from govbus.settings import Settings, get_settings
from govbus.topics.names import TopicNames


def store_url(value: str) -> str:
    """A URL as given, or a bare file path as a SQLite store (the default kind)."""
    if "://" in value:
        return value
    return f"sqlite:///{value}"


def delivered_libraries(settings: Settings, department: str) -> list[str]:
    """The libraries the department has a delivery topic for (made when a subscription is approved)."""
    names = TopicNames(settings.topic_prefix)
    consumer = clients.consumer(settings)
    try:
        topics = consumer.topics()
    finally:
        consumer.close()
    return [library for library in default_registry().libraries() if names.deliver(department, library) in topics]


def status_line(statuses: list[LibraryStatus]) -> str:
    parts = []
    for s in statuses:
        if s.waiting:
            parts.append(f"{s.library}: waiting for {s.topic}")
            continue
        as_of = f"{s.as_of.astimezone():%Y-%m-%d %H:%M:%S}" if s.as_of else "—"
        lag = "?" if s.lag is None else f"{s.lag:,}"
        extra = "".join(f", {count:,} {what}" for what, count in (
            ("life events", s.events), ("ignored", s.ignored), ("rejected", s.rejected)) if count)
        ended = (f", not current since {s.ended_at.astimezone():%Y-%m-%d %H:%M:%S}: every subscription to it "
                 "expired or was revoked (a new request renews it)") if s.ended_at else ""
        parts.append(f"{s.library}: {s.applied:,} applied{extra}, lag {lag}, current as of {as_of}{ended}")
    return " | ".join(parts)


@contextmanager
def stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM set `stop` instead of interrupting a batch half-way."""
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command()
@click.option("--department", "-d", required=True, help="The subscribing department.")
@click.option("--library", "-l", "libraries", multiple=True,
              help="A library to keep (repeatable). Default: every library the department has deliveries of.")
@click.option("--store", "store", default=None, help="sqlite:///path.db, postgresql://user@host/db, or a file path "
                                                    "(SQLite). Default: <department>.db here.")
@click.option("--replay-from", help="beginning (rebuild the store), an ISO time, or an offset (per partition).")
@click.option("--once", is_flag=True, help="Apply what is there now, then exit.")
@click.option("--every", default=10.0, show_default=True, help="Seconds between status lines when not on a terminal.")
def subscribe(department: str, libraries: tuple[str, ...], store: str | None, replay_from: str | None, once: bool,
              every: float) -> None:
    """Keep a local current view of what DEPARTMENT receives, until stopped (Ctrl-C, SIGTERM)."""
    settings = get_settings()
    chosen = list(libraries) or delivered_libraries(settings, department)
    if not chosen:
        raise SubscriberError(f"{department} has no delivery topics yet: request a subscription "
                              "(`govbus subscriptions request`) and wait for its approval")
    terminal = sys.stderr.isatty()
    with Subscriber(settings, department, chosen, store_url(store or f"{department}.db"),
                    replay_from=replay_from) as subscriber:
        collector.tune()  # a subscriber applies big batches: see govbus.collector
        click.echo(f"{department}: keeping {', '.join(chosen)} in {store or f'{department}.db'}"
                   + (f", replaying {subscriber.replay.describe()}" if subscriber.replay else "") + ".", err=True)
        if once:
            subscriber.catch_up()
        else:
            _follow(subscriber, terminal, every)
        final = status_line(subscriber.status())
    click.echo(("\n" if terminal and not once else "") + final)


def _follow(subscriber: Subscriber, terminal: bool, every: float) -> None:
    stop, shown = threading.Event(), 0.0
    with stopped_by_signals(stop):
        while not stop.is_set():
            subscriber.poll_once(timeout_ms=500)
            now = time.monotonic()
            if now - shown >= (0.5 if terminal else every):
                shown = now
                line = status_line(subscriber.status())
                click.echo(f"\r{line}\x1b[K" if terminal else f"{datetime.now():%H:%M:%S} {line}", nl=not terminal, err=True)


def existing_store(value: str) -> str:
    """The store's URL; a SQLite file must exist, so that a mistyped path is said, not made empty."""
    url = store_url(value)
    if url.startswith("sqlite:") and path_from_url(url) != MEMORY and not Path(path_from_url(url)).is_file():
        raise StoreError(f"no store at {path_from_url(url)}: `govbus subscribe --store {value}` makes and fills it")
    return url


def iso(value: Any) -> str:
    """Dates and times in JSON as ISO-8601, as the store keeps them (``json.dumps``' default)."""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def event_line(event: dict[str, Any]) -> str:
    """One life event as `govbus events` shows it: when delivered, what, whom, the payload."""
    delivered = f"{event['delivered_at'].astimezone():%Y-%m-%d %H:%M:%S}" if event["delivered_at"] else "—"
    payload = json.dumps(event["payload"], default=iso, ensure_ascii=False)
    masked = f" (masked: {', '.join(event['masked'])})" if event["masked"] else ""
    return (f"{delivered}  {event['library']}.{event['event']}  {event['entity_id']} v{event['version']}  "
            f"on {event['event_date'] or '—'}  {payload}{masked}  [{event['subscription_id'] or 'no subscription'}]")


@click.command()
@click.option("--store", "store", required=True, help="The subscriber's store: sqlite:///path.db, "
                                                      "postgresql://user@host/db, or a file path (SQLite).")
@click.option("--library", "-l", help="Only this library's events.")
@click.option("--event", "-e", "event", help="Only events of this name (e.g. death).")
@click.option("--subscription", help="Only events delivered under this subscription.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def events(store: str, library: str | None, event: str | None, subscription: str | None, as_json: bool) -> None:
    """The life events a subscriber's store logged (deaths, deregistrations, …), as they arrived.
    They are kept apart from the current view: each tells that something happened."""
    with open_store(existing_store(store)) as opened:
        found = opened.events(library=library, subscription_id=subscription, event=event)
    for logged in found:
        click.echo(json.dumps(logged, default=iso, ensure_ascii=False) if as_json else event_line(logged))
    if not as_json:
        click.echo(f"{len(found)} life event(s).")


@click.group("objections")
def objections() -> None:
    """Objections (疑义、错误信息校核): flag a wrong value to its authoritative department."""


def _show(objection: sdk.Objection) -> None:
    outcome = {"open": "open",
               "resolved": f"resolved by {objection.answered_by}: correction {objection.correction_event_id} published",
               "rejected": f"rejected by {objection.answered_by}: {objection.answer}"}[objection.state]
    click.echo(f"{objection.id}  {objection.raised_at:%Y-%m-%d %H:%M:%S}  {objection.raised_by} → {objection.owner}  "
               f"{objection.library}:{objection.entity_id}.{objection.field}  \"{objection.reason}\"  [{outcome}]")


@objections.command("raise")
@click.option("--library", "-l", required=True)
@click.option("--entity", "-e", required=True, help="The entity id as delivered (a real id or a p-… pseudonym).")
@click.option("--field", "-f", required=True)
@click.option("--reason", required=True, help="What is wrong, as the owner should read it.")
@click.option("--subscription", help="The subscription the entity was delivered under (needed for a pseudonym).")
@click.option("--event-id", help="The delivery's event id, if known.")
def raise_command(library: str, entity: str, field: str, reason: str, subscription: str | None,
                  event_id: str | None) -> None:
    """Flag a field of an entity as wrong, as the logged-in department; it goes to the field's
    authoritative department."""
    _show(sdk.raise_objection(get_settings(), library, entity, field, reason,
                              subscription=subscription, event_id=event_id))


@objections.command("list")
@click.option("--owner", help="Objections this department has to answer.")
@click.option("--raised-by", help="Objections this department raised, with their outcome.")
@click.option("--state", type=click.Choice(sdk.STATES))
def list_command(owner: str | None, raised_by: str | None, state: str | None) -> None:
    """Objections the logged-in principal may read (a department: its own), oldest first."""
    found = sdk.list_objections(get_settings(), owner=owner, raised_by=raised_by, state=state)
    for objection in found:
        _show(objection)
    click.echo(f"{len(found)} objection(s).")


@objections.command()
@click.argument("objection_id")
@click.option("--correction", required=True, help="The right value (text; JSON for numbers, lists, true/false).")
def resolve(objection_id: str, correction: str) -> None:
    """Publish the corrected value and close the objection, as the logged-in authority."""
    settings = get_settings()
    objection = sdk.find(settings, objection_id)
    policy = default_registry().policy(objection.library)[objection.field]
    _show(sdk.resolve(settings, objection_id, parse_correction(policy, correction)))


@objections.command()
@click.argument("objection_id")
@click.option("--reason", required=True, help="Why the value stands.")
def reject(objection_id: str, reason: str) -> None:
    """Answer that the value is right, with the reason, as the logged-in authority."""
    _show(sdk.reject(get_settings(), objection_id, reason))
