"""The simulation's results: a JSON file with everything and a Markdown page for people, in
``bench/results/<date>-<cores>core-simulate-<scale>.json|md``, each starting with the machine,
the versions and the date as every bench result does (``govbus.bench.machine``).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from govbus.bench.report import _number, _percentile_text, _table


def write(out: Path, document: dict[str, Any]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    moment = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    stem = f"{moment}-{document['machine']['cores']}core-simulate-{document['parameters']['scale']:g}"
    json_path, markdown_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    markdown_path.write_text(markdown(document))
    return json_path, markdown_path


def markdown(document: dict[str, Any]) -> str:
    machine, versions = document["machine"], document["versions"]
    lines = [f"# govbus simulate — a province at {document['parameters']['scale']:g}, {document['date']}", "",
             f"Machine: {machine['cores']} cores, {machine['memory_gib']} GiB, {machine['cpu_model']} "
             f"({machine['system']}); load average at start {machine['load_average_at_start']}.", "",
             "Versions: " + ", ".join(f"{name} {version}" for name, version in versions.items() if version), "",
             f"Parameters: `{json.dumps(document['parameters'], ensure_ascii=False)}`; "
             f"wall time {_number(document.get('wall_seconds'))} s.", "",
             f"**Verdict:** the model's counts {'agree' if document['model_agrees'] else 'DO NOT agree'} with the "
             f"broker's; every store {'equals' if document['stores']['ok'] else 'does NOT equal'} its entitlement.", ""]
    for title, section in (("Province", _province), ("Provisioning", _provisioning),
                           ("The model against the broker (at the loaded sizes)", _comparison),
                           ("Router cost per event against subscriptions", _router), ("Freshness", _freshness),
                           ("CPU and memory over the load and the day", _processes),
                           ("Stores", _stores), ("Capacity: the model at full sizes", _capacity)):
        lines += [f"## {title}", "", *section(document)]
    return "\n".join(lines)


def _province(document: dict[str, Any]) -> list[str]:
    province = document["province"]
    rows = [("departments", province["departments"]), ("of them beyond the catalog's", province["simulated"]),
            ("by level", json.dumps(province["levels"])), ("subscriptions", province["subscriptions"]),
            ("subscriptions per library", json.dumps(province["subscriptions_per_library"])),
            ("delivery topics (department, library)", province["delivery_topics"]),
            ("entities at this scale (the model's sizes)", json.dumps(province["entities_at_scale"])),
            ("entities loaded (the sample)", json.dumps(province["entities_loaded"])),
            ("changes a day at this scale, published", json.dumps(province["day_changes"]))]
    return _table(rows)


def _provisioning(document: dict[str, Any]) -> list[str]:
    figures = document["provisioning"]
    return _table([("principals made (SCRAM)", figures["principals"]), ("seconds", figures["principals_s"]),
                   ("topics made by topics apply (+ ACLs)", figures["topics_made"]),
                   ("seconds", figures["topics_and_acls_s"]),
                   ("subscriptions (each request and approval by its own principal)", figures["subscriptions"]),
                   ("acts", figures["subscription_acts"]), ("seconds", figures["subscriptions_s"]),
                   ("seconds per act (several departments at once)",
                    figures["subscriptions_s"] / max(1, figures["subscription_acts"])),
                   ("backfills the router settled (subscription × partition, libraries still empty)",
                    figures["backfills"]), ("seconds", figures["backfills_s"]),
                   ("seconds per backfill", figures["backfills_s"] / max(1, figures["backfills"]))])


def _comparison(document: dict[str, Any]) -> list[str]:
    lines = ["| quantity | predicted (capacity model) | counted (broker) | equal |", "|---|---|---|---|"]
    lines += [f"| {row['quantity']} | {_number(row['predicted'])} | {_number(row['counted'])} | "
              f"{'yes' if row['equal'] else '**no**'} |" for row in document["comparison"]]
    counted = document["counted"]
    lines += ["", "Not predicted, counted: sharing-chain heads (`audit.heads.*`, one per batch and partition "
              f"routed) {_number(counted['messages'].get('audit_heads', 0))}; log end offsets "
              f"{_number(counted['log_end_offsets']['total'])} against {_number(counted['messages']['total'])} "
              "messages (the difference: transaction markers).", "",
              "Mean message bytes (key, value, headers): " + ", ".join(
                  f"{kind} {_number(size)}" for kind, size in counted["mean_message_bytes"].items()), ""]
    return lines


def _router(document: dict[str, Any]) -> list[str]:
    router = document["router"]
    lines = ["| library | subscriptions | events routed | deliveries | deliveries per event | router CPU s | "
             "µs per event | µs per delivery |", "|---|---|---|---|---|---|---|---|"]
    for phase in router["phases"]:
        lines.append(f"| {phase['library']} | {phase['subscriptions']} | {_number(phase['routed_events'])} | "
                     f"{_number(phase['deliveries'])} | {_number(phase['deliveries_per_event'])} | "
                     f"{_number(phase['router_cpu_s'])} | {_number(phase['router_us_per_event'])} | "
                     f"{_number(phase['router_us_per_delivery'])} |")
    fit = router.get("fit")
    lines += ["", "Router CPU is the worker process's own (psutil, user + system) over each library's load, less "
              f"its CPU while idle ({_number(router.get('idle_cpu_per_s'))} s per second, measured before the load, "
              "times the phase's length); events and deliveries are its `/health` counts. " + (
                  f"Least squares over the libraries: {_number(fit['us_per_event'])} µs per event + "
                  f"{_number(fit['us_per_delivery'])} µs per delivery." if fit else
                  "The phases could not separate a cost per event from one per delivery."), ""]
    return lines


def _processes(document: dict[str, Any]) -> list[str]:
    cpu, memory = document["cpu_seconds"], document["peak_rss_mib"]
    subscribers = [name for name in cpu if name.startswith("subscriber ")]
    rows = [(f"{name}: CPU s / peak RSS MiB", f"{_number(cpu[name])} / {_number(memory[name])}")
            for name in cpu if name not in subscribers]
    if subscribers:
        rows.append((f"{len(subscribers)} subscribers: CPU s in all / largest peak RSS MiB",
                     f"{_number(sum(cpu[name] for name in subscribers))} / "
                     f"{_number(max(memory[name] for name in subscribers))}"))
    return _table(rows)


def _freshness(document: dict[str, Any]) -> list[str]:
    fresh, day = document["freshness"], document["day"]
    return [f"The day's {day['changes']} changes ({day['life_events']} life events) at "
            f"{_number(day['pace_per_s'])} changes/s; every record delivery of them, per subscriber:", "",
            "| hop | p50 / p95 / p99 s | deliveries |", "|---|---|---|",
            f"| publish → applied in the store | {_percentile_text(fresh['publish_to_applied_s'])} | "
            f"{_number(fresh['publish_to_applied_s'].get('count'))} |",
            f"| routed → applied | {_percentile_text(fresh['routed_to_applied_s'])} | "
            f"{_number(fresh['routed_to_applied_s'].get('count'))} |", ""]


def _stores(document: dict[str, Any]) -> list[str]:
    stores = document["stores"]
    lines = [f"{stores['checked']} subscriptions checked ({stores['records']} record stores against the projection "
             f"of the golden records, {stores['events']} life-event logs against the events owed): "
             + ("all equal." if stores["ok"] else f"{len(stores['failures'])} differ:"), ""]
    return lines + [f"- {failure}" for failure in stores["failures"]] + ([""] if stores["failures"] else [])


def _capacity(document: dict[str, Any]) -> list[str]:
    capacity = document["capacity"]
    columns = list(capacity)
    rows = [("departments", "departments"), ("topics", ("topics", "total")),
            ("partitions", ("partitions", "total")), ("partition replicas", "partition_replicas"),
            ("ACLs", "acls"), ("messages a day", ("messages", "total")),
            ("deliveries a day", ("messages", "deliver")), ("GB a day", ("bytes", "total")),
            ("TB retained (one year of the kept-for-ever topics, all replicas)", ("retained_bytes", "total")),
            ("brokers (partitions, disk)", "brokers"), ("gate / router instances", "processors"),
            ("initial load hours (2 cores)", ("hours", "initial_load")),
            ("backfill hours, one subscription to the largest library", ("hours", "backfill_largest_library")),
            ("router hours settling every approval (libraries empty)", ("hours", "approvals_settled")),
            ("largest sharing record, KB (Kafka's limit: 1,024)", "largest_sharing_record_bytes")]
    lines = ["| | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for title, path in rows:
        lines.append(f"| {title} | " + " | ".join(_capacity_cell(capacity[column], path) for column in columns) + " |")
    return lines + ["", "Columns: the model at this run's full scaled sizes, at a whole province (scale 1) and at "
                        "the nation (252,000 departments), with the costs and shares this run measured; *lean*: "
                        "delivery topics of one partition and per-department topics made when first needed; the "
                        "last column is one of 31 provincial clusters of a nation federated by province. See "
                        "docs/capacity.md.", ""]


def _capacity_cell(entry: dict[str, Any], path: Any) -> str:
    if path == "departments":
        return _number(entry["departments"])
    if path == "brokers":
        return f"{_number(entry['brokers']['needed'])} ({entry['brokers']['by_partitions']}, {entry['brokers']['by_disk']})"
    if path == "processors":
        return f"{entry['processors']['gate']} / {entry['processors']['router']}"
    value = entry[path] if isinstance(path, str) else entry[path[0]][path[1]]
    if path == ("bytes", "total"):
        value = value / 1e9
    if path == ("retained_bytes", "total"):
        value = value / 1e12
    if path == "largest_sharing_record_bytes":
        value = value / 1024
    return _number(float(value) if isinstance(value, float) else value)
