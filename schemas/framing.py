"""How a change event sits on Kafka: the key, and CloudEvents attributes as ``ce_`` headers.

CloudEvents' Kafka protocol binding in binary mode: the Avro record (single-object encoding)
is the value, the attributes are headers, so any CloudEvents or Kafka tool can read them.
We follow the Dutch government profile for register change notifications: ``source`` is a URN
naming department and system, ``type`` is reverse-DNS with a version suffix that changes only
on an incompatible schema change, ``sequence`` lets a reader resynchronise, and headers carry
no personal data.

The key. Every tool, log and metric sees the Kafka key, and an identity number is personal
data; so the key is a keyed pseudonym of the entity id (HMAC-SHA256 with the bus's secret),
not the id itself. The same entity always maps to the same key, which is what ordering (one
partition per key) and compaction need. A plain hash would not do: the space of identity
numbers is small and structured enough to hash exhaustively. The secret is
``GOVBUS_KEY_SECRET``; changing it re-keys every entity, so set it once per deployment.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

Headers = list[tuple[str, bytes]]

# The bus's own headers, added hop by hop and never recomputed downstream. Times are
# milliseconds since the epoch (UTC) as decimal text; names are field names, never values.
PUBLISHED_AT = "govbus_published_at"  # the publisher's send call
ACCEPTED_AT = "govbus_accepted_at"  # the gate accepted the change
ROUTED_AT = "govbus_routed_at"  # the router wrote the delivery
BACKFILL = "govbus_backfill"  # "true" for an initial load / snapshot, "false" for a live change
LATE = "govbus_late"  # "true" when the change broke its library's source-lateness SLA
SOURCE_SEQUENCE = "govbus_source_sequence"  # the source's own sequence of the change
SOURCE_DEPARTMENT = "govbus_source_department"
SUBSCRIPTION = "govbus_subscription"  # the subscription a delivery was made under
PURPOSE = "govbus_purpose"  # the purpose that subscription declared
MASKED = "govbus_masked"  # comma-separated names of the fields delivered masked
IMAGE = "govbus_image"  # comma-separated names of the fields whose values the delivery carries: its subscription's

SPEC_VERSION = b"1.0"
CONTENT_TYPE = b"application/avro"
TYPE_PREFIX = "cn.gov.govbus"


def entity_key(secret: bytes, library: str, entity_id: str) -> bytes:
    """The pseudonymous Kafka key of an entity (32 hex characters)."""
    digest = hmac.new(secret, f"{library}:{entity_id}".encode(), hashlib.sha256).hexdigest()
    return digest[:32].encode()


def source_urn(department: str, system: str) -> str:
    return f"urn:govbus:department:{department}:system:{system}"


def event_type(library: str, major_version: int = 1) -> str:
    return f"{TYPE_PREFIX}.{library}.change.v{major_version}"


def schema_urn(library: str, version: int) -> str:
    return f"urn:govbus:schema:{library}:v{version}"


def _iso(moment: datetime) -> bytes:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()


def cloudevent_headers(event: dict[str, Any], library: str, schema_version: int, key: bytes) -> Headers:
    """The ``ce_`` headers of a change event. The subject is the pseudonymous key, never the id."""
    return [
        ("ce_specversion", SPEC_VERSION),
        ("ce_id", event["event_id"].encode()),
        ("ce_source", source_urn(event["source_department"], event["source_system"]).encode()),
        ("ce_type", event_type(library).encode()),
        ("ce_time", _iso(event["recorded_at"])),
        ("ce_subject", key),
        ("ce_sequence", str(event["sequence"]).encode()),
        ("ce_sequencetype", b"Integer"),
        ("ce_dataschema", schema_urn(library, schema_version).encode()),
        ("content-type", CONTENT_TYPE),
    ]


HEARTBEAT_TYPE = f"{TYPE_PREFIX}.heartbeat.v1".encode()


def heartbeat_headers(department: str, system: str, moment: datetime | None = None) -> Headers:
    """The headers of a heartbeat: "alive, nothing changed". The value is empty; the gate
    skips it, the freshness processor counts it as the source being seen."""
    return [
        ("ce_specversion", SPEC_VERSION),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", source_urn(department, system).encode()),
        ("ce_type", HEARTBEAT_TYPE),
        ("ce_time", _iso(moment or datetime.now(timezone.utc))),
        (PUBLISHED_AT, now_millis()),
    ]


def is_heartbeat(headers: Iterable[tuple[str, bytes]] | None) -> bool:
    """Whether a message is a heartbeat (cheap: one pass over the headers, no decoding)."""
    for name, value in headers or ():
        if name == "ce_type":
            return value == HEARTBEAT_TYPE
    return False


def now_millis() -> bytes:
    import time

    return str(int(time.time() * 1000)).encode()


def header_map(headers: Iterable[tuple[str, bytes]] | None) -> dict[str, bytes]:
    """Headers as a dict (the last one wins when a name repeats)."""
    return {name: value for name, value in headers or ()}


def with_headers(headers: Iterable[tuple[str, bytes]] | None, **extra: str | bytes) -> Headers:
    """The given headers plus ``extra`` (replacing same-named ones), for a processor's output."""
    extra_bytes = {name: value if isinstance(value, bytes) else value.encode() for name, value in extra.items()}
    kept = [(name, value) for name, value in headers or () if name not in extra_bytes]
    return kept + list(extra_bytes.items())
