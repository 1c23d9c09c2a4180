"""Initial load: a source's snapshot through the bus into one store, then a new approval's backfill.

A source that (re)loads its whole base library sends every record as a SNAPSHOT event. Here
public security publishes N snapshot records (1,000,000 at full size, or ``--snapshot N``)
from its export file with ``govbus publish``, as its operator would, through the gate and the router into one subscribing department's SQLite store, on a bus of
its own. Then a second department's subscription is approved: the router delivers the
current state of every entity to it (the backfill), and its subscriber applies them.
Reported for each: records, seconds, records per second, and the peak memory of every
process — which must not grow with N (the gate keeps its golden records on disk, the
backfill streams the state partitions, the subscribers stream their deliveries).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from govbus.bench import follower, workload
from govbus.bench.context import Context
from govbus.bench.harness import BenchError, Pipeline
from govbus.bench.measure import child_cpu, per_thousand, rounded
from govbus.bench.subscriptions import requests
from govbus.processes import settings_environment

DEPARTMENT = "hr_social_security"
NEWCOMER = "health"  # approved after the load: its store is filled by the backfill


def run(context: Context) -> dict[str, Any]:
    count = context.sizes.snapshot
    pipeline = Pipeline(context.admin_settings("initial"), context.passwords(), context.work / "initial",
                        departments=(DEPARTMENT,), broker_pids=context.broker_pids())
    context.cleanups.append(pipeline.stop)
    pipeline.start()
    result = _snapshot(pipeline, count)
    result["backfill"] = _backfill(pipeline, count)
    pipeline.stop()
    return rounded(result)


def _snapshot(pipeline: Pipeline, count: int) -> dict[str, Any]:
    """From the start of the source's ``govbus publish`` of its snapshot file to the last
    record applied in the one store. The file is written first, untimed: a source exports its
    snapshot from its own database before the load (generating realistic people here took
    more CPU than the gate's decisions, on the same two cores)."""
    source = pipeline.work / "snapshot.jsonl"
    with open(source, "w", encoding="utf-8") as out:
        for record in workload.snapshot_records(count):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    watch, children_cpu = pipeline.watch(), child_cpu()
    first = time.time()
    command = subprocess.Popen([sys.executable, "-m", "govbus.cli", "publish", workload.LIBRARY, "--department",
                                workload.SOURCE, "--input", str(source), "--source-system", workload.SOURCE_SYSTEM],
                               env=settings_environment(pipeline.as_principal(workload.SOURCE)),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watch.add("publisher (govbus publish)", command.pid)
    watch.start()
    output, _ = command.communicate()
    published = time.time()
    watch.ended("publisher (govbus publish)", child_cpu() - children_cpu)
    if command.returncode != 0:
        raise BenchError(f"govbus publish of the snapshot failed ({command.returncode}): {output[-2000:]}")
    if not pipeline.wait_applied({DEPARTMENT: count}, timeout=max(300.0, count / 20)):
        raise BenchError(f"initial load: {pipeline.applied_counts()} of {count} applied in time")
    seconds = _last_applied(pipeline, DEPARTMENT) - first
    processes = watch.stop()
    source.unlink()
    return {"records": count, "department": DEPARTMENT, "seconds": seconds, "records_per_s": count / seconds,
            "publish_seconds": published - first, "cpu_seconds_per_1000_records": per_thousand(processes, count),
            "peak_rss_mib": {name: entry["peak_rss_mib"] for name, entry in processes.items()}}


def _backfill(pipeline: Pipeline, count: int) -> dict[str, Any]:
    """From the approval to the last entity applied in the newcomer's store."""
    from govbus.processors.governance import control

    [request] = requests((NEWCOMER,))
    approved_at = time.time()
    subscription = control.request(pipeline.settings, request)
    for authority in subscription.awaiting:  # each conditional field's authority approves (issue 16)
        subscription = control.approve(pipeline.settings, subscription.id, authority)
    if subscription.state != "approved":
        raise BenchError(f"the backfill's subscription was {subscription.state}: {subscription.decision.reason}")
    pipeline.start_follower(NEWCOMER)
    watch = pipeline.watch().start()
    if not pipeline.wait_applied({NEWCOMER: count}, timeout=max(300.0, count / 20)):
        raise BenchError(f"backfill: {pipeline.applied_counts()} of {count} applied in time")
    seconds = _last_applied(pipeline, NEWCOMER) - approved_at
    processes = watch.stop()
    return {"records": count, "department": NEWCOMER, "seconds": seconds, "records_per_s": count / seconds,
            "cpu_seconds_per_1000_records": per_thousand(processes, count),
            "peak_rss_mib": {name: entry["peak_rss_mib"] for name, entry in processes.items()}}


def _last_applied(pipeline: Pipeline, department: str) -> float:
    """When the department's subscriber applied its last change (seconds since the epoch)."""
    time.sleep(follower.STATUS_EVERY_S * 1.5)  # its status file is written every STATUS_EVERY_S
    return follower.read_status(pipeline.followers[department].out, department)["last_applied_ms"] / 1000

