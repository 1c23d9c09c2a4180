"""Runs processors in one worker process: ``govbus processors run gate [router …]``.

The gate and the router run on the batched runtime (``batches``: a thread each, on
confluent-kafka, one Kafka transaction per batch). The freshness processor runs as faust
agents and timers. A worker that runs freshness is a faust worker that also hosts the batched
loops; a worker without it needs no faust and is a plain process (``host``). Either way it
serves ``/health`` and ``/metrics`` on ``GOVBUS_PROCESSOR_HOST``:``GOVBUS_PROCESSOR_PORT`` so that
an operator, a container health check or a test can tell when it is ready, and stops cleanly
on SIGTERM or Ctrl-C: each loop finishes and commits the batch in hand, then leaves its group.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from govbus import collector
from govbus.processors.runtime.batches import BatchLoop, BatchProcessor
from govbus.schemas.codec import default_codec
from govbus.settings import Settings
from govbus.topics.catalog import Catalog, load_catalog


@dataclass(frozen=True)
class Registered:
    """What a processor tells the worker: its counts for /health, whether it is ready, the
    input partitions it holds (None: faust's consumer holds them), and its batched loop."""

    stats: Callable[[], dict]
    ready: Callable[[], bool] = lambda: True
    assigned: Callable[[], list[str]] | None = None
    loop: BatchLoop | None = None
    before_start: list[Callable[[], None]] = field(default_factory=list)


def group_id(settings: Settings, processor: str) -> str:
    """One consumer group per processor kind, whatever else a worker runs: every gate instance
    shares the ingest partitions, every router instance the shared ones."""
    return f"{settings.topic_prefix}govbus-{processor}"


def batched(settings: Settings, processor: BatchProcessor, ready: Callable[[], bool] | None = None,
            before_start: list[Callable[[], None]] | None = None) -> Registered:
    loop = BatchLoop(settings, group_id(settings, processor.name), processor)
    return Registered(processor.stats, (lambda: loop.healthy() and ready()) if ready else loop.healthy,
                      lambda: sorted(f"{topic}[{partition}]" for topic, partition in loop.assignment),
                      loop, before_start or [])


def gate(settings: Settings, catalog: Catalog) -> Registered:
    """The gate of every library (``gate.loop``)."""
    from govbus.processors.gate.loop import GateBatches

    return batched(settings, GateBatches(settings, catalog))


def router(settings: Settings, catalog: Catalog) -> Registered:
    """The router of every library (``router.loop``), and the subscription watcher it reads
    the active subscriptions from (a daemon thread for the worker's whole life)."""
    from govbus.processors.router.logic import SubscriptionBook
    from govbus.processors.router.loop import RouterBatches

    book = SubscriptionBook(settings, catalog, default_codec())
    watcher = threading.Thread(target=book.watch, args=(threading.Event(),), name="subscription-watcher", daemon=True)
    return batched(settings, RouterBatches(settings, catalog, book), book.ready.is_set, [watcher.start])


def authority(settings: Settings, catalog: Catalog) -> Registered:
    """The authority processor (``authority``): a thread folding every principal's acts; it
    needs the govbus-authority principal (it alters ACLs), so it runs in a worker of its own."""
    from govbus.processors.governance.authority import AuthorityProcessor
    from govbus.schemas.registry import default_registry

    processor = AuthorityProcessor(settings, catalog, default_registry())
    thread = threading.Thread(target=processor.run, args=(threading.Event(),), name="authority", daemon=True)
    return Registered(processor.stats, processor.ready.is_set, lambda: [], None, [thread.start])


BATCHED: dict[str, Callable[[Settings, Catalog], Registered]] = {"gate": gate, "router": router,
                                                                "authority": authority}
PROCESSORS = ("gate", "router", "freshness")  # `all`: the govbus-processors principal's
SEPARATE = ("authority",)  # each in a worker logged in as its own principal


def chosen_processors(processors: Iterable[str]) -> list[str]:
    chosen = sorted(set(processors))
    unknown = [name for name in chosen if name not in (*PROCESSORS, *SEPARATE)]
    if unknown:
        raise ValueError(f"unknown processor(s) {', '.join(unknown)}; choose from {', '.join((*PROCESSORS, *SEPARATE))}")
    return chosen


def health(chosen: list[str], registered: dict[str, Registered], started: float,
           faust_held: list[str] | None = None, faust_ready: bool = True) -> tuple[dict, bool]:
    """The /health body, and whether the worker is ready: every processor ready (a faust one
    also needs partitions)."""
    assigned: list[str] = []
    ready = True
    for processor in registered.values():
        if processor.assigned is None:
            assigned += faust_held or []
            ready = ready and faust_ready and bool(faust_held)
        else:
            assigned += processor.assigned()
        ready = ready and processor.ready()
    return {"status": "ready" if ready else "starting", "processors": chosen,
            "uptime_seconds": round(time.time() - started, 1), "assigned": assigned,
            "counts": {name: processor.stats() for name, processor in registered.items()},
            "loops": {name: processor.loop.stats() for name, processor in registered.items() if processor.loop}}, ready


def start_loops(registered: dict[str, Registered]) -> None:
    for processor in registered.values():
        for action in processor.before_start:
            action()
        if processor.loop is not None:
            processor.loop.start()


def stop_loops(registered: dict[str, Registered]) -> None:
    for processor in registered.values():
        if processor.loop is not None:
            processor.loop.stop()


def build_faust(settings: Settings, chosen: list[str]):  # -> faust.App
    """A faust worker for the freshness agents that also hosts the batched loops."""
    import faust
    from faust.web import Request, Response, View

    from govbus.processors.runtime import metrics
    from govbus.processors.runtime.app import make_app
    from govbus.processors.freshness.agents import register_freshness

    catalog = load_catalog(settings.catalog_dir)
    app = make_app(settings, chosen)
    registered = {name: BATCHED[name](settings, catalog) for name in chosen if name in BATCHED}
    if "freshness" in chosen:
        registered["freshness"] = register_freshness(app, settings, catalog)
    metrics.mount(app)
    started = time.time()

    @app.task
    async def start_batched() -> None:
        start_loops(registered)

    @app.on_before_shutdown.connect
    async def stop_batched(app: faust.App, **kwargs: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, stop_loops, registered)

    @app.page("/health")
    class Health(View):  # noqa: D401 - faust view
        async def get(self, request: Request) -> Response:
            held = sorted(f"{tp.topic}[{tp.partition}]" for tp in app.consumer.assignment()) if app.consumer else []
            body, ready = health(chosen, registered, started, held,
                                 not app.rebalancing and app.tables.recovery.completed.is_set())
            return self.json(body, status=200 if ready else 503)

    return app


def run(settings: Settings, processors: Iterable[str], loglevel: str = "info") -> None:
    chosen = chosen_processors(processors)
    if "freshness" in chosen:
        import faust

        collector.tune()
        faust.Worker(build_faust(settings, chosen), loglevel=loglevel, quiet=True).execute_from_commandline()
        return
    from govbus.processors.runtime.host import serve

    catalog = load_catalog(settings.catalog_dir)
    registered = {name: BATCHED[name](settings, catalog) for name in chosen}
    collector.tune()  # after start-up: the catalog, schemas and loops are never walked again
    serve(settings, chosen, registered, loglevel)
