"""The polling baseline: today's centralized model (中心化), on the same machine, same records.

Sources write each change to a central PostgreSQL table (one row per person, upserted, with
a change sequence number from a database sequence and the time written); each subscribing
department polls it every T seconds for the rows changed since its last poll and applies
them to the same kind of SQLite store the bus's subscribers use. Freshness is from the
source's write to applied in the store; the central database's load is the pollers' queries
per second and rows returned and scanned (PostgreSQL's per-transaction table statistics,
``pg_stat_xact_user_tables``, read in each poll's transaction).

A change overwritten before anyone polled it is never seen by that subscriber at all
(reported as ``changes_overwritten_unseen``): polling shares states, not changes. The
pollers of one interval start at evenly spread phases, as independent departments would.
"""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timezone
from typing import Any

from govbus.bench import workload
from govbus.bench.context import Context
from govbus.bench.measure import percentiles, rounded
from govbus.bench.postgres import server
from govbus.bench.subscriptions import FOUR
from govbus.consumers.stores import column_type, open_store
from govbus.schemas.registry import default_registry

TABLE = "population_central"
FIELDS = tuple(dict.fromkeys(name for fields, _ in FOUR.values() for name in fields))
DATES = frozenset({"date_of_birth"})


def run(context: Context) -> dict[str, Any]:
    sizes = context.sizes
    with server() as dsn:
        _create(dsn)
        records = workload.population_changes(int(sizes.poll_rate * sizes.poll_seconds), seed=55)
        finished = threading.Event()
        pollers = [Poller(dsn, department, interval, phase=index * interval / len(FOUR), work=context.work,
                          finished=finished)
                   for interval in sizes.poll_intervals for index, department in enumerate(FOUR)]
        started = time.time()
        for poller in pollers:
            poller.start(started)
        writes, final_sequence = _write(dsn, records, sizes.poll_rate)
        finished.sequence = final_sequence  # type: ignore[attr-defined]
        finished.set()
        for poller in pollers:
            poller.join()
        elapsed = max(poller.ended for poller in pollers) - started
    intervals = {}
    for interval in sizes.poll_intervals:
        group = [poller for poller in pollers if poller.interval == interval]
        seconds = max(p.ended for p in group) - started
        intervals[_name(interval)] = {
            "freshness_s": percentiles(delay for p in group for delay in p.delays),
            "queries_per_s": sum(p.queries for p in group) / seconds,
            "rows_returned_per_s": sum(p.rows for p in group) / seconds,
            "rows_scanned_per_s": sum(p.scanned for p in group) / seconds,
            "changes_overwritten_unseen": sum(writes - p.rows for p in group) / len(group),
            "seconds": seconds,
        }
    return rounded({"central": "PostgreSQL (fsync off)", "rate": sizes.poll_rate, "seconds": sizes.poll_seconds,
                    "writes": writes, "subscribers_per_interval": len(FOUR), "wall_seconds": elapsed,
                    "intervals": intervals})


def _name(interval: float) -> str:
    return f"{interval:g}"


def _create(dsn: str) -> None:
    import psycopg

    columns = ", ".join(f"{name} {'date' if name in DATES else 'text'}" for name in FIELDS if name != "citizen_id")
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {TABLE}")
        connection.execute("DROP SEQUENCE IF EXISTS central_changes")
        connection.execute("CREATE SEQUENCE central_changes")
        connection.execute(f"CREATE TABLE {TABLE} (citizen_id text PRIMARY KEY, change_seq bigint NOT NULL, "
                           f"written_at double precision NOT NULL, {columns})")
        connection.execute(f"CREATE INDEX {TABLE}_changes ON {TABLE} (change_seq)")


def _write(dsn: str, records: list[dict[str, Any]], rate: float) -> tuple[int, int]:
    """The sources: one upsert per change, each its own transaction, paced at `rate`."""
    import psycopg

    names = ", ".join(FIELDS)
    updates = ", ".join(f"{name} = excluded.{name}" for name in FIELDS if name != "citizen_id")
    sql = (f"INSERT INTO {TABLE} (change_seq, written_at, {names}) VALUES (nextval('central_changes'), %s, "
           f"{', '.join(['%s'] * len(FIELDS))}) ON CONFLICT (citizen_id) DO UPDATE SET "
           f"change_seq = nextval('central_changes'), written_at = excluded.written_at, {updates}")
    with psycopg.connect(dsn, autocommit=True) as connection:
        first = time.time()
        for index, record in enumerate(records):
            delay = first + index / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            values = [date.fromisoformat(record[n]) if n in DATES and record.get(n) else record.get(n) for n in FIELDS]
            connection.execute(sql, [time.time(), *values])
        final = connection.execute("SELECT last_value FROM central_changes").fetchone()[0]
    return len(records), final


class Poller:
    """One department polling the central table every `interval` seconds into its store."""

    def __init__(self, dsn: str, department: str, interval: float, phase: float, work: Any,
                 finished: threading.Event) -> None:
        self.dsn, self.department, self.interval, self.phase = dsn, department, interval, phase
        self.fields = FOUR[department][0]
        policies = default_registry().latest(workload.LIBRARY).fields
        self.columns = {name: column_type(policies[name].avro_type) for name in self.fields}
        self.store_url = f"sqlite:///{work / f'polling-{_name(interval)}-{department}.db'}"
        self.finished = finished
        self.delays: list[float] = []
        self.queries = self.rows = self.scanned = 0
        self.last_sequence = 0
        self.ended = 0.0
        self._thread = threading.Thread(target=self._run, name=f"poll-{department}-{interval}", daemon=True)
        self.started = 0.0

    def start(self, started: float) -> None:
        self.started = started
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def _run(self) -> None:
        import psycopg

        store = open_store(self.store_url)
        store.ensure_table(workload.LIBRARY, self.columns)
        select = (f"SELECT change_seq, citizen_id, written_at, {', '.join(self.fields)} FROM {TABLE} "
                  "WHERE change_seq > %s ORDER BY change_seq")
        statistics = ("SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0) FROM pg_stat_xact_user_tables "
                      "WHERE relname = %s")
        try:
            with psycopg.connect(self.dsn) as connection:
                next_poll = self.started + self.phase
                while True:
                    time.sleep(max(0.0, next_poll - time.time()))
                    next_poll += self.interval
                    with connection.transaction():
                        rows = connection.execute(select, (self.last_sequence,)).fetchall()
                        self.scanned += connection.execute(statistics, (TABLE,)).fetchone()[0] or 0
                    self.queries += 1
                    self._apply(store, rows)
                    final = getattr(self.finished, "sequence", None)
                    if self.finished.is_set() and final is not None and self.last_sequence >= final:
                        break
        finally:
            self.ended = time.time()
            store.close()

    def _apply(self, store: Any, rows: list[tuple]) -> None:
        if not rows:
            return
        now = datetime.now(timezone.utc)
        deliveries = [{"entity_id": row[1], "version": row[0], "op": "UPSERT", "fields": list(self.fields),
                       "data": dict(zip(self.fields, row[3:])), "delivered_at": now,
                       "recorded_at": datetime.fromtimestamp(row[2], timezone.utc)} for row in rows]
        store.apply(workload.LIBRARY, deliveries)
        applied = time.time()
        self.delays += [applied - row[2] for row in rows]
        self.rows += len(rows)
        self.last_sequence = rows[-1][0]
