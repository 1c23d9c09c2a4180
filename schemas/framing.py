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

import functools
import hashlib
import hmac
import uuid
from collections.abc import Callable, Iterable, Mapping
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
LIFE_EVENTS = "govbus_life_events"  # on a shared change (gate → router only, never delivered): the life events it is
LIFE_EVENT = "govbus_life_event"  # on a delivery: the name of the life event it announces (its data: the payload)
FILTER_BEFORE = "govbus_before"  # on a shared change (gate → router only): the changed fields' previous values, as text
EVENT_DATE = "govbus_event_date"  # on a life-event delivery: the day it happened, ISO (YYYY-MM-DD)

SPEC_VERSION = b"1.0"
CONTENT_TYPE = b"application/avro"
TYPE_PREFIX = "cn.gov.govbus"


def entity_key(secret: bytes, library: str, entity_id: str) -> bytes:
    """The pseudonymous Kafka key of an entity (32 hex characters). The HMAC is set up once
    per secret and library (`entity_keyer`): the publisher and the gate key every event."""
    return _keyer(secret, library)(entity_id)


def entity_keyer(secret: bytes, library: str) -> Callable[[str], bytes]:
    """`entity_key` for one library with the secret's HMAC set up once: the router computes a
    key per delivery (a pseudonymous subscription's own), and setting up the HMAC was half
    of each (bench: fan_out)."""
    keyed = hmac.new(secret, digestmod=hashlib.sha256)
    prefix = f"{library}:"

    def key(entity_id: str) -> bytes:
        digest = keyed.copy()
        digest.update((prefix + entity_id).encode())
        return digest.hexdigest()[:32].encode()

    return key


@functools.lru_cache(maxsize=64)
def _keyer(secret: bytes, library: str) -> Callable[[str], bytes]:
    return entity_keyer(secret, library)


def source_urn(department: str, system: str) -> str:
    return f"urn:govbus:department:{department}:system:{system}"


def event_type(library: str, major_version: int = 1) -> str:
    return f"{TYPE_PREFIX}.{library}.change.v{major_version}"


def life_event_type(library: str, event: str, major_version: int = 1) -> str:
    """The CloudEvents type of a life event: ``cn.gov.govbus.population.death.v1``."""
    return f"{TYPE_PREFIX}.{library}.{event}.v{major_version}"


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
    return dict(headers or ())


def header_seconds(headers: Mapping[str, bytes], name: str) -> float | None:
    """A bus time header (milliseconds since the epoch as decimal text) in seconds; None when
    absent or garbled — a reader downstream never fails on a bad header."""
    value = headers.get(name)
    if not value or not value.isdigit() or len(value) > 15:
        return None
    return int(value) / 1000


def iso_seconds(value: bytes | None) -> float | None:
    """An ISO 8601 time (``ce_time``) in seconds since the epoch; None when absent or garbled
    (a time without an offset is taken as UTC, as the bus writes only UTC)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def source_lateness(headers: Mapping[str, bytes]) -> float | None:
    """Seconds from when the source recorded a change (``ce_time``, which the gate writes from
    the event's validated ``recorded_at``) to when the gate accepted it (ACCEPTED_AT): the one
    measure of source lateness, for the freshness monitor and the assessment alike. None for
    a snapshot (an initial load of old records, not a change) or a message without both times."""
    if headers.get(BACKFILL) == b"true":
        return None
    accepted, recorded = header_seconds(headers, ACCEPTED_AT), iso_seconds(headers.get("ce_time"))
    return None if accepted is None or recorded is None else accepted - recorded


def delivery_latency(headers: Mapping[str, bytes]) -> float | None:
    """Seconds from the gate's acceptance (ACCEPTED_AT) to the router's delivery (ROUTED_AT) of
    a live delivery: the one measure of delivery latency. None for a backfill (old changes
    delivered on approval) or a message without both times."""
    if headers.get(BACKFILL) == b"true":
        return None
    accepted, routed = header_seconds(headers, ACCEPTED_AT), header_seconds(headers, ROUTED_AT)
    return None if accepted is None or routed is None else routed - accepted


def with_headers(headers: Iterable[tuple[str, bytes]] | None, **extra: str | bytes) -> Headers:
    """The given headers plus ``extra`` (replacing same-named ones), for a processor's output."""
    extra_bytes = {name: value if isinstance(value, bytes) else value.encode() for name, value in extra.items()}
    kept = [(name, value) for name, value in headers or () if name not in extra_bytes]
    return kept + list(extra_bytes.items())


def message_size(key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes | None]] | None) -> int:
    """The bytes of a message's key, value and headers: what a producer's or broker's size limit
    counts, less the record's framing (see the gate's RECORD_OVERHEAD)."""
    size = len(key or b"") + len(value or b"")
    if headers:
        listed = list(headers)
        # One encode of all the names: UTF-8 lengths add up, and the gate sizes every output.
        size += len("".join([name for name, _ in listed]).encode()) + sum([len(content) for _, content in listed
                                                                          if content])
    return size


def heartbeat_key(department: str) -> bytes:
    """The key of a department's heartbeats (what ``Publisher.heartbeat`` sends)."""
    return f"heartbeat:{department}".encode()


def heartbeat_problem(department: str, key: bytes | None, value: bytes | None,
                      headers: Iterable[tuple[str, bytes | None]] | None) -> str | None:
    """Why a message with the heartbeat type on `department`'s topic is not that department's
    heartbeat as ``Publisher.heartbeat`` makes it; None when it is one.

    Why so strict: the gate skips heartbeats, so the type alone must not be a way to slip
    anything past it unrecorded. The detail names what is wrong, never what was sent."""
    if key != heartbeat_key(department):
        return f"a heartbeat's key is {heartbeat_key(department).decode()!r}"
    if value:
        return f"a heartbeat's value is empty, not {len(value)} bytes"
    return _heartbeat_headers_problem(department, header_map(headers))


def _heartbeat_headers_problem(department: str, found: dict[str, bytes]) -> str | None:
    if found.get("ce_type") != HEARTBEAT_TYPE:
        return "the ce_type header is repeated with another type"
    if found.get("ce_specversion") != SPEC_VERSION:
        return f"a heartbeat's ce_specversion is {SPEC_VERSION.decode()}"
    if not found.get("ce_id"):
        return "a heartbeat has a ce_id"
    source, prefix = found.get("ce_source") or b"", source_urn(department, "").encode()
    if not source.startswith(prefix) or len(source) == len(prefix):
        return f"a heartbeat's ce_source names its topic's department, {department}, and a system"
    if not _is_time(found.get("ce_time")):
        return "a heartbeat's ce_time is an ISO 8601 time"
    return None


def _is_time(value: bytes | None) -> bool:
    if not value:
        return False
    try:
        datetime.fromisoformat(value.decode())  # Python 3.11 reads the trailing "Z" too
    except (UnicodeDecodeError, ValueError):
        return False
    return True
