"""Runs processors in a faust worker: ``govbus processors run gate [router …]``.

Each processor contributes agents to one faust App, reading its inputs through the worker's
``Inputs`` (in offset order, state restored, committed after the fact); the worker serves
``/health`` on 127.0.0.1 (``GOVBUS_PROCESSOR_PORT``) so that an operator, a container health
check or a test can tell when it is ready, and stops cleanly on SIGTERM or Ctrl-C (faust
finishes the event in hand; the worker flushes the producer and commits what was handled).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import faust
from faust.web import Request, Response, View

from govbus.processors import metrics
from govbus.processors.app import make_app, names
from govbus.processors.freshness import register_freshness
from govbus.processors.gate import GateLogic, Output
from govbus.processors.inputs import Inputs
from govbus.processors.offsets import OffsetLedger
from govbus.processors.partition_store import PartitionStore
from govbus.schemas.codec import default_codec
from govbus.settings import Settings
from govbus.topics.catalog import Catalog, load_catalog

log = logging.getLogger("govbus.processors")
BACKFILL_CHECK_SECONDS = 1.0  # how often a router looks for owned partitions that owe a new approval's backfill

@dataclass(frozen=True)
class Registered:
    """What a processor tells the worker: its counts for /health, and whether it is ready."""

    stats: Callable[[], dict]
    ready: Callable[[], bool] = lambda: True


Registrar = Callable[[faust.App, Settings, Catalog, Inputs], Registered]


def register_gate(app: faust.App, settings: Settings, catalog: Catalog, inputs: Inputs) -> Registered:
    """One agent per library; its golden records kept in a ``PartitionStore`` of ``state.<library>``."""
    topic_names = names(settings)
    codec = default_codec()
    logics: list[GateLogic] = []
    for library in catalog.libraries.values():
        logic = GateLogic(library.library, catalog, codec, topic_names)
        logics.append(logic)
        ingest = sorted(topic_names.ingest(library.library, d) for d in library.sources)
        store = inputs.store(topic_names.state(library.library), ingest)
        agent = _gate_agent(app, inputs, inputs.ledger(ingest), logic, store)
        app.agent(inputs.topic(*ingest), name=f"gate-{library.library}")(agent)
    return Registered(lambda: {logic.library: dict(logic.counts) for logic in logics}, inputs.ready)


def _gate_agent(app: faust.App, inputs: Inputs, ledger: OffsetLedger, logic: GateLogic, store: PartitionStore) -> Callable:
    send = _sender(app)

    async def gate(stream: faust.StreamT) -> None:
        async for event in inputs.admitted(stream, ledger):
            message = event.message
            if not await store.wait(message.partition):
                continue  # the partition was revoked while it was being restored
            step = logic.handle(message.topic, message.partition, message.offset, event.key,
                                event.value, _headers(message.headers), store.get(message.partition, event.key))
            _count("gate", logic.library, step.outputs, logic.names)
            stored = None
            if step.golden is not None:
                store.put(message.partition, event.key, step.golden)
                stored = await send(Output(store.topic, event.key, step.golden, []), partition=message.partition)
            if step.outputs:
                inputs.send_after(stored, step.outputs, send)

    gate.__name__ = f"gate_{logic.library}"
    return gate


def _headers(headers: object) -> list[tuple[str, bytes]]:
    if not headers:
        return []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)  # type: ignore[arg-type]


def register_router(app: faust.App, settings: Settings, catalog: Catalog, inputs: Inputs) -> Registered:
    """An agent per library on ``shared.<library>``, each delivering the backfills its partitions
    owe (see ``backfill``), and the subscription watcher every instance runs."""
    import threading

    from govbus.processors.backfill import Backfill, PartitionBackfills
    from govbus.processors.golden import GoldenFormat
    from govbus.processors.router import RouterLogic, SubscriptionBook

    topic_names = names(settings)
    codec = default_codec()
    book = SubscriptionBook(settings, catalog, codec)
    stop = threading.Event()
    send = _sender(app)
    logics: dict[str, RouterLogic] = {}
    every_backfills: list[PartitionBackfills] = []  # one per library, for /health

    @app.task
    async def watch_subscriptions() -> None:
        # A daemon thread: it follows the topic for the worker's whole life and ends with it.
        threading.Thread(target=book.watch, args=(stop,), name="subscription-watcher", daemon=True).start()

    for library in catalog.libraries.values():
        logic = logics[library.library] = RouterLogic(library.library, settings, codec, book)
        shared = topic_names.shared(library.library)
        heads = inputs.store(topic_names.audit_heads(library.library), [shared])
        backfill = Backfill(logic, settings, GoldenFormat(codec.registry.policy(library.library)))
        ledger = inputs.ledger([shared])
        backfills = PartitionBackfills(backfill, book, heads, send, ledger)
        every_backfills.append(backfills)
        agent = _router_agent(inputs, ledger, logic, heads, book, backfills, send)
        app.agent(inputs.topic(shared), name=f"router-{library.library}")(agent)
        app.task(_repeating(backfills.settle_owned, BACKFILL_CHECK_SECONDS, f"backfill_{library.library}"))

    return Registered(lambda: {"deliveries": {name: logic.deliveries for name, logic in logics.items()},
                               "subscriptions_active": sum(len(p) for p in book.by_library.values()),
                               "backfills_owed": sum(each.owed_count() for each in every_backfills)},
                      lambda: book.ready.is_set() and inputs.ready())


def _router_agent(inputs: Inputs, ledger: OffsetLedger, logic, heads: PartitionStore, book, backfills, send) -> Callable:

    async def route(stream: faust.StreamT) -> None:
        async for event in inputs.admitted(stream, ledger):
            while not book.ready.is_set():
                await asyncio.sleep(0.1)
            message = event.message
            if not await heads.wait(message.partition):
                continue  # the partition was revoked while it was being restored
            await backfills.settle(message.partition, book.projectors(logic.library))
            chain_id = f"{logic.library}/{message.partition}".encode()
            head = heads.get(message.partition, chain_id)
            outputs, new_head = logic.route(event.value, _headers(message.headers), message.partition,
                                            message.offset, int(message.timestamp * 1000),
                                            head.decode() if head else _genesis(),
                                            backfills.covered(message.partition, message.offset))
            _count("router", logic.library, outputs, logic.names)
            for output in outputs:
                await send(output)
            if outputs:
                heads.put(message.partition, chain_id, new_head.encode())
                await send(Output(heads.topic, chain_id, new_head.encode(), []), partition=message.partition)

    route.__name__ = f"route_{logic.library}"
    return route


def _repeating(action: Callable[[], Awaitable[None]], pause: float, name: str) -> Callable[[], Awaitable[None]]:
    """A task that runs `action` for ever with `pause` seconds between the end of one run and the
    next (a faust timer would warn whenever a run, like a backfill, outlasts its interval); a
    failed run is logged and tried again."""
    async def repeat() -> None:
        while True:
            try:
                await action()
            except Exception:  # noqa: BLE001 - said, and tried again after the pause
                log.exception("%s failed; trying again in %.0f s", name, pause)
            await asyncio.sleep(pause)

    repeat.__name__ = name
    return repeat


def _count(processor: str, library: str, outputs: list, topic_names) -> None:
    """The Prometheus counters of one input event and what it produced."""
    metrics.events_in.labels(processor, library).inc()
    for output in outputs:
        kind, _, rest = topic_names.unprefixed(output.topic).partition(".")
        metrics.events_out.labels(processor, library, kind).inc()
        if kind == "dlq":
            reason = dict(output.headers).get("govbus_dlq_reason", b"unknown").decode()
            metrics.dead_letters.labels(processor, library, reason).inc()
        elif kind == "control" and rest == "conflicts":
            metrics.conflicts.labels(library).inc()
        elif kind == "deliver":
            metrics.deliveries.labels(library, rest.partition(".")[0]).inc()


def _genesis() -> str:
    from govbus.processors.audit import GENESIS

    return GENESIS


def _sender(app: faust.App) -> Callable:
    topics: dict[str, faust.TopicT] = {}

    async def send(output, partition: int | None = None) -> asyncio.Future:
        """Hand `output` to the producer; the future it returns is done when the broker has it."""
        if output.topic not in topics:
            topics[output.topic] = app.topic(output.topic, key_serializer="raw", value_serializer="raw")
        return await topics[output.topic].send(key=output.key, value=output.value, headers=output.headers,
                                               partition=partition)

    return send


PROCESSORS: dict[str, Registrar] = {"gate": register_gate, "router": register_router, "freshness": register_freshness}


def build(settings: Settings, processors: Iterable[str]) -> faust.App:
    chosen = sorted(set(processors))
    unknown = [name for name in chosen if name not in PROCESSORS]
    if unknown:
        raise ValueError(f"unknown processor(s) {', '.join(unknown)}; choose from {', '.join(PROCESSORS)}")
    catalog = load_catalog(settings.catalog_dir)
    app = make_app(settings, chosen)
    inputs = Inputs(app, settings)
    registered = {name: PROCESSORS[name](app, settings, catalog, inputs) for name in chosen}
    inputs.start_committing(app.conf.broker_commit_interval)
    metrics.mount(app)
    started = time.time()

    @app.page("/health")
    class Health(View):  # noqa: D401 - faust view
        async def get(self, request: Request) -> Response:
            recovery = app.tables.recovery
            assigned = sorted(f"{tp.topic}[{tp.partition}]" for tp in app.consumer.assignment()) if app.consumer else []
            ready = (bool(assigned) and not app.rebalancing and recovery.completed.is_set()
                     and all(processor.ready() for processor in registered.values()))
            return self.json({
                "status": "ready" if ready else "starting", "processors": chosen,
                "uptime_seconds": round(time.time() - started, 1), "assigned": assigned,
                "counts": {name: processor.stats() for name, processor in registered.items()},
            }, status=200 if ready else 503)

    return app


def run(settings: Settings, processors: Iterable[str], loglevel: str = "info") -> None:
    app = build(settings, processors)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
