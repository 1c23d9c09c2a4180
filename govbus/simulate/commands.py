"""`govbus simulate --scale 0.01`: a province on the bus, on a real secured broker, checked.

See ``govbus/simulate/run.py`` for the steps and ``docs/capacity.md`` for the capacity model
the run is compared with. Exit 1 when a store is not its entitlement or the model's counts
differ from the broker's (the report is written either way).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from govbus.bench import machine
from govbus.bench.harness import provision_broker
from govbus.settings import PROJECT_ROOT, get_settings
from govbus.simulate import checks, model, province, report
from govbus.processors.governance.subscriptions import Subscription
from govbus.simulate.province import PROVINCE, ProvincePlan
from govbus.simulate.run import Options, Simulation, receivers_of, work_folder
from govbus.simulate.workload import Expected
from govbus.topics.catalog import load_catalog


@click.command()
@click.option("--scale", type=float, default=0.01, show_default=True,
              help="The province's share: 0.01 is 1/100 (25 departments, 500,000 people …).")
@click.option("--entities", type=click.IntRange(min=80), default=None,
              help="Entities loaded (a sample of the scaled libraries); default 1,000,000 × scale, at least 200.")
@click.option("--seed", type=int, default=7, show_default=True, help="The same seed makes the same province.")
@click.option("--day-seconds", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="Seconds over which a day's changes are published (0: at once).")
@click.option("--subscriptions-per-department", "per_department", type=click.IntRange(min=1),
              default=model.SUBSCRIPTIONS_PER_DEPARTMENT, show_default=True,
              help="Subscriptions each department makes (the capacity model's province and nation keep 3).")
@click.option("--keep", is_flag=True, help="Keep the work folder (stores, logs, the province's catalog).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=PROJECT_ROOT / "bench" / "results",
              show_default=True, help="Where the JSON and Markdown report go.")
def simulate(scale: float, entities: int | None, seed: int, day_seconds: float, per_department: int, keep: bool,
             out: Path) -> None:
    """Generate a province at SCALE, provision it on a local broker, run the bus, report and check.

    Starts a throw-away secured local broker unless GOVBUS_BOOTSTRAP_SERVERS is set. Every
    department is a principal of its own; subscriptions are requested and approved by their
    own principals. Under 15 minutes at --scale 0.01 on two cores.
    """
    try:  # a province that cannot be made is said before a broker is started
        model.require_scale(scale)
        province.plan(load_catalog(get_settings().catalog_dir), scale, seed, per_department)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    options = Options(scale, entities or max(200, round(1_000_000 * scale)), seed, day_seconds, per_department)
    started, work = time.monotonic(), work_folder()
    broker, held = provision_broker(get_settings()), False
    try:
        document = execute(_simulation(broker, options, work))
        held = document["model_agrees"] and document["stores"]["ok"]
    finally:
        broker.close()
        if keep or not held:
            click.echo(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    document["wall_seconds"] = round(time.monotonic() - started, 1)
    json_path, markdown_path = report.write(out, document)
    click.echo(f"report: {json_path}\n        {markdown_path}")
    _verdict(document)


def _simulation(broker: Any, options: Options, work: Path) -> Simulation:
    settings = get_settings()
    home = work / "principals" if broker.cluster is not None else settings.home  # never rotate a configured broker's
    admin = broker.admin_settings(topic_prefix=f"sim{int(time.time())}.", client_id="govbus-simulate", home=home,
                                  key_secret=settings.key_secret, catalog_dir=settings.catalog_dir)
    pids = broker.cluster.pids() if broker.cluster is not None else []
    click.echo(f"broker: {broker.origin} at {broker.bootstrap_servers}; topic prefix {admin.topic_prefix!r}")
    return Simulation(admin, options, work, pids, echo=click.echo)


def execute(simulation: Simulation) -> dict[str, Any]:
    """Every step of the run (``run.py``), then the document the report is made of."""
    simulation.prepare()
    simulation.provision()
    pipeline = simulation.start_bus()
    try:
        subscriptions = simulation.subscribe(pipeline)
        simulation.start_subscribers(pipeline, subscriptions)
        receivers, expected = receivers_of(subscriptions), Expected()
        simulation.measure_idle(pipeline)
        watch = pipeline.watch().start()
        click.echo("loading the libraries, one at a time …")
        phases = simulation.load(pipeline, receivers, expected)
        published = simulation.day(pipeline, receivers, expected)
        cpu = watch.stop()
        freshness = simulation.freshness(pipeline, published)
        click.echo("counting what the broker holds, checking every store …")
        found = checks.counted(simulation.settings, simulation.plan.catalog, simulation.principal_names())
        stores = checks.check_stores(simulation.settings, subscriptions, pipeline.work, expected)
    finally:
        pipeline.stop()
    return document(simulation, subscriptions, expected, phases, freshness, cpu, found, stores)


def document(simulation: Simulation, subscriptions: dict[str, Subscription], expected: Expected, phases: list[dict[str, Any]],
             freshness: dict[str, Any], cpu: dict[str, Any], found: dict[str, Any],
             stores: list[checks.StoreCheck]) -> dict[str, Any]:
    """The report's content: machine and versions first, as every bench result."""
    plan, shape = simulation.plan, model.Shape.of(simulation.plan.catalog)
    acts = simulation.figures["provisioning"]["subscription_acts"]
    entities_now = {library: len(images) for library, images in simulation.sources.images.items()}
    at_loaded = checks.at_loaded_sizes(shape, len(plan.departments), subscriptions, expected, entities_now, acts,
                                       found["mean_message_bytes"])
    predicted = model.predict(shape, at_loaded)
    rows = checks.comparison(predicted, found)
    settle = simulation.figures["provisioning"]["backfills_s"] / max(1, simulation.figures["provisioning"]["backfills"])
    measured = _measured(subscriptions, len(plan.departments), expected, phases, found, settle)
    fit = model.fit_costs([(p["routed_events"], p["deliveries"], p["router_cpu_s"]) for p in phases])
    return {**machine.describe(),
            "parameters": {"scale": simulation.options.scale, "entities": simulation.options.entities,
                           "seed": simulation.options.seed, "day_seconds": simulation.options.day_seconds,
                           "province": PROVINCE, "subscriptions_per_department": simulation.options.per_department},
            "province": _province(simulation, subscriptions),
            "provisioning": simulation.figures["provisioning"], "day": simulation.figures["day"],
            "counted": found, "predicted": predicted.as_dict(), "comparison": rows,
            "model_agrees": all(row["equal"] for row in rows),
            "router": {"phases": phases, "idle_cpu_per_s": simulation.idle_router_cpu, "fit": {"us_per_event": 1e6 * fit[0], "us_per_delivery": 1e6 * fit[1]}
                       if fit else None},
            "freshness": freshness, "cpu_seconds": {name: entry["cpu_seconds"] for name, entry in cpu.items()},
            "peak_rss_mib": {name: entry["peak_rss_mib"] for name, entry in cpu.items()},
            "stores": _stores(stores), "measured": asdict(measured),
            "capacity": _capacity(shape, measured, simulation, plan)}


def _province(simulation: Simulation, subscriptions: dict[str, Subscription]) -> dict[str, Any]:
    plan = simulation.plan
    levels: dict[str, int] = {}
    for department in plan.departments:
        levels[department.level] = levels.get(department.level, 0) + 1
    per_library: dict[str, int] = {}
    for subscription in subscriptions.values():
        per_library[subscription.library] = per_library.get(subscription.library, 0) + 1
    return {"departments": len(plan.departments), "simulated": len(plan.simulated), "levels": levels,
            "subscriptions": len(subscriptions), "subscriptions_per_library": per_library,
            "delivery_topics": len({(s.department, s.library) for s in subscriptions.values()}),
            "entities_at_scale": simulation.full, "entities_loaded": simulation.loaded,
            "day_changes": simulation.day_sizes}


def _measured(subscriptions: dict[str, Subscription], departments: int, expected: Expected, phases: list[dict[str, Any]],
              found: dict[str, Any], settle_s: float) -> model.Measured:
    total = max(1, len(subscriptions))
    share: dict[str, float] = {}
    readers: dict[str, set[str]] = {}
    for subscription in subscriptions.values():
        share[subscription.library] = share.get(subscription.library, 0.0) + 1 / total
        readers.setdefault(subscription.library, set()).add(subscription.department)
    touch = {library: expected.day_deliveries[library] / count for library, count in expected.eligible.items() if count}
    fit = model.fit_costs([(p["routed_events"], p["deliveries"], p["router_cpu_s"]) for p in phases])
    gate = sum(p["gate_cpu_s"] for p in phases) / max(1, sum(p["events"] for p in phases))
    sizes = {**model.MESSAGE_BYTES, **{k: v for k, v in found["mean_message_bytes"].items() if k in model.MESSAGE_BYTES}}
    return model.Measured(share, {library: len(who) / departments for library, who in readers.items()}, touch, sizes,
                          gate_cpu_per_event=gate, router_cpu_per_event=fit[0] if fit else model.ROUTER_CPU_PER_EVENT,
                          router_cpu_per_delivery=fit[1] if fit else model.ROUTER_CPU_PER_DELIVERY,
                          backfill_settle_s=settle_s)


def _capacity(shape: model.Shape, measured: model.Measured, simulation: Simulation,
              plan: ProvincePlan) -> dict[str, Any]:
    """The model at this run's full scaled sizes, at a province and at the nation — as the bus
    is designed and with the two lean alternatives of docs/capacity.md (delivery topics of one
    partition, per-department topics made when first needed) — and for one province's cluster
    of a nation federated by province."""
    from govbus.producers.generate import places_in

    counties = [place[0] for place in places_in(PROVINCE)]
    run_regions = {"province": 1, "city": len({county[:4] for county in counties}), "county": len(counties)}
    run_levels = {level: sum(1 for d in plan.departments if d.level == level) / len(plan.departments)
                  for level in run_regions}
    top = len(plan.departments) - len(plan.simulated)
    nation = {library: round(count * model.NATIONAL_FACTOR) for library, count in model.entities_at(1.0).items()}
    provinces = model.NATIONAL_REGIONS["province"]
    one_of_them = model.NATIONAL_DEPARTMENTS // provinces
    average = {"province": 1, "city": round(model.NATIONAL_REGIONS["city"] / provinces),
               "county": round(model.NATIONAL_REGIONS["county"] / provinces)}
    columns = {
        f"at scale {simulation.options.scale:g}": (len(plan.departments), model.entities_at(simulation.options.scale),
                                                   run_levels, run_regions, False),
        "province": (model.PROVINCE_DEPARTMENTS, model.entities_at(1.0),
                     model.province_levels(model.PROVINCE_DEPARTMENTS, top), model.PROVINCE_REGIONS, False),
        "province, lean": (model.PROVINCE_DEPARTMENTS, model.entities_at(1.0),
                           model.province_levels(model.PROVINCE_DEPARTMENTS, top), model.PROVINCE_REGIONS, True),
        "nation": (model.NATIONAL_DEPARTMENTS, nation, model.NATIONAL_LEVELS, model.NATIONAL_REGIONS, False),
        "nation, lean": (model.NATIONAL_DEPARTMENTS, nation, model.NATIONAL_LEVELS, model.NATIONAL_REGIONS, True),
        "one province's cluster of a federated nation, lean": (
            one_of_them, {library: round(count / provinces) for library, count in nation.items()},
            model.province_levels(one_of_them, top), average, True)}
    found = {}
    for name, (departments, entities, levels, regions, lean) in columns.items():
        province = model.extrapolate(measured, departments, entities, levels, regions)
        designed = shape.with_delivery_partitions(1) if lean else shape
        found[name] = {"departments": departments, **model.predict(designed, province, lean).as_dict()}
    return found


def _stores(results: list[checks.StoreCheck]) -> dict[str, Any]:
    return {"checked": len(results), "ok": all(result.ok for result in results),
            "records": sum(1 for result in results if result.kind == "records"),
            "events": sum(1 for result in results if result.kind == "events"),
            "failures": [result.problem for result in results if not result.ok],
            "subscriptions": [asdict(result) for result in results]}


def _verdict(document: dict[str, Any]) -> None:
    """Print the claims that hold; exit 1 naming those that do not."""
    counted, fresh = document["counted"], document["freshness"]["publish_to_applied_s"]
    click.echo(f"provisioning {document['provisioning']['total_s']:.1f} s; {counted['topics']['total']} topics, "
               f"{counted['partitions']['total']} partitions, {counted['acls']} ACLs, "
               f"{counted['messages']['total']} messages; freshness p50 {fresh['p50']} s, p99 {fresh['p99']} s")
    problems = [f"{row['quantity']}: the model says {row['predicted']}, the broker counted {row['counted']}"
                for row in document["comparison"] if not row["equal"]] + document["stores"]["failures"]
    if problems:
        raise click.ClickException("; ".join(problems[:10]))
    click.echo("the capacity model's topics, partitions, ACLs and messages equal the broker's counts, and every "
               f"subscriber's store ({document['stores']['checked']}) equals its entitlement — both checked")
