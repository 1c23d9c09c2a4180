"""`govbus topics apply | list`."""

from __future__ import annotations

import click

from govbus import clients
from govbus.settings import get_settings
from govbus.topics import apply as topic_apply
from govbus.topics.catalog import load_catalog
from govbus.topics.names import TopicNames


@click.group()
def topics() -> None:
    """The topic catalog (topics/*.yaml) against the cluster."""


@topics.command("apply")
@click.option("--prefix", default=None, help="Namespace every topic name (default: GOVBUS_TOPIC_PREFIX).")
@click.option("--delete-unknown", is_flag=True, help="Also delete bus topics the catalog does not name.")
def apply_command(prefix: str | None, delete_unknown: bool) -> None:
    """Create missing topics, raise partition counts, alter configs. Never deletes unless asked."""
    settings = get_settings()
    catalog = load_catalog(settings.catalog_dir)
    names = TopicNames(settings.topic_prefix if prefix is None else prefix)
    admin = clients.admin(settings)
    try:
        specs = topic_apply.desired_topics(catalog, names, admin)
        changes = topic_apply.apply(admin, topic_apply.compare(admin, specs))
        unknown = topic_apply.unknown_topics(admin, specs, names)
        if unknown and delete_unknown:
            admin.delete_topics(unknown)
            changes += [f"deleted {topic}" for topic in unknown]
        elif unknown:
            click.echo(f"{len(unknown)} topic(s) not in the catalog were left alone "
                       f"(use --delete-unknown to delete them): {', '.join(unknown)}")
    finally:
        admin.close()
    for line in changes:
        click.echo(line)
    click.echo(f"{len(changes)} change(s) made." if changes else f"Nothing to change: all {len(specs)} topics are in sync.")


@topics.command("list")
@click.option("--prefix", default=None, help="Topic prefix (default: GOVBUS_TOPIC_PREFIX).")
def list_command(prefix: str | None) -> None:
    """Show each catalog topic as missing, drifted or in sync."""
    settings = get_settings()
    prefix = settings.topic_prefix if prefix is None else prefix
    catalog = load_catalog(settings.catalog_dir)
    admin = clients.admin(settings)
    try:
        comparisons = topic_apply.compare(admin, topic_apply.desired_topics(catalog, TopicNames(prefix), admin))
    finally:
        admin.close()
    width = max(len(c.spec.name) for c in comparisons)
    for comparison in comparisons:
        detail = comparison.describe()
        click.echo(f"{comparison.spec.name:<{width}}  {comparison.state:<8}  {detail}".rstrip())


@click.group()
def acl() -> None:
    """Broker ACLs derived from the catalog and the subscriptions."""


@acl.command("apply")
@click.option("--prefix", default=None, help="Topic prefix (default: GOVBUS_TOPIC_PREFIX).")
@click.option("--dry-run", is_flag=True, help="Show the difference only.")
def acl_apply(prefix: str | None, dry_run: bool) -> None:
    """Show, then apply, the difference between the derived ACLs and the broker's."""
    from govbus.processors.governance import control
    from govbus.topics import acls

    settings = get_settings()
    names = TopicNames(settings.topic_prefix if prefix is None else prefix)
    subscriptions = control.read_all(settings.model_copy(update={"topic_prefix": names.prefix})).values()
    admin = clients.admin(settings)
    try:
        added, removed = acls.reconcile(admin, load_catalog(settings.catalog_dir), names, subscriptions, dry_run=dry_run)
    finally:
        admin.close()
    for grant in added:
        click.echo(f"+ {grant.describe()}")
    for grant in removed:
        click.echo(f"- {grant.describe()}")
    verb = "would change" if dry_run else "changed"
    click.echo(f"{len(added)} added, {len(removed)} removed ({verb})." if added or removed else "ACLs are in sync.")
