"""`govbus bench`: run the benchmark scenarios and write the results."""

from __future__ import annotations

import dataclasses
import importlib
import time
import traceback
from pathlib import Path
from typing import Any

import click

from govbus.bench import machine, report
from govbus.bench.context import Context, Sizes
from govbus.settings import PROJECT_ROOT, get_settings

SCENARIOS = ("hot_path", "fan_out", "ceiling", "topology", "end_to_end", "offered_load", "polling",
             "initial_load")  # in run order


@click.command()
@click.option("--scenario", "scenarios", multiple=True, type=click.Choice([*SCENARIOS, "all"]),
              default=("all",), show_default=True, help="Which to run; repeat for several.")
@click.option("--events", type=click.IntRange(min=10), default=None,
              help="Changes per scenario (end to end, ceiling, hot path); the others scale with it.")
@click.option("--full", is_flag=True, help="The issue's sizes (1,000,000-record initial load, minutes per rate).")
@click.option("--snapshot", type=click.IntRange(min=100), default=None,
              help="Records of the initial load and of the backfill after it (e.g. 1000000).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=PROJECT_ROOT / "bench" / "results",
              show_default=True, help="Where the JSON and Markdown results go.")
@click.option("--profile/--no-profile", default=True, show_default=True,
              help="Profile the hot path with pyinstrument (its reports go beside the results).")
def bench(scenarios: tuple[str, ...], events: int | None, full: bool, snapshot: int | None, out: Path,
          profile: bool) -> None:
    """Measure throughput and freshness of the bus against the Kafka ceiling and polling.

    Starts a throw-away secured local broker unless GOVBUS_BOOTSTRAP_SERVERS is set. The
    default sizes finish in a few minutes on two cores; --full runs the issue's sizes.
    """
    chosen = SCENARIOS if "all" in scenarios else tuple(name for name in SCENARIOS if name in scenarios)
    sizes = Sizes.full() if full else Sizes.small()
    if events is not None:
        sizes = sizes.scaled(events)
    if snapshot is not None:
        sizes = dataclasses.replace(sizes, snapshot=snapshot)
    out.mkdir(parents=True, exist_ok=True)
    context = Context(get_settings(), sizes, out)
    document: dict[str, Any] = {**machine.describe(), "parameters": {
        "size": "full" if full else ("small" if events is None else f"events-{events}"),
        "scenarios": list(chosen), "sizes": sizes.__dict__ | {"rates": list(sizes.rates),
                                                            "poll_intervals": list(sizes.poll_intervals)}},
        "results": {}}
    failed = []
    try:
        for name in chosen:
            click.echo(f"== {name}")
            started = time.monotonic()
            module = importlib.import_module(f"govbus.bench.scenarios.{name}")
            try:
                result = module.run(context, profile=profile) if name == "hot_path" else module.run(context)
            except Exception as error:  # noqa: BLE001 - report it, run the others
                failed.append(name)
                result = {"error": f"{type(error).__name__}: {error}"}
                click.echo(traceback.format_exc(), err=True)
            result["wall_seconds"] = round(time.monotonic() - started, 1)
            document["results"][name] = result
            click.echo(f"   done in {result['wall_seconds']} s")
    finally:
        context.close(keep_work=bool(failed))
        if failed:
            click.echo(f"logs of the failed run kept in {context.work}", err=True)
    document["machine"]["python_speed_us_at_end"] = machine.python_speed()
    document["ratios"] = report.ratios(document["results"])
    json_path, markdown_path = report.write(out, document)
    click.echo(f"results: {json_path}\n         {markdown_path}")
    for name, value in document["ratios"].items():
        click.echo(f"  {name}: {value}")
    for caution in report.cautions(document["results"]):
        click.echo(f"  note: {caution}")
    if failed:
        raise click.ClickException(f"scenario(s) failed: {', '.join(failed)}; see the messages above and {json_path}")
