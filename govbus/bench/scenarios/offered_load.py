"""Bus end to end at a fixed offered load: freshness from the source's publish call to the
change applied in each subscriber's store.

For each rate (events per second) the source publishes paced changes for a fixed time;
every change is followed to each of the four stores (the subscriber SDK's ``on_change``
after the store's commit, joined by event id). Percentiles p50/p95/p99 are over every
(change, department) pair. A rate the bus cannot sustain on this machine shows as a backlog:
`kept_up` false, and delays that grow with the run's length rather than a freshness.
"""

from __future__ import annotations

from typing import Any

from govbus.bench import workload
from govbus.bench.context import Context
from govbus.bench.harness import freshness, publish_all, shared_pipeline
from govbus.bench.measure import events_per_batch, per_thousand, percentiles, rounded

CATCH_UP_S = 10.0  # after the last publish, a bus that keeps up has applied everything within this


def run(context: Context) -> dict[str, Any]:
    pipeline = shared_pipeline(context)
    results = {}
    for number, rate in enumerate(context.sizes.rates):
        count = max(1, int(rate * context.sizes.offered_seconds))
        records = workload.population_changes(count, seed=100 + number)
        before, batches_before = pipeline.applied_counts(), pipeline.batch_counts()
        watch = pipeline.watch().start()
        published, first, last = publish_all(pipeline, records, rate=rate)
        targets = {department: before[department] + count for department in before}
        kept_up = pipeline.wait_applied(targets, timeout=CATCH_UP_S)
        finished = kept_up or pipeline.wait_applied(targets, timeout=max(60.0, 3 * context.sizes.offered_seconds))
        processes = watch.stop()
        batches = events_per_batch(batches_before, pipeline.batch_counts())
        delays, missing = freshness(published, pipeline.applied())
        per_department = {}
        applied = pipeline.applied()
        for department in applied:
            one, _ = freshness(published, {department: applied[department]})
            per_department[department] = percentiles(one)
        results[str(rate)] = rounded({
            "offered_events_per_s": rate, "seconds": context.sizes.offered_seconds, "events": count,
            "achieved_publish_events_per_s": count / max(1e-9, last - first),
            "kept_up": kept_up, "finished": finished, "not_applied": missing,
            "freshness_s": percentiles(delays), "freshness_s_by_department": per_department,
            "hops": pipeline.hops(published), "events_per_batch": batches,
            "batch_seconds": pipeline.batch_timings(),
            "cpu_seconds_per_1000_events": per_thousand(processes, count),
            "peak_rss_mib": {name: entry["peak_rss_mib"] for name, entry in processes.items()},
        })
        context.echo(f"  offered {rate}/s: p99 {results[str(rate)]['freshness_s']['p99']} s, kept up: {kept_up}")
    # The last scenario on this bus: a rate it could not sustain leaves a backlog that would
    # take the CPU from the scenarios after it, so the bus is stopped now.
    context.shared.pop("pipeline").stop()
    return {"rates": results}
