"""Runs processors in a faust worker: ``govbus processors run gate [router …]``.

Each processor contributes agents (and tables) to one faust App; the worker serves
``/health`` on 127.0.0.1 (``GOVBUS_PROCESSOR_PORT``) so that an operator, a container health
check or a test can tell when it is ready, and stops cleanly on SIGTERM or Ctrl-C (faust
finishes the event in hand, flushes the producer and commits the offsets).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import faust
from faust.web import Request, Response, View

from govbus.processors import metrics
from govbus.processors.app import make_app, names
from govbus.processors.freshness import register_freshness
from govbus.processors.gate import GateLogic, Output
from govbus.processors.partition_store import PartitionStore
from govbus.schemas.codec import default_codec
from govbus.settings import Settings
from govbus.topics.catalog import Catalog, load_catalog

log = logging.getLogger("govbus.processors")

@dataclass(frozen=True)
class Registered:
    """What a processor tells the worker: its counts for /health, and whether it is ready."""

    stats: Callable[[], dict]
    ready: Callable[[], bool] = lambda: True


Registrar = Callable[[faust.App, Settings, Catalog], Registered]


def register_gate(app: faust.App, settings: Settings, catalog: Catalog) -> Registered:
    """One agent per library; its golden records kept in a ``PartitionStore`` of ``state.<library>``."""
    topic_names = names(settings)
    codec = default_codec()
    logics: list[GateLogic] = []
    stores: dict[str, tuple[PartitionStore, frozenset[str]]] = {}
    for library in catalog.libraries.values():
        logic = GateLogic(library.library, catalog, codec, topic_names)
        logics.append(logic)
        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        ingest = frozenset(topic_names.ingest(library.library, d) for d in library.sources)
        sources = app.topic(*sorted(ingest), **raw)
        store = PartitionStore(settings, topic_names.state(library.library))
        stores[library.library] = (store, ingest)
        app.agent(sources, name=f"gate-{library.library}")(_gate_agent(app, logic, store))

    _restore_on_assignment(app, list(stores.values()))
    return Registered(lambda: {logic.library: dict(logic.counts) for logic in logics},
                      lambda: all(store.ready() for store, _ in stores.values()))


def _restore_on_assignment(app: faust.App, stores: list[tuple[PartitionStore, frozenset[str]]]) -> None:
    """On every rebalance, each store restores the partitions its input topics gained."""
    import asyncio

    @app.on_partitions_assigned.connect
    async def restore(app: faust.App, assigned: set, **kwargs: object) -> None:
        for store, inputs in stores:
            partitions = {tp.partition for tp in assigned if tp.topic in inputs}
            asyncio.ensure_future(store.assign(partitions))  # the agents wait per partition


def _gate_agent(app: faust.App, logic: GateLogic, store: PartitionStore) -> Callable:
    send = _sender(app)

    async def gate(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            if not await store.wait(message.partition):
                continue  # the partition was revoked while it was being restored
            step = logic.handle(message.topic, message.partition, message.offset, event.key,
                                event.value, _headers(message.headers), store.get(message.partition, event.key))
            _count("gate", logic.library, step.outputs, logic.names)
            if step.golden is not None:
                store.put(message.partition, event.key, step.golden)
                await send(Output(store.topic, event.key, step.golden, []), partition=message.partition)
            for output in step.outputs:
                await send(output)

    gate.__name__ = f"gate_{logic.library}"
    return gate


def _headers(headers: object) -> list[tuple[str, bytes]]:
    if not headers:
        return []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)  # type: ignore[arg-type]


def register_router(app: faust.App, settings: Settings, catalog: Catalog) -> Registered:
    """An agent per library on ``shared.<library>``, the subscription watcher, and the
    backfill agent on ``control.subscriptions`` (one partition: one instance does each)."""
    import asyncio
    import threading

    from govbus.processors.golden import GoldenFormat
    from govbus.processors.router import Backfill, RouterLogic, SubscriptionBook
    from govbus.processors import subscriptions as rules

    topic_names = names(settings)
    codec = default_codec()
    book = SubscriptionBook(settings, catalog, codec)
    stop = threading.Event()
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    send = _sender(app)
    logics: dict[str, RouterLogic] = {}

    @app.task
    async def watch_subscriptions() -> None:
        # A daemon thread: it follows the topic for the worker's whole life and ends with it.
        threading.Thread(target=book.watch, args=(stop,), name="subscription-watcher", daemon=True).start()

    heads_stores = []
    for library in catalog.libraries.values():
        logic = logics[library.library] = RouterLogic(library.library, settings, codec, book)
        heads = PartitionStore(settings, topic_names.audit_heads(library.library))
        heads_stores.append((heads, frozenset({topic_names.shared(library.library)})))
        source = app.topic(topic_names.shared(library.library), **raw)
        app.agent(source, name=f"router-{library.library}")(_router_agent(logic, heads, book, send))
    _restore_on_assignment(app, heads_stores)

    backfills = {name: Backfill(logic, settings, GoldenFormat(codec.registry.policy(name))) for name, logic in logics.items()}

    async def backfill(stream: faust.StreamT) -> None:
        async for event in stream.events():
            if event.value is None:
                continue
            subscription = rules.from_json(event.value)
            if subscription.state != "approved" or subscription.decision.state != "approved":
                continue
            while not book.ready.is_set():
                await asyncio.sleep(0.1)
            book.apply([(event.key, event.value)])  # its delivery topic exists before we write to it
            outputs = await asyncio.get_running_loop().run_in_executor(None, backfills[subscription.library].run, subscription)
            for output in outputs:
                await send(output)
            log.info("backfilled %d deliveries for %s", len(outputs) // 2, subscription.id)

    app.agent(app.topic(topic_names.bus("control.subscriptions"), **raw), name="router-backfill")(backfill)
    return Registered(lambda: {"deliveries": {name: logic.deliveries for name, logic in logics.items()},
                               "subscriptions_active": sum(len(p) for p in book.by_library.values())},
                      lambda: book.ready.is_set() and all(store.ready() for store, _ in heads_stores))


def _router_agent(logic, heads: PartitionStore, book, send) -> Callable:
    import asyncio

    async def route(stream: faust.StreamT) -> None:
        async for event in stream.events():
            while not book.ready.is_set():
                await asyncio.sleep(0.1)
            message = event.message
            if not await heads.wait(message.partition):
                continue  # the partition was revoked while it was being restored
            chain_id = f"{logic.library}/{message.partition}".encode()
            head = heads.get(message.partition, chain_id)
            outputs, new_head = logic.route(event.value, _headers(message.headers), message.partition,
                                            message.offset, int(message.timestamp * 1000),
                                            head.decode() if head else _genesis())
            _count("router", logic.library, outputs, logic.names)
            for output in outputs:
                await send(output)
            if outputs:
                heads.put(message.partition, chain_id, new_head.encode())
                await send(Output(heads.topic, chain_id, new_head.encode(), []), partition=message.partition)

    route.__name__ = f"route_{logic.library}"
    return route


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

    async def send(output, partition: int | None = None) -> None:
        if output.topic not in topics:
            topics[output.topic] = app.topic(output.topic, key_serializer="raw", value_serializer="raw")
        await topics[output.topic].send(key=output.key, value=output.value, headers=output.headers, partition=partition)

    return send


PROCESSORS: dict[str, Registrar] = {"gate": register_gate, "router": register_router, "freshness": register_freshness}


def build(settings: Settings, processors: Iterable[str]) -> faust.App:
    chosen = sorted(set(processors))
    unknown = [name for name in chosen if name not in PROCESSORS]
    if unknown:
        raise ValueError(f"unknown processor(s) {', '.join(unknown)}; choose from {', '.join(PROCESSORS)}")
    catalog = load_catalog(settings.catalog_dir)
    app = make_app(settings, chosen)
    registered = {name: PROCESSORS[name](app, settings, catalog) for name in chosen}
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
