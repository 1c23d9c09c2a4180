"""Progress of a long publish: records so far, their rate and, for a file, the time left.

A source's initial load (``govbus publish`` of tens of millions of records) runs for hours, so
its operator needs to know how far it is and when it will end. Records cannot be counted
ahead without reading the file twice, but the file's size is known: the share of bytes read
says how far the publish is, and the rate of the bytes says how long the rest will take. (Time
left comes from bytes, not records, because records differ in length; the expected number of
records is the records so far scaled by the same share.) Standard input from a pipe has no
size: then only records and rate are shown. Nothing here holds the input: its position is
asked from the open file when a line is due.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TextIO

TERMINAL_SECONDS = 0.2
"""How often the live line on a terminal is redrawn."""
LOG_SECONDS = 10.0
"""How often a line is written when standard error is not a terminal (a job's log)."""


@dataclass(frozen=True, slots=True)
class InputSize:
    """A regular file's size in bytes, and how to ask how many of them have been read."""

    total: int
    position: Callable[[], int]


def measure_input(stream: IO[str]) -> InputSize | None:
    """The size of ``stream`` when it is a regular file (a path, or standard input redirected
    from a file); None for a pipe, a terminal or anything else without a size."""
    try:
        info = os.fstat(stream.fileno())
        buffer = stream.buffer  # type: ignore[attr-defined]
        buffer.tell()
    except (AttributeError, OSError, ValueError):
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size <= 0:
        return None
    return InputSize(info.st_size, buffer.tell)


def time_left(bytes_read: int, total_bytes: int, seconds: float) -> float | None:
    """Seconds until ``total_bytes`` are read at the rate the first ``bytes_read`` took
    ``seconds``; None before there is a rate to go by."""
    if bytes_read <= 0 or seconds <= 0:
        return None
    return max(total_bytes - bytes_read, 0) * seconds / bytes_read


def expected_records(records: int, bytes_read: int, total_bytes: int) -> int | None:
    """The records the whole input will hold, if the rest is like what was read."""
    if bytes_read <= 0 or records <= 0:
        return None
    return max(records, round(records * total_bytes / bytes_read))


def duration(seconds: float) -> str:
    """A duration as a person reads it: ``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def describe(published: int, rejected: int, seconds: float, input_size: InputSize | None = None,
             bytes_read: int | None = None) -> str:
    """One progress line: counts and rate; with the input's size, share done and time left."""
    rate = (published + rejected) / max(seconds, 1e-9)
    line = f"published {published:,}  rejected {rejected:,}  {rate:,.0f} records/s"
    if input_size is None or bytes_read is None:
        return line
    share = min(bytes_read / input_size.total, 1.0)
    line += f"  {share:.0%}"
    expected = expected_records(published + rejected, bytes_read, input_size.total)
    if expected is not None:
        line += f" of ~{expected:,}"
    left = time_left(bytes_read, input_size.total, seconds)
    if left is not None:
        line += f"  about {duration(left)} left"
    return line


class Progress:
    """Progress on ``output`` (standard error): a live line redrawn in place on a terminal,
    else a plain line every ``LOG_SECONDS`` — a job's log then shows the load moving, without
    a line per record. The final counts are a line of their own on a terminal only: elsewhere
    the command's summary says them."""

    def __init__(self, output: TextIO, live: bool, input_size: InputSize | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.output = output
        self.live = live
        self.input_size = input_size
        self.clock = clock
        self.began = clock()
        self._interval = TERMINAL_SECONDS if live else LOG_SECONDS
        self._shown = self.began
        self._width = 0

    def elapsed(self) -> float:
        return self.clock() - self.began

    def show(self, published: int, rejected: int) -> None:
        """Called for every record; writes only when a line is due."""
        now = self.clock()
        if now - self._shown < self._interval:
            return
        self._shown = now
        bytes_read = self.input_size.position() if self.input_size else None
        self._write(describe(published, rejected, now - self.began, self.input_size, bytes_read), final=False)

    def finish(self, published: int, rejected: int) -> None:
        """The last counts, on a terminal (ending the live line)."""
        if self.live:
            self._write(describe(published, rejected, self.elapsed()), final=True)

    def _write(self, line: str, final: bool) -> None:
        if self.live:
            padding = " " * max(self._width - len(line), 0)  # wipe what a longer line left
            self._width = len(line)
            self.output.write(f"\r{line}{padding}" + ("\n" if final else ""))
        else:
            self.output.write(line + "\n")
        self.output.flush()
