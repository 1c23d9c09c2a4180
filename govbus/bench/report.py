"""The results of one bench run: a JSON file with everything, a Markdown table for people.

Both start with the machine, the versions, the date and the parameters, and carry the
ratios the issue asks for, computed from figures of the same run:
- bus throughput / ceiling throughput (the Python client stack, and Kafka's own tool);
- bus p99 freshness / polling p99 freshness, at the same offered rate, per polling interval.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


SHORT_CEILING_S = 10.0  # a topology ceiling run shorter than this is mostly filling and draining


def cautions(results: dict[str, Any]) -> list[str]:
    """What a reader of the ratios must know about this run. Why: over 20,000 events the
    topology ceiling ran under 4 s and moved 5,456 events/s, over 60,000 it moved 7,443, while
    the bus's rate was the same at both sizes: a short run's ratio flattered the bus by half."""
    seconds = (results.get("topology", {}).get("confluent-kafka") or {}).get("seconds")
    if seconds is None or seconds >= SHORT_CEILING_S:
        return []
    return [f"the topology ceiling ran only {seconds:.1f} s: its whole-run rate is much of it filling and draining, "
            "so bus_over_topology_ceiling flatters the bus; the _steady ratio leaves those out, and runs of "
            "--events 60000 or more make it steadier"]


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    bus = results.get("end_to_end", {}).get("events_per_s")
    ceiling = results.get("ceiling", {})
    python = ceiling.get("python", {}).get("events_per_s")
    java = ceiling.get("kafka_tool", {}).get("producer", {}).get("records_per_s")
    if bus and python:
        found["bus_over_python_ceiling"] = round(bus / python, 4)
    if bus and java:
        found["bus_over_kafka_tool_ceiling"] = round(bus / java, 4)
    topology = results.get("topology", {})
    for client in ("confluent-kafka", "kafka-python"):
        limit = topology.get(client, {}).get("events_per_s")
        if bus and limit:
            found[f"bus_over_topology_ceiling_{client.replace('-', '_')}"] = round(bus / limit, 4)
    # The same, each rate once every stage is busy (measure.steady_rate): the figure to trust.
    bus_steady = results.get("end_to_end", {}).get("events_per_s_steady")
    limit_steady = topology.get("confluent-kafka", {}).get("events_per_s_steady")
    if bus_steady and limit_steady:
        found["bus_over_topology_ceiling_confluent_kafka_steady"] = round(bus_steady / limit_steady, 4)
    bus_cpu = results.get("end_to_end", {}).get("cpu_seconds_per_1000_events") or {}
    topology_cpu = topology.get("confluent-kafka", {}).get("cpu_seconds_per_1000_events") or {}
    for total, suffix in (("total", ""), ("total_with_broker", "_with_broker")):
        if bus_cpu.get(total) and topology_cpu.get(total):
            found[f"bus_cpu_over_topology_cpu_confluent_kafka{suffix}"] = round(bus_cpu[total] / topology_cpu[total], 3)
    polling = results.get("polling", {})
    rate = polling.get("rate")
    offered = results.get("offered_load", {}).get("rates", {}).get(str(rate), {})
    bus_p99 = (offered.get("freshness_s") or {}).get("p99")
    for interval, entry in (polling.get("intervals") or {}).items():
        poll_p99 = (entry.get("freshness_s") or {}).get("p99")
        if bus_p99 and poll_p99:
            found[f"bus_p99_over_polling_p99_T{interval}s"] = round(bus_p99 / poll_p99, 5)
    return found


def write(out: Path, document: dict[str, Any]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    moment = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    cores = document["machine"]["cores"]
    stem = f"{moment}-{cores}core-{document['parameters']['size']}"
    json_path, markdown_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    markdown_path.write_text(markdown(document))
    return json_path, markdown_path


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(rows: list[tuple[str, Any]]) -> list[str]:
    return ["| measure | value |", "|---|---|", *(f"| {name} | {_number(value)} |" for name, value in rows), ""]


def _percentile_text(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("p50") is None:
        return "–"
    return " / ".join(_number(entry.get(name)) for name in ("p50", "p95", "p99"))


def markdown(document: dict[str, Any]) -> str:
    machine, versions, results = document["machine"], document["versions"], document["results"]
    lines = [f"# govbus bench — {document['date']}", "",
             f"Machine: {machine['cores']} cores, {machine['memory_gib']} GiB, {machine['cpu_model']} "
             f"({machine['system']}); load average at start {machine['load_average_at_start']}.", "",
             *_speed(machine),
             "Versions: " + ", ".join(f"{name} {version}" for name, version in versions.items() if version), "",
             f"Parameters: `{json.dumps(document['parameters'], ensure_ascii=False)}`", "",
             "Other work ran on this machine at the same time: compare figures of one run with each other "
             "(the ratios), not absolute figures across runs.", ""]
    if document.get("ratios"):
        lines += ["## Ratios", "", *_table(list(document["ratios"].items()))]
        for caution in cautions(results):
            lines += [f"Note: {caution}.", ""]
    sections = {"hot_path": _hot_path, "fan_out": _fan_out, "ceiling": _ceiling, "topology": _topology, "end_to_end": _end_to_end,
                "offered_load": _offered, "polling": _polling, "initial_load": _initial}
    for name, entry in results.items():
        lines += [f"## {name.replace('_', ' ')}", ""]
        if "error" in entry:
            lines += [f"Failed: {entry['error']}", ""]
            continue
        lines += sections[name](entry) if name in sections else ["```", json.dumps(entry, indent=1), "```", ""]
    if document.get("before_after"):
        lines += ["## Hot path before and after the optimisation", "", *_table(list(document["before_after"].items()))]
    return "\n".join(lines)


def _hot_path(entry: dict[str, Any]) -> list[str]:
    return _table([("events", entry["events"]), ("gate µs per event", entry["gate_us_per_event"]),
                   ("router µs per event (4 subscriptions)", entry["router_us_per_event"]),
                   ("gate events/s (one core)", entry["gate_events_per_s"]),
                   ("router events/s (one core)", entry["router_events_per_s"])])


def _fan_out(entry: dict[str, Any]) -> list[str]:
    grouped, alone = entry["router_us_per_change"], entry["router_us_per_change_ungrouped"]
    rows: list[tuple[str, Any]] = [("shared changes routed", entry["changes"])]
    for count in sorted(grouped, key=int):
        rows.append((f"router µs per change, {count} subscriptions ({entry['distinct_projections'][count]} "
                     "distinct projections): grouped / one at a time", f"{grouped[count]} / {alone[count]}"))
    rows += [("400 over 40, grouped", entry["grouped_400_over_40"]),
             ("400 over 40, one at a time", entry["ungrouped_400_over_40"])]
    return _table(rows)


def _ceiling(entry: dict[str, Any]) -> list[str]:
    tool, python = entry.get("kafka_tool", {}), entry.get("python", {})
    return _table([("records", entry.get("records")), ("average record bytes", entry.get("record_bytes")),
                   ("Kafka ProducerPerformance records/s", tool.get("producer", {}).get("records_per_s")),
                   ("Kafka ProducerPerformance p99 latency ms", tool.get("producer", {}).get("p99_ms")),
                   ("Kafka ConsumerPerformance records/s", tool.get("consumer", {}).get("records_per_s")),
                   ("Python producer events/s", python.get("producer_events_per_s")),
                   ("Python consumer events/s", python.get("consumer_events_per_s")),
                   ("Python produce-then-consume events/s", python.get("events_per_s"))])


def _topology(entry: dict[str, Any]) -> list[str]:
    rows: list[tuple[str, Any]] = [("events", entry.get("events")), ("subscriber stores", entry.get("subscribers"))]
    for client in ("confluent-kafka", "kafka-python"):
        found = entry.get(client, {})
        rows.append((f"{client}: events/s end to end", found.get("events_per_s")))
        if found.get("events_per_s_steady") is not None:
            rows.append((f"{client}: events/s once every stage is busy (first and last tenth left out)",
                         found["events_per_s_steady"]))
        cpu = found.get("cpu_seconds_per_1000_events") or {}
        rows.append((f"{client}: CPU s per 1000 events (clients)", cpu.get("total")))
        if "total_with_broker" in cpu:
            rows.append((f"{client}: CPU s per 1000 events (clients and broker)", cpu["total_with_broker"]))
    warm = entry.get("warm_up")
    if warm:
        rows.append(("warm-up rounds before measuring (broker JIT compiler's last share of a core)",
                     f"{warm['rounds']} ({warm['compiler_cores']:.2f})" if warm.get("compiler_cores") is not None
                     else warm["rounds"]))
    return _table(rows)


def _end_to_end(entry: dict[str, Any]) -> list[str]:
    rows = [("events", entry["events"]), ("departments", entry["departments"]),
            ("events/s end to end", entry["events_per_s"]),
            ("events/s once every stage is busy (first and last tenth left out)", entry.get("events_per_s_steady")),
            ("deliveries applied/s", entry["deliveries_per_s"]), ("publisher events/s", entry["publish_events_per_s"])]
    rows += [(f"CPU s per 1000 events: {name}", value) for name, value in entry["cpu_seconds_per_1000_events"].items()]
    rows += [(f"peak RSS MiB: {name}", value) for name, value in entry["peak_rss_mib"].items()]
    rows += [(f"events per batch (transaction): {name}", value) for name, value in (entry.get("events_per_batch") or {}).items()]
    return _table(rows) + _hops(entry.get("hops"))


def _hops(hops: dict[str, Any] | None) -> list[str]:
    """Where the time goes: p50 / p95 / p99 per hop."""
    if not hops:
        return []
    return ["| hop | p50 / p95 / p99 s |", "|---|---|",
            *(f"| {name.removesuffix('_s').replace('_', ' ')} | {_percentile_text(value)} |" for name, value in hops.items()), ""]


def _offered(entry: dict[str, Any]) -> list[str]:
    lines = ["| offered events/s | achieved publish/s | kept up | freshness p50 / p95 / p99 s | CPU s per 1000 "
             "(with broker) | events per batch (gate, router) |", "|---|---|---|---|---|---|"]
    for rate, one in entry["rates"].items():
        cpu, batches = one["cpu_seconds_per_1000_events"], one.get("events_per_batch") or {}
        with_broker = f" ({_number(cpu['total_with_broker'])})" if "total_with_broker" in cpu else ""
        lines.append(f"| {rate} | {_number(one['achieved_publish_events_per_s'])} | {_number(one['kept_up'])} | "
                     f"{_percentile_text(one['freshness_s'])} | {_number(cpu['total'])}{with_broker} | "
                     f"{_number(batches.get('gate'))}, {_number(batches.get('router'))} |")
    lines.append("")
    for rate, one in entry["rates"].items():
        lines += [f"Hops at {rate} events/s:", "", *_hops(one.get("hops"))]
    return lines


def _polling(entry: dict[str, Any]) -> list[str]:
    lines = [f"Central database: {entry['central']}; sources write {entry['rate']} events/s for {entry['seconds']} s; "
             f"{entry['subscribers_per_interval']} subscribers per interval.", "",
             "| poll every s | freshness p50 / p95 / p99 s | queries/s | rows returned/s | rows scanned/s | changes never seen |",
             "|---|---|---|---|---|---|"]
    for interval, one in entry["intervals"].items():
        lines.append(f"| {interval} | {_percentile_text(one['freshness_s'])} | {_number(one['queries_per_s'])} | "
                     f"{_number(one['rows_returned_per_s'])} | {_number(one.get('rows_scanned_per_s'))} | "
                     f"{_number(one['changes_overwritten_unseen'])} |")
    return lines + [""]


def _initial(entry: dict[str, Any]) -> list[str]:
    rows = []
    for phase, found in (("snapshot", entry), ("backfill", entry.get("backfill"))):
        if not found:
            continue
        rows += [(f"{phase}: records", found["records"]), (f"{phase}: seconds", found["seconds"]),
                 (f"{phase}: records/s", found["records_per_s"])]
        rows += [(f"{phase}: peak RSS MiB: {name}", value) for name, value in found["peak_rss_mib"].items()]
    return _table(rows)


def _speed(machine: dict[str, Any]) -> list[str]:
    """The machine's speed at the start and the end of the run (``machine.python_speed``)."""
    start, end = machine.get("python_speed_us_at_start"), machine.get("python_speed_us_at_end")
    if start is None:
        return []
    return [f"Machine speed: a fixed Python workload took {start} µs per round at the start"
            + (f" and {end} at the end" if end is not None else "")
            + " (lower is faster; compare absolute figures of two runs only at a similar speed).", ""]
