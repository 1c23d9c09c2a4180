"""Initial load: a snapshot of the population library through the bus into one subscriber.

A department that joins, or a source that (re)loads its whole base library, sends every
record as a SNAPSHOT event. Here public security publishes N snapshot records (1,000,000 at
full size) through the gate and the router into one subscribing department's SQLite store,
on a bus of its own. Reported: total time from the first publish to the last record applied,
records per second, and the peak memory of every process — which must not grow with N
beyond the gate's golden records (held in memory by the faust table) and the store.
"""

from __future__ import annotations

import time
from typing import Any

from govbus.bench import workload
from govbus.bench.context import Context
from govbus.bench.harness import BenchError, Pipeline
from govbus.bench.measure import per_thousand, rounded

DEPARTMENT = "hr_social_security"


def run(context: Context) -> dict[str, Any]:
    count = context.sizes.snapshot
    pipeline = Pipeline(context.admin_settings("initial"), context.passwords(), context.work / "initial",
                        departments=(DEPARTMENT,))
    context.cleanups.append(pipeline.stop)
    pipeline.start()
    watch = pipeline.watch().start()
    with pipeline.publisher() as publisher:
        first = time.time()
        for record in workload.snapshot_records(count):
            result = publisher.publish(record)
            if not result.accepted:
                raise BenchError(f"a snapshot record was refused: {result.violations}")
        report = publisher.flush()
        published = time.time()
    if report.failures:
        raise BenchError(f"{len(report.failures)} snapshot publishes failed, e.g. {report.failures[0]}")
    if not pipeline.wait_applied({DEPARTMENT: count}, timeout=max(300.0, count / 20)):
        raise BenchError(f"initial load: {pipeline.applied_counts()} of {count} applied in time")
    time.sleep(0.3)  # the follower's status file is written every 0.2 s
    processes = watch.stop()
    from govbus.bench import follower

    last = follower.read_status(pipeline.followers[DEPARTMENT].out, DEPARTMENT)["last_applied_ms"] / 1000
    pipeline.stop()
    seconds = last - first
    return rounded({"records": count, "department": DEPARTMENT, "seconds": seconds, "records_per_s": count / seconds,
                    "publish_seconds": published - first,
                    "cpu_seconds_per_1000_records": per_thousand(processes, count),
                    "peak_rss_mib": {name: entry["peak_rss_mib"] for name, entry in processes.items()}})
