"""`govbus conflicts list | verdict`: the authoritative department verifies the conflicts about
its fields (多元校核), logged in as itself."""

from __future__ import annotations

import click

from govbus.processors.governance import conflicts as sdk
from govbus.settings import get_settings


@click.group("conflicts")
def conflicts() -> None:
    """Conflicts about the logged-in department's fields, and its verdicts."""


def _show(conflict: sdk.Conflict) -> None:
    record = conflict.record
    outcome = "open" if conflict.open else f"{conflict.verdict['verdict']} by {conflict.verdict['by']}"  # type: ignore[index]
    click.echo(f"{conflict.id}  {conflict.field}: {conflict.authority} says {record.get('authoritative_value')!r}, "
               f"{conflict.reported_by} says {record.get('reported_value')!r}  [{outcome}]")


@conflicts.command("list")
@click.option("--open", "open_only", is_flag=True, help="Only those without a verdict.")
def list_command(open_only: bool) -> None:
    """The conflicts the logged-in principal may read (a department: those about its fields)."""
    found = sdk.list_conflicts(get_settings(), open_only=open_only)
    for conflict in found:
        _show(conflict)
    click.echo(f"{len(found)} conflict(s).")


@conflicts.command()
@click.argument("conflict_id")
@click.option("--verdict", required=True, type=click.Choice(sdk.VERDICT_KINDS),
              help="kept (our value is right), corrected (we publish the right value), source_told.")
@click.option("--note", help="What was checked, for the record.")
def verdict(conflict_id: str, verdict: str, note: str | None) -> None:
    """Close a conflict about one of the logged-in department's fields."""
    _show(sdk.give_verdict(get_settings(), conflict_id, verdict, note))
