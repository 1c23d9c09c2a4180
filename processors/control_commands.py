"""`govbus subscriptions …` (the one application channel) and `govbus audit …` (sharing records)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from govbus.processors import audit, control
from govbus.reading import read_topic
from govbus.processors.subscriptions import SubscriptionRequest, describe
from govbus.settings import get_settings
from govbus.topics.names import AUDIT, TopicNames


@click.group()
def subscriptions() -> None:
    """Request, approve, refuse, revoke and list subscriptions (control.subscriptions)."""


def _show(subscription) -> None:
    row = describe(subscription, datetime.now(timezone.utc))
    click.echo(f"{row['id']}: {row['state']} ({row['department']} ← {row['library']}: {', '.join(row['fields'])}; "
               f"purpose {row['purpose']}; decided by {row['decided_by']} at {row['decided_at']:%Y-%m-%d %H:%M:%S}"
               + (f"; {row['reason']}" if row["reason"] else "") + ")")


@subscriptions.command()
@click.option("--department", "-d", required=True, help="The department asking for data.")
@click.option("--library", "-l", required=True)
@click.option("--fields", required=True, help="Comma-separated field names.")
@click.option("--purpose", required=True, help="administrative_basis, data_verification, work_reference, …")
@click.option("--filter", "filters", multiple=True, help="Row filter, e.g. household_region=6101.. (prefix) or field=value.")
@click.option("--until", type=click.DateTime(formats=["%Y-%m-%d"]), help="Last day of validity.")
def request(department: str, library: str, fields: str, purpose: str, filters: tuple[str, ...], until: datetime | None) -> None:
    """Apply for data: judged at once (refused, approved automatically, or waiting for the owner)."""
    asked = SubscriptionRequest(department=department, library=library, purpose=purpose, filters=filters,
                                fields=tuple(name.strip() for name in fields.split(",") if name.strip()),
                                until=until.date() if until else None)
    subscription = control.request(get_settings(), asked)
    _show(subscription)
    if subscription.state == "refused":
        raise SystemExit(1)


@subscriptions.command()
@click.argument("subscription_id")
@click.option("--by", required=True, help="The approving department (the library's owner).")
@click.option("--reason")
def approve(subscription_id: str, by: str, reason: str | None) -> None:
    """Approve a pending request (the owner only)."""
    _show(control.approve(get_settings(), subscription_id, by, reason))


@subscriptions.command()
@click.argument("subscription_id")
@click.option("--by", required=True)
@click.option("--reason", required=True)
def refuse(subscription_id: str, by: str, reason: str) -> None:
    """Refuse a pending request with a reason (the owner only)."""
    _show(control.refuse(get_settings(), subscription_id, by, reason))


@subscriptions.command()
@click.argument("subscription_id")
@click.option("--by", required=True)
@click.option("--reason")
def revoke(subscription_id: str, by: str, reason: str | None) -> None:
    """Withdraw a subscription: deliveries stop at once."""
    _show(control.revoke(get_settings(), subscription_id, by, reason))


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
    """Check every hash chain; report the first break exactly."""
    records = read_audit(get_settings())
    result = audit.verify(records)
    if result.ok:
        click.echo(f"All {result.checked} sharing records verified in {len(result.heads)} chain(s)"
                   + (f"; {len(result.duplicates)} harmless re-sent duplicate(s)" if result.duplicates else "") + ".")
        return
    found = result.first_break
    click.echo(f"BROKEN at record {found.position} of chain {found.chain}: {found.kind}: {found.message}")
    raise SystemExit(1)


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
