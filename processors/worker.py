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

import faust
from faust.web import Request, Response, View

from govbus.processors.app import make_app, names
from govbus.processors.gate import GateLogic
from govbus.schemas.codec import default_codec
from govbus.settings import Settings
from govbus.topics.catalog import Catalog, load_catalog

log = logging.getLogger("govbus.processors")

Registrar = Callable[[faust.App, Settings, Catalog], Callable[[], dict]]


def register_gate(app: faust.App, settings: Settings, catalog: Catalog) -> Callable[[], dict]:
    """One agent and one table per library; the table's changelog is ``state.<library>``."""
    topic_names = names(settings)
    codec = default_codec()
    logics: list[GateLogic] = []
    for library in catalog.libraries.values():
        logic = GateLogic(library.library, catalog, codec, topic_names)
        logics.append(logic)
        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        sources = app.topic(*(topic_names.ingest(library.library, d) for d in library.sources), **raw)
        changelog = app.topic(topic_names.state(library.library), partitions=library.partitions, **raw)
        table = app.Table(f"golden-{library.library}", default=None, partitions=library.partitions,
                          key_type=bytes, value_type=bytes, changelog_topic=changelog)
        app.agent(sources, name=f"gate-{library.library}")(_gate_agent(app, logic, table))
    return lambda: {logic.library: dict(logic.counts) for logic in logics}


def _gate_agent(app: faust.App, logic: GateLogic, table: faust.Table) -> Callable:
    topics: dict[str, faust.TopicT] = {}

    def topic(name: str) -> faust.TopicT:
        if name not in topics:
            topics[name] = app.topic(name, key_serializer="raw", value_serializer="raw")
        return topics[name]

    async def gate(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            step = logic.handle(message.topic, message.partition, message.offset, event.key,
                                event.value, _headers(message.headers), table.get(event.key))
            if step.golden is not None:
                table[event.key] = step.golden
            for output in step.outputs:
                await topic(output.topic).send(key=output.key, value=output.value, headers=output.headers)

    gate.__name__ = f"gate_{logic.library}"
    return gate


def _headers(headers: object) -> list[tuple[str, bytes]]:
    if not headers:
        return []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)  # type: ignore[arg-type]


PROCESSORS: dict[str, Registrar] = {"gate": register_gate}


def build(settings: Settings, processors: Iterable[str]) -> faust.App:
    chosen = sorted(set(processors))
    unknown = [name for name in chosen if name not in PROCESSORS]
    if unknown:
        raise ValueError(f"unknown processor(s) {', '.join(unknown)}; choose from {', '.join(PROCESSORS)}")
    catalog = load_catalog(settings.catalog_dir)
    app = make_app(settings, chosen)
    stats = {name: PROCESSORS[name](app, settings, catalog) for name in chosen}
    started = time.time()

    @app.page("/health")
    class Health(View):  # noqa: D401 - faust view
        async def get(self, request: Request) -> Response:
            recovery = app.tables.recovery
            assigned = sorted(f"{tp.topic}[{tp.partition}]" for tp in app.consumer.assignment()) if app.consumer else []
            ready = bool(assigned) and not app.rebalancing and recovery.completed.is_set()
            return self.json({
                "status": "ready" if ready else "starting", "processors": chosen,
                "uptime_seconds": round(time.time() - started, 1), "assigned": assigned,
                "counts": {name: report() for name, report in stats.items()},
            }, status=200 if ready else 503)

    return app


def run(settings: Settings, processors: Iterable[str], loglevel: str = "info") -> None:
    app = build(settings, processors)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
