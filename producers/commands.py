"""`govbus publish` and `govbus generate`."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import IO, Any

import click

from govbus.producers.files import detect_format, read_source, rejects_path
from govbus.producers.generate import generate as generate_records
from govbus.producers.progress import Progress, measure_input
from govbus.producers.publisher import Publisher
from govbus.schemas.registry import default_registry
from govbus.settings import get_settings
from govbus.topics.catalog import load_catalog

LIBRARY = click.Choice(["population", "legal_entity", "credit", "certificate"])


@click.command()
@click.argument("library", type=LIBRARY)
@click.option("--department", "-d", required=True, help="The publishing department (it writes its own ingest topic).")
@click.option("--input", "input_path", required=True, help="A .jsonl or .csv file, or - for standard input.")
@click.option("--format", "file_format", type=click.Choice(["jsonl", "csv"]), help="Input format (default: by file name).")
@click.option("--rejects", "rejects_file", type=click.Path(dir_okay=False), help="Where rejected records go (default: <input>.rejects.jsonl).")
@click.option("--source-system", default="govbus-cli", show_default=True)
def publish(library: str, department: str, input_path: str, file_format: str | None, rejects_file: str | None, source_system: str) -> None:
    """Validate and publish a file of change records; rejects are written with their reasons.

    The input is streamed, so a snapshot of tens of millions of records needs no more memory
    than a small file: `govbus generate population --op snapshot -n N | govbus publish
    population -d public_security --input -`.

    Progress goes to standard error. On a terminal, a live line: records published and
    rejected, records per second and, when the input is a file (or standard input redirected
    from one), the share read, the expected number of records and the time left, estimated
    from the rate of the bytes read. Standard input from a pipe has no size: records and rate
    only. When standard error is not a terminal, the same line is written every 10 s, so a
    job's log shows the load moving. The summary goes to standard output at the end.
    """
    settings = get_settings()
    catalog = load_catalog(settings.catalog_dir)
    catalog.require_department(department)
    if department not in catalog.library(library).sources:
        raise click.ClickException(f"{department} is not a source of {library}; the catalog's sources are "
                                   f"{', '.join(catalog.library(library).sources)}")
    stream: IO[str] = sys.stdin if input_path == "-" else open(input_path, encoding="utf-8-sig")  # noqa: SIM115
    rejects_target = Path(rejects_file) if rejects_file else rejects_path(input_path)
    reasons: Counter[str] = Counter()
    published = rejected = 0
    progress = Progress(sys.stderr, sys.stderr.isatty(), measure_input(stream))
    with stream, open(rejects_target, "w", encoding="utf-8") as rejects, \
            Publisher(settings, department, library, source_system=source_system) as publisher:
        publisher.connect()  # a wrong password, a missing ACL or topic: said once, before any record
        for line in read_source(stream, detect_format(input_path, file_format), library, default_registry()):
            problems: list[dict[str, Any]]
            if line.record is None:
                problems = [{"field": None, "value": line.raw, "rule": "parse", "message": line.error}]
            else:
                result = publisher.publish(line.record)
                problems = [{"field": v.field, "value": _jsonable(v.value), "rule": v.rule, "message": v.message} for v in result.violations]
            if problems:
                rejected += 1
                reasons.update(problem["rule"] for problem in problems)
                rejects.write(json.dumps({"line": line.number, "record": _jsonable(line.record), "violations": problems}, ensure_ascii=False) + "\n")
            else:
                published += 1
            progress.show(published, rejected)
        report = publisher.flush()
        for event_id, error in report.failures:
            rejected += 1
            reasons["delivery_failed"] += 1
            rejects.write(json.dumps({"event_id": event_id, "violations": [{"rule": "delivery_failed", "message": error}]}) + "\n")
    published -= len(report.failures)
    progress.finish(published, rejected)
    click.echo(f"{published:,} published to {publisher.topic}, {rejected:,} rejected"
               f" in {progress.elapsed():.1f} s.")
    if rejected:
        for reason, count in reasons.most_common():
            click.echo(f"  {reason}: {count:,}")
        click.echo(f"Rejected records and their reasons: {rejects_target}")
        raise SystemExit(1)
    if rejects_target.is_file():  # never a device or pipe the operator named, such as /dev/null
        rejects_target.unlink()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, ensure_ascii=False))


@click.command()
@click.argument("library", type=LIBRARY)
@click.option("--count", "-n", default=10, show_default=True)
@click.option("--seed", default=1, show_default=True, help="The same seed gives the same records.")
@click.option("--invalid-share", default=0.0, show_default=True, help="Share of records with an injected fault (0 to 1).")
@click.option("--department", "-d", help="Only the fields this department is the authoritative source for (plus the key).")
@click.option("--op", type=click.Choice(["upsert", "snapshot", "delete"]), default="upsert", show_default=True)
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-", help="Default: standard output.")
def generate(library: str, count: int, seed: int, invalid_share: float, department: str | None, op: str, output: IO[str]) -> None:
    """Realistic synthetic change records as JSON Lines (valid check digits, real division codes)."""
    if not 0.0 <= invalid_share <= 1.0:
        raise click.BadParameter("must be between 0 and 1", param_hint="--invalid-share")
    for record in generate_records(library, count, seed, invalid_share, department, op=op):
        output.write(json.dumps(record, ensure_ascii=False) + "\n")


@click.command()
@click.option("--department", "-d", help="Whose rejections (default: the principal logged in; a department reads only its own).")
@click.option("--reason", help="Only this reason code (e.g. duplicate_sequence, not_authoritative_delete, wrong_key).")
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]),
              help="Only those refused at or after this time (a time without offset is China time).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def rejections(department: str | None, reason: str | None, since: Any, as_json: bool) -> None:
    """What the gate refused of a department's events, and why (its control.rejections topic).

    The broker lets each department read only its own; governance reads them all.
    """
    from dataclasses import asdict

    from govbus.errors import GovbusError
    from govbus.producers.rejections import read
    from govbus.schemas.rules import CHINA_TIME

    settings = get_settings()
    who = department or settings.sasl_username
    load_catalog(settings.catalog_dir).require_department(who)
    moment = since.replace(tzinfo=since.tzinfo or CHINA_TIME) if since else None
    shown = 0
    try:
        for found in read(settings, who, reason=reason, since=moment):
            shown += 1
            click.echo(json.dumps(asdict(found), ensure_ascii=False) if as_json else found.line())
    except GovbusError as error:
        raise click.ClickException(str(error)) from None
    if not as_json:
        click.echo(f"{shown} rejection(s) of {who}'s events.")
