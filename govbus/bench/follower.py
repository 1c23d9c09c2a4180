"""A benchmark subscriber, as its own process: the subscriber SDK applying one department's
deliveries to its SQLite store, and noting when each change was applied.

    python -m govbus.bench.follower --department health --store sqlite:////tmp/h.db --out DIR [--library L …]

Settings come from the environment (``GOVBUS_*``), as for any govbus process. After each
batch is committed to the store, the SDK calls ``on_change`` for every delivery in it; the
follower writes ``<event id> <applied at> <routed at>`` lines (ms since the epoch) to
``<out>/<department>.applied`` and its count to ``<out>/<department>.status.json``, which the
bench reads. SIGTERM ends it between two batches.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import click

STATUS_EVERY_S = 0.2


def status_path(out: Path, department: str) -> Path:
    return out / f"{department}.status.json"


def applied_path(out: Path, department: str) -> Path:
    return out / f"{department}.applied"


def write_status(out: Path, department: str, **status: Any) -> None:
    path = status_path(out, department)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(status))
    os.replace(temporary, path)


def read_status(out: Path, department: str) -> dict[str, Any]:
    try:
        return json.loads(status_path(out, department).read_text())
    except (OSError, ValueError):
        return {}


def read_applied(out: Path, department: str, column: int = 1) -> dict[str, int]:
    """event id → applied at (ms) — or, with column 2, routed at (ms); the first application
    counts (a re-read is no change)."""
    applied: dict[str, int] = {}
    for line in applied_path(out, department).read_text().splitlines():
        parts = line.split(" ")
        applied.setdefault(parts[0], int(parts[column]))
    return applied


@click.command()
@click.option("--department", required=True)
@click.option("--library", "libraries", multiple=True, default=("population",), show_default=True,
              help="A library it subscribes to; repeat for several.")
@click.option("--store", "store_url", required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
def main(department: str, libraries: tuple[str, ...], store_url: str, out: Path) -> None:
    from govbus import collector
    from govbus.consumers.subscriber import Subscriber
    from govbus.settings import Settings

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    pending: list[str] = []

    def on_change(_library: str, delivery: dict[str, Any]) -> None:
        routed = delivery.get("delivered_at")
        routed_ms = int(routed.timestamp() * 1000) if routed else 0
        pending.append(f"{delivery.get('event_id')} {int(time.time() * 1000)} {routed_ms}\n")

    count, written_at, last = 0, 0.0, None
    with open(applied_path(out, department), "a", encoding="utf-8") as applied, \
            Subscriber(Settings(), department, libraries, store_url, on_change=on_change) as subscriber:
        collector.tune()  # as `govbus subscribe` runs: see govbus.collector
        write_status(out, department, ready=True, applied=0, pid=os.getpid())
        while not stop.is_set():
            subscriber.poll_once(timeout_ms=100)
            if pending:
                applied.writelines(pending)
                applied.flush()
                count += len(pending)
                last = int(pending[-1].split(" ")[1])
                pending.clear()
            if time.monotonic() - written_at > STATUS_EVERY_S:
                write_status(out, department, ready=True, applied=count, last_applied_ms=last, pid=os.getpid())
                written_at = time.monotonic()
        write_status(out, department, ready=True, applied=count, last_applied_ms=last, pid=os.getpid(),
                     stopped=True)


if __name__ == "__main__":
    main()
