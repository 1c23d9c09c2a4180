"""What the figures were measured on: the machine, the versions, the date.

A benchmark result without the machine and the versions cannot be compared with anything;
every results file starts with this.
"""

from __future__ import annotations

import os
import platform
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


def describe() -> dict[str, Any]:
    """Machine, versions and date, as the first part of every results file."""
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "memory_gib": round((memory_bytes() or 0) / 2**30, 1),
                    "cpu_model": cpu_model(), "system": f"{platform.system()} {platform.release()}",
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "versions": {"python": platform.python_version(), "kafka": kafka_version(), **library_versions()},
    }
