"""Generated change events of every library, as its source publishes them (for codec tests)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from govbus.producers.generate import generate
from govbus.producers.records import default_builder

SOURCES = {"population": "public_security", "legal_entity": "market_regulation",
           "credit": "development_reform", "certificate": "data_bureau"}
AT = datetime(2026, 12, 6, 9, 30, 15, 123456, tzinfo=timezone.utc)


def events(library: str, count: int, seed: int, **options: Any) -> list[dict[str, Any]]:
    """`count` events of `library` from its source, recorded at ``AT``; `options` go to ``generate``."""
    builder = default_builder()
    return [builder.to_event(library, SOURCES[library], record, "unit", now=AT)
            for record in generate(library, count, seed, department=SOURCES[library], **options)]
