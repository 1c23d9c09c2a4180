"""`govbus subscriptions …` (the one application channel) and `govbus audit …` (sharing records)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from govbus import clients
from govbus.processors.governance import acts
from govbus.processors.governance import audit
from govbus.processors.governance import control
from govbus.reading import read_topic
from govbus.processors.governance.subscriptions import SubscriptionRequest, describe
from govbus.settings import get_settings
from govbus.topics.catalog import load_catalog
from govbus.topics.names import AUDIT, AUDIT_ANCHORS, TopicNames


@click.group()
def subscriptions() -> None:
    """Request, approve, refuse, revoke and list subscriptions (control.subscriptions)."""


def _show(subscription) -> None:
    row = describe(subscription, datetime.now(timezone.utc))
    awaiting = f"; waiting for {', '.join(row['awaiting'])}" if row["awaiting"] else ""
    asked = ", ".join([*row["fields"], *(f"event {name}" for name in row["events"])])
    click.echo(f"{row['id']}: {row['state']} ({row['department']} ← {row['library']}: {asked}; "
               f"purpose {row['purpose']}; decided by {row['decided_by']} at {row['decided_at']:%Y-%m-%d %H:%M:%S}"
               + (f"; {row['reason']}" if row["reason"] else "") + awaiting + ")")
    for refusal in subscription.refusals:
        click.echo(f"  refused: {refusal.by} wanted {refusal.wanted} at {refusal.at:%Y-%m-%d %H:%M:%S}: {refusal.reason}")


@subscriptions.command()
@click.option("--library", "-l", required=True)
@click.option("--fields", default="", help="Comma-separated field names.")
@click.option("--event", "events", multiple=True,
              help="A life event of the library (population: death, moved_out, marriage, divorce; legal_entity: "
                   "deregistered; certificate: revoked), with or without fields.")
@click.option("--purpose", required=True, help="administrative_basis, data_verification, work_reference, …")
@click.option("--filter", "filters", multiple=True,
              help="Row filter, e.g. region=6101.. (the library's region field, by prefix) or field=value.")
@click.option("--until", type=click.DateTime(formats=["%Y-%m-%d"]), help="Last day of validity.")
def request(library: str, fields: str, events: tuple[str, ...], purpose: str, filters: tuple[str, ...],
            until: datetime | None) -> None:
    """Apply for data or life events as the logged-in department (GOVBUS_SASL_USERNAME): judged
    at once (refused, approved automatically, or waiting for the fields' authoritative departments)."""
    settings = get_settings()
    asked_fields = tuple(name.strip() for name in fields.split(",") if name.strip())
    if not asked_fields and not events:
        raise click.UsageError("ask for --fields, --event, or both")
    asked = SubscriptionRequest(department=acts.principal(settings), library=library, purpose=purpose,
                                filters=filters, until=until.date() if until else None,
                                fields=asked_fields, events=events)
    subscription = control.request(settings, asked)
    _show(subscription)
    if subscription.state == "refused":
        raise SystemExit(1)


@subscriptions.command()
@click.argument("subscription_id")
@click.option("--reason")
def approve(subscription_id: str, reason: str | None) -> None:
    """Approve a pending request, as the logged-in department (an authority of its conditional fields)."""
    _show(control.approve(get_settings(), subscription_id, reason=reason))


@subscriptions.command()
@click.argument("subscription_id")
@click.option("--reason", required=True)
def refuse(subscription_id: str, reason: str) -> None:
    """Refuse a pending request with a reason, as the logged-in authority (or governance, on policy)."""
    _show(control.refuse(get_settings(), subscription_id, reason=reason))


@subscriptions.command()
@click.argument("subscription_id")
@click.option("--reason")
def revoke(subscription_id: str, reason: str | None) -> None:
    """Withdraw a subscription, as its authority, its subscriber or governance: deliveries stop at once."""
    _show(control.revoke(get_settings(), subscription_id, reason=reason))


@subscriptions.command("list")
@click.option("--department", "-d")
@click.option("--library", "-l")
@click.option("--json", "as_json", is_flag=True)
def list_command(department: str | None, library: str | None, as_json: bool) -> None:
    """Every subscription with its state and who decided when."""
    found = [s for s in control.read_all(get_settings()).values()
             if (not department or s.department == department) and (not library or s.library == library)]
    for subscription in sorted(found, key=lambda s: s.requested_at):
        if as_json:
            click.echo(json.dumps(describe(subscription, datetime.now(timezone.utc)), default=str, ensure_ascii=False))
        else:
            _show(subscription)


@click.group("audit")
def audit_group() -> None:
    """The sharing records (共享记录) in audit.deliveries."""


@audit_group.command()
def verify() -> None:
    """Check every hash chain, anchored to the heads the router stored (audit.heads.*) and to
    the heads governance published (control.audit_anchors); report the first break exactly."""
    settings = get_settings()
    result = verify_bus(settings)
    if result.ok:
        click.echo(f"All {result.checked} sharing records verified in {len(result.heads)} chain(s), anchored to "
                   f"{result.anchored} stored and published head(s)"
                   + (f"; {len(result.duplicates)} harmless re-sent duplicate(s)" if result.duplicates else "") + ".")
        return
    found = result.first_break
    click.echo(f"BROKEN at record {found.position} of chain {found.chain}: {found.kind}: {found.message}")
    raise SystemExit(1)


@audit_group.command()
def publish() -> None:
    """As governance, periodically (say daily): verify the chains, then publish every chain's
    head to control.audit_anchors, which only governance writes; later verifications check
    that the chains still hold them, so a re-hashed tail cannot pass."""
    settings = get_settings()
    result = verify_bus(settings)
    if not result.ok:
        found = result.first_break
        click.echo(f"Not published: BROKEN at record {found.position} of chain {found.chain}: {found.message}")
        raise SystemExit(1)
    producer = clients.producer(settings)
    try:
        producer.send(TopicNames(settings.topic_prefix).bus(AUDIT_ANCHORS), key=b"anchors",
                      value=audit.publication(result.heads, datetime.now(timezone.utc), settings.sasl_username))
        producer.flush()
    finally:
        producer.close()
    click.echo(f"Published the heads of {len(result.heads)} chain(s) after verifying {result.checked} records.")


def verify_bus(settings) -> audit.Verification:
    """`audit.verify_anchored` over the bus's records: the heads stored before the records are
    read must be in them, none may follow the heads stored after, and governance's published
    heads must all be there."""
    names = TopicNames(settings.topic_prefix)
    stored_before = read_heads(settings)
    records = read_audit(settings)
    stored_after = read_heads(settings)
    published = [message.value for message in read_topic(settings, names.bus(AUDIT_ANCHORS))]
    anchors = audit.stored_anchors(stored_before) + audit.published_anchors(published)
    return audit.verify_anchored(records, anchors, stored_after)


def read_heads(settings) -> dict[str, str]:
    """Chain → head hash, as the routers stored them in audit.heads.<library> (the latest
    per key; backfill markers and anything not a hash left out)."""
    names, heads = TopicNames(settings.topic_prefix), {}
    for library in load_catalog(settings.catalog_dir).libraries:
        for message in read_topic(settings, names.audit_heads(library)):
            key, value = (message.key or b"").decode(errors="replace"), message.value or b""
            if key.startswith(f"{library}/") and len(value) == 64 and all(c in b"0123456789abcdef" for c in value):
                heads[key] = value.decode()
    return heads


@audit_group.command()
@click.option("--department", "-d")
@click.option("--entity", "-e", "entity_id")
@click.option("--library", "-l")
def query(department: str | None, entity_id: str | None, library: str | None) -> None:
    """Who received which entity's data, when, for what purpose: one line per delivery."""
    rows = audit.query(read_audit(get_settings()), department=department, entity_id=entity_id, library=library)
    for row in rows:
        masked = f" (masked: {', '.join(row['masked'])})" if row["masked"] else ""
        click.echo(f"{row['delivered_at']}  {row['department']:<20} {row['library']}:{row['entity_id']} v{row['version']}  "
                   f"purpose {row['purpose']}  subscription {row['subscription']}  fields {', '.join(row['fields'])}{masked}")
    click.echo(f"{len(rows)} deliveries recorded.")


def read_audit(settings) -> list[bytes]:
    """Every sharing record, partition by partition in offset order (a chain lives in one partition)."""
    return [message.value for message in read_topic(settings, TopicNames(settings.topic_prefix).bus(AUDIT))]
