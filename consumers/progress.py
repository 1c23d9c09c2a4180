"""How far a subscriber is, per partition: its position, the partition's end, the lag, and the
time through which its local view is complete (the "current as of" watermark).

The watermark. Within one partition of ``deliver.<department>.<library>`` deliveries are in
the order the router wrote them, each stamped with its routing time (ROUTED_AT). So, per
partition, the store holds every delivery routed up to

- the routing time of the last delivery it applied from that partition, and
- once it has applied everything up to the partition's end as read at time T, up to T
  (nothing routed before T is missing: it would lie below that end);

whichever is later. A library is complete through the earliest of its partitions' times:
"current as of T" means every delivery routed to this department before T is applied.
It is an approximation in one respect: several router instances writing one partition
interleave by their clocks, so their skew (normally milliseconds) blurs the edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple


class Partition(NamedTuple):
    """One partition of a delivery topic; equal to the store's ``(topic, partition)`` keys."""

    topic: str
    partition: int


@dataclass(slots=True)
class LibraryStatus:
    """What the live line shows for one library."""

    library: str
    topic: str
    upserted: int = 0
    deleted: int = 0
    ignored: int = 0  # not newer than the store's row: duplicates, replays (of life events too)
    events: int = 0  # life events logged: apart from the current view, so not among `applied`
    rejected: int = 0
    lag: int | None = None
    as_of: datetime | None = None  # the store's watermark for the library
    waiting: bool = False  # the delivery topic does not exist yet (no approved subscription)
    ended_at: datetime | None = None  # every subscription to it expired or was revoked then

    @property
    def applied(self) -> int:
        return self.upserted + self.deleted


class Progress:
    """Positions, ends and watermarks of the partitions one subscriber reads."""

    def __init__(self, library_of_topic: Mapping[str, str]) -> None:
        self.library_of_topic = dict(library_of_topic)
        self.positions: dict[Partition, int] = {}  # next offset to apply, per partition
        self.ends: dict[Partition, int] = {}  # the partitions' ends when last asked
        self._read_through: dict[Partition, datetime] = {}
        self._caught_up_at: dict[Partition, datetime] = {}

    def start(self, partition: Partition, position: int) -> None:
        self.positions[partition] = position
        self._read_through.pop(partition, None)
        self._caught_up_at.pop(partition, None)

    def applied(self, partition: Partition, next_offset: int, routed_at: datetime | None) -> None:
        """A batch up to `next_offset` is in the store; its last delivery was routed at `routed_at`."""
        self.positions[partition] = next_offset
        if routed_at is not None:
            self._read_through[partition] = max(routed_at, self._read_through.get(partition, routed_at))
        end = self.ends.get(partition)
        if end is not None and next_offset > end:
            self.ends[partition] = next_offset

    def saw_ends(self, ends: Mapping[Partition, int], asked_at: datetime) -> None:
        """The partitions' ends as the broker gave them to a request sent at `asked_at`."""
        self.ends.update(ends)
        for partition, end in ends.items():
            if self.positions.get(partition, -1) >= end:
                self._caught_up_at[partition] = asked_at

    def _partitions(self, library: str) -> list[Partition]:
        return [tp for tp in self.positions if self.library_of_topic.get(tp.topic) == library]

    def lag(self, library: str) -> int | None:
        """Deliveries in the topic not yet applied (None before the ends were first read)."""
        partitions = self._partitions(library)
        if not partitions or any(tp not in self.ends for tp in partitions):
            return None
        return sum(max(0, self.ends[tp] - self.positions[tp]) for tp in partitions)

    def caught_up(self) -> bool:
        return all(self.positions[tp] >= self.ends.get(tp, 0) for tp in self.positions)

    def complete_through(self, library: str) -> datetime | None:
        """The library's watermark (see the module's docstring), or None while unknown."""
        times = []
        for partition in self._partitions(library):
            known = [t for t in (self._read_through.get(partition), self._caught_up_at.get(partition)) if t]
            if not known:
                return None
            times.append(max(known))
        return min(times) if times else None
