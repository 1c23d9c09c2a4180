"""Bus end to end at its maximum rate: N population changes through the gate and the router
to four subscribing departments, each applying to its SQLite store.

The source publishes as fast as the publisher SDK goes; the clock runs from the first
publish call to the last change applied in the last store. Reported: events per second end
to end (and deliveries applied per second: four per event), CPU seconds per thousand events
per process and in all, and the peak memory of every process. The delays measured here are
queueing delays under overload, not freshness (see the offered-load scenario).
"""

from __future__ import annotations

import os
from typing import Any

from govbus.bench import workload
from govbus.bench.context import Context
from govbus.bench.harness import BenchError, freshness, publish_all, shared_pipeline
from govbus.bench.measure import events_per_batch, per_thousand, percentiles, progress_of, rounded, steady_rate


def run(context: Context) -> dict[str, Any]:
    pipeline = shared_pipeline(context)
    count = context.sizes.events
    records = workload.population_changes(count, seed=21)
    before, batches_before = pipeline.applied_counts(), pipeline.batch_counts()
    watch = pipeline.watch().start()
    published, first, acknowledged = publish_all(pipeline, records)
    finished = pipeline.wait_applied({d: before[d] + count for d in before}, timeout=max(180.0, count / 50))
    processes = watch.stop()
    batches = events_per_batch(batches_before, pipeline.batch_counts())
    applied = pipeline.applied()
    delays, missing = freshness(published, applied)
    if not finished or any(missing.values()):
        raise BenchError(f"end to end: not every change was applied in time; missing per department {missing}")
    last = max(times[event_id] for times in applied.values() for event_id in published) / 1000
    seconds = last - first
    cpu = {name: entry["cpu_seconds"] for name, entry in processes.items()}
    return rounded({
        "events": count, "departments": len(applied), "deliveries": count * len(applied),
        "seconds": seconds, "events_per_s": count / seconds, "deliveries_per_s": count * len(applied) / seconds,
        "events_per_s_steady": steady_rate([progress_of(times[event_id] / 1000 for event_id in published)
                                            for times in applied.values()], count),
        "publish_events_per_s": count / (acknowledged - first),
        "cpu_seconds_per_1000_events": per_thousand(processes, count),
        "cpu_seconds": {**cpu, "total": sum(cpu.values())},
        "peak_rss_mib": {name: entry["peak_rss_mib"] for name, entry in processes.items()},
        "events_per_batch": batches,
        "queueing_delay_s": percentiles(delays), "hops": pipeline.hops(published),
        "load_average_after": list(os.getloadavg()),
    })
