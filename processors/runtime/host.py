"""A worker process for batched processors only: their loops, ``/health``, ``/metrics``, signals.

faust is not needed when no faust agent runs (faust's worker refuses to start with no topic to
consume), so such a worker is this small host: the loops run in their threads, a standard
library HTTP server answers ``/health`` and ``/metrics``, and SIGTERM or Ctrl-C stops the loops
cleanly (each commits the batch in hand) before the process exits 0. A loop that fails stops
the worker with exit code 1, so that a supervisor restarts it.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from govbus.processors.runtime import metrics
from govbus.processors.runtime.worker import Registered, health, start_loops, stop_loops
from govbus.settings import Settings

log = logging.getLogger("govbus.processors.runtime.host")
LEVELS = {"crit": logging.CRITICAL, "error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO,
          "debug": logging.DEBUG}


def serve(settings: Settings, chosen: list[str], registered: dict[str, Registered], loglevel: str = "info") -> None:
    logging.basicConfig(level=LEVELS.get(loglevel, logging.INFO), stream=sys.stderr,
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s", force=True)
    started = time.time()
    stopping = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            if self.path.startswith("/health"):
                body, ready = health(chosen, registered, started)
                self._answer(200 if ready else 503, json.dumps(body, ensure_ascii=False).encode(), "application/json")
            elif self.path.startswith("/metrics"):
                self._answer(200, metrics.exposition(), "text/plain; version=0.0.4")
            else:
                self._answer(404, b"not found\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the standard library's name
            log.debug(format, *args)

    server = ThreadingHTTPServer((settings.processor_host, settings.processor_port), Handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    log.info("worker for %s serving /health and /metrics on %s:%d", ", ".join(chosen), settings.processor_host,
             settings.processor_port)
    start_loops(registered)
    while not stopping.wait(0.5):
        pass
    failed = [name for name, processor in registered.items() if processor.loop and processor.loop.failed]
    stop_loops(registered)
    server.shutdown()
    log.info("worker stopped%s", f" after a failure of {', '.join(failed)}" if failed else "")
    sys.exit(1 if failed else 0)
