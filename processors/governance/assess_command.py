"""`govbus assess`: the assessment (数据更新考核) of a period, as a table, CSV, JSON or HTML."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import click

from govbus.errors import GovbusError
from govbus.processors.governance.assessment import collect
from govbus.processors.governance.assessment_report import FORMATS, render
from govbus.schemas.rules import CHINA_TIME
from govbus.settings import get_settings
from govbus.topics.catalog import load_catalog


def parse_moment(text: str | None, option: str) -> datetime | None:
    """ISO date or time; without a zone it is China time (the time the assessors live in)."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise GovbusError(f"{option} {text!r} is not an ISO date or time, e.g. 2025-03-01 or 2025-03-01T08:00+08:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=CHINA_TIME)


@click.command("assess")
@click.option("--from", "start", metavar="ISO", help="Start of the period (default: everything the bus kept).")
@click.option("--to", "end", metavar="ISO", help="End of the period, exclusive (default: now).")
@click.option("--format", "form", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file, not the terminal.")
def assess(start: str | None, end: str | None, form: str, output: Path | None) -> None:
    """Assess each department's publishing and each library's freshness over a period.

    Per department: changes published, share within the lateness SLA, lateness percentiles,
    rejected share, conflicts, objections and the median time to answer them. Per library:
    how many departments receive it and how fresh the deliveries are.
    """
    settings = get_settings()
    begin, finish = parse_moment(start, "--from"), parse_moment(end, "--to") or datetime.now(timezone.utc)
    if begin is not None and begin >= finish:
        raise GovbusError(f"--from {start} is not before --to {end or 'now'}; give a period that starts before it ends")
    text = render(collect(settings, load_catalog(settings.catalog_dir), begin, finish), form)
    if output is None:
        click.echo(text)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote the {form} assessment to {output}", err=True)
