"""Local stores for subscribers: `open_store(url)` gives a `Store` over SQLite (the default,
one file) or PostgreSQL, with the same behaviour and the same rows from both.

    store = open_store("sqlite:///population.db")
    store.ensure_table("population", {"name": "text", "birth_date": "date"})
    store.apply("population", deliveries, positions={("deliver.health.population", 0): 42}, as_of=t)
    store.events(library="population", event="death")  # the life events, logged beside the view
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .base import ApplyResult, Store
from .types import COLUMN_TYPES, StoreError, column_type

__all__ = ["COLUMN_TYPES", "ApplyResult", "Store", "StoreError", "column_type", "open_store"]

URL_FORMS = "sqlite:///relative/path.db, sqlite:////absolute/path.db, sqlite:///:memory: or " \
            "postgresql://user:password@host:port/database"


def open_store(url: str) -> Store:
    """Open (creating its bookkeeping tables if needed) the store at `url`."""
    scheme = urlsplit(url).scheme if isinstance(url, str) else ""
    if scheme == "sqlite":
        from .sqlite import SQLiteStore
        return SQLiteStore.from_url(url)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresStore  # psycopg is only needed by those who use it
        return PostgresStore.from_url(url)
    raise StoreError(f"unknown store URL {url!r}: write {URL_FORMS}")
