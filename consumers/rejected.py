"""Deliveries a subscriber could not apply, kept beside the store: never a crash, never lost.

A message that cannot be decoded (not Avro single-object, an unknown schema, a corrupt body,
another library's record) or that the store refuses (a value of the wrong type) is logged
with topic, partition and offset, counted, and appended to a JSON Lines file — the raw
value in base64 and the headers, so that it can be examined and replayed by hand — before
the subscriber's position moves past it. The file is flushed and synced before the batch's
positions are committed, so a crash can at worst write a line twice, never lose one.

Where: beside a SQLite store file, ``<store file>.rejected.jsonl``; for PostgreSQL and
in-memory stores, ``<GOVBUS_HOME>/rejected/<topic prefix><department>.jsonl``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from govbus.consumers.deliveries import Received
from govbus.consumers.stores import Store
from govbus.settings import Settings

log = logging.getLogger("govbus.subscriber")


class RejectedLog:
    """An append-only JSON Lines file of rejected deliveries."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self.pending = 0

    def add(self, message: Received, library: str, reason: str) -> None:
        """Record one rejected message (a `deliveries.Received`)."""
        log.error("rejected %s delivery at %s[%d]@%d: %s", library, message.topic, message.partition,
                  message.offset, reason)
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        entry = {
            "rejected_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "library": library, "topic": message.topic, "partition": message.partition,
            "offset": message.offset, "reason": reason,
            "key": message.key.decode("utf-8", "replace") if message.key else None,
            "headers": {name: (value or b"").decode("utf-8", "replace") for name, value in message.headers.items()},
            "value_base64": base64.b64encode(message.value).decode() if message.value is not None else None,
        }
        self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.pending += 1

    def sync(self) -> None:
        """Make what was added durable; called before the positions past it are committed."""
        if self._file is not None and self.pending:
            self._file.flush()
            os.fsync(self._file.fileno())
            self.pending = 0

    def close(self) -> None:
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None


def default_path(store: Store, settings: Settings, department: str) -> Path:
    """Beside a SQLite file; else under GOVBUS_HOME (see the module)."""
    path = getattr(store, "path", None)
    if path and path != ":memory:":
        return Path(f"{path}.rejected.jsonl")
    return settings.home / "rejected" / f"{settings.topic_prefix}{department}.jsonl"
