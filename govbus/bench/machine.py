"""What the figures were measured on: the machine, the versions, the date.

A benchmark result without the machine and the versions cannot be compared with anything;
every results file starts with this.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("kafka-python", "faust-streaming", "fastavro", "aiokafka", "psycopg", "psutil", "pyinstrument")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        return None


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def kafka_version() -> str | None:
    try:
        from govbus.broker.runtime import kafka_version as pinned

        return pinned()
    except Exception:  # noqa: BLE001 - a missing pom must not stop the report
        return None


def python_speed(rounds: int = 2_000, repeats: int = 5) -> float:
    """Microseconds per round of a fixed pure-Python workload (a record to JSON and back, a
    SHA-256, a dict built): lower is faster. Why: the machines are shared, and the same code
    measured 99 µs per event in the gate at one hour and 150 µs three hours later (hot path
    scenario, 2026-12-07); a figure that moves with the machine and not with the bus says how
    far runs of different hours compare. The best of `repeats`."""
    def one(number: int) -> dict[str, Any]:
        record = {"entity_id": f"{number:018d}", "name": f"张三{number}", "fields": [str(i) for i in range(8)]}
        text = json.dumps(record, sort_keys=True, ensure_ascii=False)
        digest = hashlib.sha256(text.encode()).hexdigest()
        return {key: (value, digest[:8]) for key, value in json.loads(text).items()}

    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for number in range(rounds):
            one(number)
        best = min(best, time.perf_counter() - started)
    return round(best / rounds * 1e6, 2)


def describe() -> dict[str, Any]:
    """Machine, versions and date, as the first part of every results file."""
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "memory_gib": round((memory_bytes() or 0) / 2**30, 1),
                    "cpu_model": cpu_model(), "system": f"{platform.system()} {platform.release()}",
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                    "python_speed_us_at_start": python_speed()},
        "versions": {"python": platform.python_version(), "kafka": kafka_version(), **library_versions()},
    }
