"""A processor's keyed state, per partition, restored from its compacted topic by the processor.

The gate keeps its golden records this way (``state.<library>``) and the router its audit
chain heads and backfill markers (``audit.heads.<library>``). When the consumer group gives a
batched loop new partitions, the loop restores them here before it reads their first event:
it reads that partition of the state topic to its end — committed data only, so exactly the
writes of every batch whose offsets were committed with them (``batches.Checkpoint``), once the
last commit's markers have reached the partition (``reading.settled_ends``). Events
after the committed offset are handled again from that state, as the first time.

The state topic is co-partitioned with the input: a record is written to the partition of
the event that produced it.

Why on disk: a province's library holds millions of golden records of about a kilobyte, which
would be gigabytes in a dict. Each partition keeps its newest writes in a small buffer in
memory and, once the buffer is full, writes them to a SQLite file of its own under
``GOVBUS_STATE_DIR`` (default the system's temporary directory), so memory stays bounded
whatever the library's size. One rule for every topic: a partition with fewer records than
the buffer holds (the router's chain heads) never makes a file at all.

The file is only a cache. The topic is the truth, and a partition's file is rebuilt from it on
every assignment and deleted when the partition is forgotten (on revocation, and after an
aborted batch, which forgets and restores). That is why the files are written without a
journal or fsync (``journal_mode=OFF``, ``synchronous=OFF``): a crash can corrupt one, but no
process ever opens a file it did not make in its own run. Each store makes its own directory,
removed when the store is closed or the process exits, so two workers sharing a state
directory never touch each other's files.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path

from govbus.reading import stream_topic
from govbus.settings import Settings

log = logging.getLogger("govbus.processors.runtime.partition_store")
SETTLE = 5.0  # seconds a restore waits for a just-committed transaction's markers to reach the partition (reading.settled_ends)
RESTORE_TIMEOUT = 600.0  # seconds one attempt may take before it counts as failed (and is retried)
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)  # seconds between attempts to restore
ATTEMPTS = 8  # then the loop fails, and with it the worker: a supervisor restarts it
BUFFERED = 1_000  # records a partition keeps in memory before it writes them to its file (~1 MB of golden records)
PAGE_CACHE_KIB = 2_048  # SQLite's page cache per partition file; the OS caches the rest outside the process
MISSING = object()  # not in the buffer: look in the file
# A rowid table: new records are appended, and only the small key index is written at random
# places. An upsert updates a record in place (INSERT OR REPLACE deletes and appends it: three
# times slower per update in a 170 MB file).
SCHEMA = "CREATE TABLE records (key BLOB PRIMARY KEY, value BLOB NOT NULL)"
UPSERT = "INSERT INTO records (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
DELETE = "DELETE FROM records WHERE key = ?"
SELECT = "SELECT value FROM records WHERE key = ?"

Record = tuple[int, bytes, bytes | None]  # partition, key, value (None: deleted)


class PartitionRecords:
    """One partition's records: the newest writes in memory, the others in a SQLite file made
    when the buffer first fills. A value of None deletes the key."""

    def __init__(self, file: Callable[[], Path]) -> None:
        self._file = file  # where the file goes, asked for only when one is needed
        self._buffer: dict[bytes, bytes | None] = {}  # None: deleted since the last flush
        self._connection: sqlite3.Connection | None = None
        self._path: Path | None = None

    def get(self, key: bytes) -> bytes | None:
        value = self._buffer.get(key, MISSING)
        if value is not MISSING:
            return value  # type: ignore[return-value]
        if self._connection is None:
            return None
        row = self._connection.execute(SELECT, (key,)).fetchone()
        return None if row is None else row[0]

    def __setitem__(self, key: bytes, value: bytes | None) -> None:
        self._buffer[key] = value
        if len(self._buffer) >= BUFFERED:
            self.flush()

    def flush(self) -> None:
        """Write the buffer to the file (one transaction), then empty it."""
        if not self._buffer:
            return
        connection = self._connection or self._open()
        written = sorted(self._buffer.items())  # in key order: neighbours in the key index are written together
        connection.executemany(UPSERT, [(key, value) for key, value in written if value is not None])
        connection.executemany(DELETE, [(key,) for key, value in written if value is None])
        connection.commit()
        self._buffer.clear()

    def close(self) -> None:
        """Drop the records, and the file if there is one."""
        self._buffer.clear()
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None

    def _open(self) -> sqlite3.Connection:
        self._path = self._file()
        # check_same_thread off: a worker's /health thread may read the router's heads (sqlite3 serialises)
        connection = sqlite3.connect(self._path, check_same_thread=False)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "locking_mode=EXCLUSIVE",
                       f"cache_size=-{PAGE_CACHE_KIB}"):
            connection.execute(f"PRAGMA {pragma}")
        connection.execute(SCHEMA)
        self._connection = connection
        return connection


class PartitionStore:
    """Keyed records of one topic, per partition, for the partitions this worker owns.

    ``values`` maps each partition held to its records (``PartitionRecords``); the router's
    backfills read it to know which partitions are owned."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.values: dict[int, PartitionRecords] = {}
        self._directory: Path | None = None
        self._removal: weakref.finalize | None = None

    def get(self, partition: int, key: bytes) -> bytes | None:
        records = self.values.get(partition)
        return None if records is None else records.get(key)

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Set (None: delete) a key; a partition not held yet starts empty."""
        records = self.values.get(partition)
        if records is None:
            records = self.values[partition] = self._records(partition)
        records[key] = value

    def load(self, partitions: list[int]) -> None:
        """Restore the partitions not held yet (kept ones are not read again); a failed read
        is said and tried again, from the start."""
        new = sorted(set(partitions) - set(self.values))
        if not new:
            return
        for attempt in range(ATTEMPTS):
            try:
                self.values.update(self._restore(new))
                return
            except Exception as error:  # noqa: BLE001 - said, and tried again
                if attempt == ATTEMPTS - 1:
                    raise
                delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
                log.warning("restoring %s partitions %s failed (attempt %d: %s); trying again in %.1f s",
                            self.topic, new, attempt + 1, error, delay)
                time.sleep(delay)

    def forget(self, partitions: Iterable[int]) -> None:
        """Release the partitions: their memory and their files."""
        for partition in partitions:
            records = self.values.pop(partition, None)
            if records is not None:
                records.close()

    def close(self) -> None:
        """Forget every partition and remove the store's directory."""
        self.forget(list(self.values))
        if self._removal is not None:
            self._removal()
        self._directory = self._removal = None

    def _restore(self, partitions: list[int]) -> dict[int, PartitionRecords]:
        """The partitions read from the topic, streamed into their files (the newest value of
        a key wins; a None value deletes it). A failed read leaves no file behind."""
        restored = {partition: self._records(partition) for partition in partitions}
        try:
            for partition, key, value in self._read(partitions):
                restored[partition][key] = value
        except BaseException:
            for records in restored.values():
                records.close()
            raise
        return restored

    def _read(self, partitions: list[int]) -> Iterator[Record]:
        """The partitions' messages in offset order, as they are read from the topic."""
        for message in stream_topic(self.settings, self.topic, partitions, timeout=RESTORE_TIMEOUT, settle=SETTLE):
            yield message.partition, message.key, message.value

    def _records(self, partition: int) -> PartitionRecords:
        return PartitionRecords(partial(self._file, partition))

    def _file(self, partition: int) -> Path:
        """A partition's file in the store's own directory, made with the first file."""
        if self._directory is None:
            parent = self.settings.state_dir
            if parent is not None:
                parent.mkdir(parents=True, exist_ok=True)
            self._directory = Path(tempfile.mkdtemp(prefix=f"govbus-{self.topic}-", dir=parent))
            self._removal = weakref.finalize(self, shutil.rmtree, self._directory, ignore_errors=True)
        return self._directory / f"{partition}.sqlite"
