"""Hot path, in process: the gate's and the router's own work per event, without Kafka.

`GateLogic.handle` and `RouterLogic.route` run over the benchmark's real encoded events (new
people, then name changes: an empty and a populated golden record), the gate's table held in
a dict as the faust table would hold it, the router with the four benchmark subscriptions.
What remains is the per-event Python cost of the bus's decisions — decoding, validation,
one number one source, the golden record, projection, masking, encoding and the audit
chain — which the end-to-end scenarios add on top of the Kafka ceiling. It is the least noisy
figure of the bench (no broker, one process), so it is the one to compare before and after
a change to the hot path. With ``profile`` the runs are profiled with pyinstrument and the
profiles written beside the results.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from govbus import collector
from govbus.bench import workload
from govbus.bench.context import Context
from govbus.bench.subscriptions import approved_in_memory
from govbus.processors.gate.logic import GateLogic
from govbus.processors.router.projection import Projector
from govbus.processors.router.logic import RouterLogic, SubscriptionBook
from govbus.schemas.codec import default_codec
from govbus.settings import Settings
from govbus.topics.catalog import load_catalog
from govbus.topics.names import TopicNames

PARTITIONS = 6


def run(context: Context, profile: bool = True) -> dict[str, Any]:
    settings = Settings(topic_prefix="bench-hot.", catalog_dir=context.settings.catalog_dir,
                        key_secret=context.settings.key_secret)
    count = context.sizes.events
    messages = workload.encoded(workload.population_changes(count, seed=5), settings.key_secret.encode())
    catalog, codec, names = load_catalog(settings.catalog_dir), default_codec(), TopicNames(settings.topic_prefix)
    topic = names.ingest(workload.LIBRARY, workload.SOURCE)

    def gate_pass() -> list[Any]:
        gate, table, shared = GateLogic(workload.LIBRARY, catalog, codec, names,
                                              secret=settings.key_secret.encode()), {}, []
        for offset, (key, value, headers) in enumerate(messages):
            step = gate.handle(topic, hash(key) % PARTITIONS, offset, key, value, headers, table.get(key))
            if step.golden is not None:
                table[key] = step.golden
            shared += [output for output in step.outputs if output.topic == gate.shared_topic]
        return shared

    book = SubscriptionBook(settings, catalog, codec)
    book.by_library[workload.LIBRARY] = tuple(Projector.for_subscription(s, codec.registry, settings.key_secret.encode())
                                              for s in approved_in_memory(catalog, codec.registry))

    def router_pass(shared: list[Any]) -> int:
        router, heads, outputs = RouterLogic(workload.LIBRARY, settings, codec, book), {}, 0
        now_ms = int(time.time() * 1000)
        for offset, output in enumerate(shared):
            partition = hash(output.key) % PARTITIONS
            routed, heads[partition] = router.route(output.value, output.headers, partition, offset, now_ms,
                                                    heads.get(partition, _genesis()))
            outputs += len(routed)
        return outputs

    gate_pass()  # warm: imports, caches, the codec's parsed schemas
    collector.tune()  # the worker's garbage-collector settings
    gate_seconds, shared = _timed(gate_pass)
    router_seconds, outputs = _timed(lambda: router_pass(shared))
    result = {
        "events": count, "shared_changes": len(shared), "router_outputs": outputs,
        "gate_us_per_event": round(gate_seconds / count * 1e6, 1),
        "router_us_per_event": round(router_seconds / max(1, len(shared)) * 1e6, 1),
        "gate_events_per_s": round(count / gate_seconds, 1),
        "router_events_per_s": round(len(shared) / router_seconds, 1),
    }
    if profile:
        result["profiles"] = {"gate": _profile(gate_pass, context.out / "profile-gate.txt"),
                              "router": _profile(lambda: router_pass(shared), context.out / "profile-router.txt")}
    return result


def _timed(work) -> tuple[float, Any]:
    started = time.perf_counter()
    value = work()
    return time.perf_counter() - started, value


def _profile(work, path: Path) -> str | None:
    """Profile one pass with pyinstrument (optional dependency); the text report's path."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return None
    profiler = Profiler(interval=0.0005)
    profiler.start()
    work()
    profiler.stop()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
    return str(path)


def _genesis() -> str:
    from govbus.processors.governance.audit import GENESIS

    return GENESIS
