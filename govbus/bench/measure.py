"""Measuring: percentiles of delays, CPU seconds and peak memory of the processes involved.

Percentiles are nearest-rank over every measured value (the bench keeps them all; it is
short). CPU and memory come from psutil: CPU seconds as the difference of the processes'
user+system times over the measured window, peak memory as the kernel's high-water mark of
the resident set (``VmHWM``) where Linux has it, else the largest RSS sampled.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

QUANTILES = (50, 95, 99)

BROKER = "broker (Kafka)"  # the name under which a watch counts the local broker's processes


def percentiles(values: Iterable[float], quantiles: Iterable[int] = QUANTILES) -> dict[str, float | None]:
    """{"p50": …, "p95": …, "p99": …, "max": …, "count": n} (nearest rank); None when empty."""
    ordered = sorted(values)
    found: dict[str, float | None] = {}
    for quantile in quantiles:
        found[f"p{quantile}"] = ordered[max(0, math.ceil(quantile / 100 * len(ordered)) - 1)] if ordered else None
    found["max"] = ordered[-1] if ordered else None
    found["mean"] = sum(ordered) / len(ordered) if ordered else None
    found["count"] = len(ordered)
    return found


def rounded(value: Any, digits: int = 3) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, Mapping):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item, digits) for item in value]
    return value


def peak_rss(process: psutil.Process) -> int | None:
    """The process's peak resident set (bytes), from /proc/<pid>/status VmHWM."""
    try:
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


@dataclass
class Watched:
    name: str
    process: psutil.Process
    cpu_start: float = 0.0
    cpu_end: float | None = None
    rss_peak_sampled: int = 0
    rss_peak: int | None = None
    cpu_total: float | None = None  # of a process that ended in the window (see ProcessWatch.ended)

    def cpu(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def sample(self) -> None:
        try:
            self.rss_peak_sampled = max(self.rss_peak_sampled, self.process.memory_info().rss)
            self.rss_peak = peak_rss(self.process) or self.rss_peak
        except psutil.Error:
            pass


@dataclass
class ProcessWatch:
    """CPU seconds and peak memory of named processes over a window (``start`` … ``stop``)."""

    interval: float = 0.25
    watched: dict[str, Watched] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def add(self, name: str, pid: int | None = None) -> None:
        self.watched[name] = Watched(name, psutil.Process(pid or os.getpid()))

    def ended(self, name: str, cpu_seconds: float) -> None:
        """A watched child that ended in the window used `cpu_seconds` in all (its own count
        from the kernel once reaped: see ``child_cpu``; psutil cannot read an ended process)."""
        self.watched[name].cpu_total = cpu_seconds

    def add_broker(self, pids: list[int]) -> None:
        """The local broker's nodes, named so that ``per_thousand`` keeps them apart."""
        for number, pid in enumerate(pids, start=1):
            self.add(BROKER if len(pids) == 1 else f"{BROKER} node {number}", pid)

    def start(self) -> ProcessWatch:
        for entry in self.watched.values():
            entry.cpu_start = entry.cpu()
            entry.sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="bench-process-watch", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            for entry in self.watched.values():
                entry.sample()

    def stop(self) -> dict[str, dict[str, Any]]:
        """Per process: CPU seconds in the window and peak RSS in MiB."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        report = {}
        for name, entry in self.watched.items():
            try:
                entry.sample()
                entry.cpu_end = entry.cpu() if entry.cpu_total is None else entry.cpu_start + entry.cpu_total
            except psutil.Error:
                entry.cpu_end = entry.cpu_start
            peak = entry.rss_peak or entry.rss_peak_sampled
            report[name] = {"cpu_seconds": round(entry.cpu_end - entry.cpu_start, 3),
                            "peak_rss_mib": round(peak / 2**20, 1)}
        return report


def events_per_batch(before: Mapping[str, Mapping[str, int]], after: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Per processor, the events of one transaction on average between two batch counts: the
    fixed cost of a transaction (markers on every partition written, the offsets' commit) is
    shared by this many events."""
    found = {}
    for name, now in after.items():
        earlier = before.get(name, {"batches": 0, "events": 0})
        batches = now["batches"] - earlier["batches"]
        if batches > 0:
            found[name] = round((now["events"] - earlier["events"]) / batches, 1)
    return found


def per_thousand(cpu: Mapping[str, Mapping[str, Any]], events: int) -> dict[str, float]:
    """CPU seconds per 1000 events, per process; ``total`` of the bus's (and the bench
    driver's) processes, as earlier runs reported it, and ``total_with_broker`` when the
    broker was watched too: the machine's whole cost of the work, which is what two cores
    have to carry."""
    shares = {name: round(entry["cpu_seconds"] * 1000 / events, 4) for name, entry in cpu.items()} if events else {}
    shares["total"] = round(sum(value for name, value in shares.items() if not name.startswith(BROKER)), 4)
    if any(name.startswith(BROKER) for name in shares):
        shares["total_with_broker"] = round(sum(value for name, value in shares.items() if name != "total"), 4)
    return shares


STEADY_SHARE = 0.1  # a steady-state rate leaves out the first and the last tenth of the events


def steady_rate(progress: Iterable[Sequence[tuple[float, int]]], events: int,
                share: float = STEADY_SHARE) -> float | None:
    """Events per second once every stage is busy: from the moment every store had applied
    `share` of the `events` to the moment every store had applied all but `share` of them.
    `progress`: per store, (time in seconds, events applied so far) points in time order — one
    per event, or one per batch committed. None when a store never got that far.

    Why: a whole-run rate counts the pipeline filling and draining, and a short run of a fast
    pipeline is mostly that (the topology ceiling moved 5,456 events/s over 20,000 events and
    7,443 over 60,000, while the bus moved 2,555 and 2,572): the whole-run ratio flattered the
    slower of the two."""
    low, high = math.ceil(share * events), math.ceil((1 - share) * events)
    if events <= 0 or high <= low:
        return None
    starts, ends = [], []
    for points in progress:
        first = next((moment for moment, applied in points if applied >= low), None)
        last = next((moment for moment, applied in points if applied >= high), None)
        if first is None or last is None:
            return None
        starts.append(first)
        ends.append(last)
    if not starts:
        return None
    seconds = max(ends) - max(starts)
    return (high - low) / seconds if seconds > 0 else None


def progress_of(applied_at: Iterable[float]) -> list[tuple[float, int]]:
    """One (time, applied so far) point per event, from each event's applied time."""
    return [(moment, number) for number, moment in enumerate(sorted(applied_at), start=1)]


class Clock:
    """Wall time since a start, for rates."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.started


def child_cpu() -> float:
    """CPU seconds of this process's ended and reaped children so far: the difference over a
    child's ``wait`` is that child's own."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
