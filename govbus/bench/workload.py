"""The records every scenario uses: realistic population changes, the same in every scenario.

`population_changes(count, seed)`: the first half registers new people (public security's
full record), the second half changes the registered name of those people (变更姓名, a new
sequence from the same source). Creations exercise the gate's empty golden record, changes a
golden record read back, decided and written again; every change carries `name`, which all
four benchmark subscriptions receive, so each event is exactly one delivery per department.
`recorded_at` is left out so that the publisher stamps the time of publishing, as a live
source does (a change recorded in the past would be marked late).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from govbus.producers.generate import generate
from govbus.producers.records import default_builder
from govbus.schemas.codec import default_codec
from govbus.schemas.framing import PUBLISHED_AT, Headers, cloudevent_headers, entity_key, now_millis

LIBRARY = "population"
SOURCE = "public_security"
SOURCE_SYSTEM = "govbus-bench"


def _live(record: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in record.items() if name != "recorded_at"}


def population_changes(count: int, seed: int = 9) -> list[dict[str, Any]]:
    """`count` flat records: new people, then a name change for as many of them."""
    changes = count // 2
    people = [_live(record) for record in generate(LIBRARY, count - changes, seed, department=SOURCE)]
    renamed = []
    for index, person in enumerate(people[:changes]):
        other = people[(index + 1) % len(people)]["name"]
        name = other if other != person["name"] else other + "新"
        renamed.append({**person, "sequence": 2, "name": name})
    return people + renamed


def snapshot_records(count: int, seed: int = 11) -> Iterator[dict[str, Any]]:
    """An initial load: `count` different people as SNAPSHOT records (streamed; only their ids
    are held). Why the ids: generated citizen ids repeat now and then (56 in 1,000,000), and
    the gate rightly refuses a second snapshot of one person at the same sequence
    (``duplicate_sequence``), so a load of repeated ids never reaches `count` in the store."""
    seen: set[str] = set()
    for record in generate(LIBRARY, 2 * count, seed, department=SOURCE, op="snapshot"):  # lazily: stops at count
        if len(seen) == count:
            return
        if record["citizen_id"] not in seen:
            seen.add(record["citizen_id"])
            yield _live(record)


def encoded(records: Iterable[dict[str, Any]], secret: bytes,
            department: str = SOURCE) -> list[tuple[bytes, bytes, Headers]]:
    """(key, value, headers) as the publisher would send them, encoded once up front."""
    codec, builder = default_codec(), default_builder()
    version = codec.registry.latest(LIBRARY).version
    messages = []
    for record in records:
        event = builder.to_event(LIBRARY, department, record, SOURCE_SYSTEM)
        key = entity_key(secret, LIBRARY, event["entity_id"])
        headers = cloudevent_headers(event, LIBRARY, version, key)
        headers.append((PUBLISHED_AT, now_millis()))
        messages.append((key, codec.encode(LIBRARY, event, version), headers))
    return messages
