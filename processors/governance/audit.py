"""Sharing records (共享记录): one per routed change, listing each delivery, hash-chained.

A record says which entity's which change (event, version, operation) was delivered when,
and for each receiving department which fields it got (and which were masked), for which
purpose, under which subscription — names only, never a field's value: the audit topic must
not become a copy of the data. One record per routed change rather than one per delivery:
the same answer to "who received this entity's data" (``rows`` and ``query`` list each
delivery) for a quarter of the audit messages with four subscribers. Records written one
per delivery (format 1, before this) are read alike.

Each record holds the SHA-256 of the previous record of its chain (`previous`) and its own
(`hash`), both over the canonical JSON encoding (sorted keys, no whitespace, UTF-8) of the
record without `hash`. A chain is written by exactly one router instance (one chain per
library and shared partition), in the same Kafka transaction as the chain's new head and
the input offsets.

Records are deterministic: the caller passes the delivery time, nothing here reads a
clock or draws a random number. After a crash, an at-least-once router that restores its
chain head with its input offsets re-emits byte-identical records, and `verify` treats such
a repeat (same hash as a record already verified) as a harmless duplicate. Anything else
that does not fit — changed content, a missing record, records out of order, a record slid
in between two others — is a break, reported at the first record where it shows.

The chain alone cannot catch a writer that re-hashes: records altered and hashed again, each
linked to the one before, verify from GENESIS. So the chain is anchored (`verify_anchored`):

- to the heads the router stored (``audit.heads.<library>``, in the same transaction as the
  records): a chain must still hold the head stored before it was read, and no record may
  follow the head stored after it was read (the router never writes a record without its head);
- to the heads governance published (``govbus audit publish``, periodically, to
  ``control.audit_anchors``, which only governance may write): each must still be a record of
  its chain. These hold even when the writer also rewrote ``audit.heads``.

Why one module of about 310 lines: the record's format, its hash chain and its verification must agree byte for byte; one module keeps them from drifting apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from govbus import compact_json

FORMAT = 2  # one record per routed change (1: one record per delivery)
GENESIS = "0" * 64  # the `previous` of a chain's first record
Record = dict[str, Any]
BreakKind = Literal["altered", "removed", "out_of_order", "wrong_link", "unanchored"]
ANCHORS_FORMAT = 1


def canonical(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: one spelling per record, so a hash can be recomputed."""
    return compact_json.dumps(value, sort_keys=True)


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical encoding of the record without its `hash`."""
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def timestamp(moment: datetime) -> str:
    """UTC, milliseconds, `Z`: one spelling per instant, so equal inputs give equal bytes."""
    if moment.tzinfo is None:
        raise ValueError("the delivery time needs a time zone")
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def delivery(*, department: str, subscription: str, purpose: str, fields: Sequence[str],
             masked: Sequence[str], event: str | None = None) -> Record:
    """One department's part of a sharing record: field names only; for a life event, its
    name too (the fields are then its payload's)."""
    part: Record = {"department": department, "subscription": subscription, "purpose": purpose,
                    "fields": [str(name) for name in fields], "masked": [str(name) for name in masked]}
    if event is not None:
        part["event"] = event
    return part


def delivery_of(projector: Any, delivered: Mapping[str, Any], masked: Sequence[str]) -> Record:
    """The part of one `Projector.project` result: the names of the fields it delivered."""
    return delivery(department=projector.department, subscription=projector.subscription_id,
                    purpose=projector.purpose, fields=list(delivered.get("data") or ()), masked=masked)


def build_record(*, chain: str, previous: str, delivered_at: datetime, library: str, entity_id: str,
                 event_id: str, version: int | None, op: str, backfill: bool, deliveries: Sequence[Record],
                 source_offset: int | None = None) -> Record:
    """One sharing record, hashed: one change and its `deliveries` (see `delivery`)."""
    record: Record = {
        "format": FORMAT, "chain": chain, "previous": previous, "delivered_at": timestamp(delivered_at),
        "library": library, "entity_id": entity_id, "event_id": event_id, "version": version, "op": op,
        "backfill": bool(backfill), "deliveries": list(deliveries),  # the caller's fresh dicts, handed over
        "source_offset": source_offset,
    }
    record["hash"] = record_hash(record)
    return record


class AuditChain:
    """The head of one chain, held by the one router instance that writes it."""

    def __init__(self, chain: str, head: str = GENESIS) -> None:
        self.chain = chain
        self.head = head

    @classmethod
    def resume(cls, chain: str, last: Mapping[str, Any] | None) -> AuditChain:
        """Continue after `last`, the latest record of the chain (None: a new chain)."""
        return cls(chain, GENESIS if last is None else str(last["hash"]))

    def append(self, **sharing: Any) -> Record:
        """Build the next record from `build_record`'s arguments; move the head."""
        record = build_record(chain=self.chain, previous=self.head, **sharing)
        self.head = record["hash"]
        return record

    def record_change(self, library: str, change: Mapping[str, Any], deliveries: Sequence[Record],
                      delivered_at: datetime, source_offset: int | None = None) -> Record:
        """The record of one routed change and its deliveries; the real entity id, not a pseudonym."""
        return self.append(
            delivered_at=delivered_at, library=library,
            entity_id=str(change.get("entity_id")), event_id=str(change.get("event_id")),
            version=change.get("version"), op=str(change.get("op")), backfill=bool(change.get("backfill")),
            deliveries=deliveries, source_offset=source_offset)


def encode(record: Mapping[str, Any]) -> bytes:
    """The bytes written to `audit.deliveries` (key: the chain id)."""
    return canonical(record)


def decode(value: bytes | str) -> Record:
    return compact_json.loads(value)


@dataclass(frozen=True)
class Break:
    position: int  # index of the record in the sequence given to `verify`
    chain: str | None
    kind: BreakKind
    message: str


@dataclass(frozen=True)
class Anchor:
    """A hash some other record vouches for as a record of `chain` (see the module)."""

    chain: str
    hash: str
    source: str  # who vouches, for the message: "audit.heads", "governance's head published at …"


@dataclass
class Verification:
    checked: int = 0
    duplicates: list[int] = field(default_factory=list)  # positions of harmless repeats
    heads: dict[str, str] = field(default_factory=dict)  # chain → hash of its last record
    first_break: Break | None = None
    anchored: int = 0  # anchors checked (verify_anchored)
    found: dict[str, tuple[str, int]] = field(default_factory=dict)  # wanted hash → (chain, position)
    followed: dict[str, int] = field(default_factory=dict)  # wanted hash → position of the record after it
    last: dict[str, int] = field(default_factory=dict)  # chain → position of its last record

    @property
    def ok(self) -> bool:
        return self.first_break is None


def verify(records: Iterable[Mapping[str, Any] | bytes],
           anchors: Mapping[str, str] | None = None, wanted: Collection[str] = frozenset()) -> Verification:
    """Check records in log order and report the first break. `anchors` gives the head of
    a chain verified earlier (chain → hash) to start from; otherwise chains start at GENESIS.
    `wanted`: hashes whose place (and the record after it) to note, for `verify_anchored`."""
    items = [_as_record(item) for item in records]
    result = Verification(heads=dict(anchors or {}))
    where: dict[str, int] = {}  # hash → position of its first occurrence
    for position, record in enumerate(items):
        if record is not None and isinstance(record.get("hash"), str):
            where.setdefault(record["hash"], position)
    seen: set[str] = set(result.heads.values())
    for position, record in enumerate(items):
        found = _check(position, record, result.heads, seen, where)
        if found == "duplicate":
            result.duplicates.append(position)
        elif found is not None:
            result.first_break = found
            return result
        else:
            result.heads[record["chain"]] = record["hash"]  # type: ignore[index]
            seen.add(record["hash"])  # type: ignore[index]
            _note(result, record, position, wanted)  # type: ignore[arg-type]
        result.checked = position + 1
    return result


def _note(result: Verification, record: Record, position: int, wanted: Collection[str]) -> None:
    result.last[record["chain"]] = position
    if record["hash"] in wanted:
        result.found[record["hash"]] = (record["chain"], position)
    if record["previous"] in wanted:
        result.followed.setdefault(record["previous"], position)


def verify_anchored(records: Iterable[Mapping[str, Any] | bytes], anchors: Iterable[Anchor],
                    stored_after: Mapping[str, str] | None = None) -> Verification:
    """`verify`, then the anchors: each of `anchors` (the heads stored before the records were
    read, and the heads governance published) must be a record of its chain, and no record may
    follow a chain's head in `stored_after` (the heads stored after the records were read).
    A re-hashed or cut tail, or records appended outside the router, is an `unanchored` break."""
    anchors, stored_after = list(anchors), dict(stored_after or {})
    result = verify(records, wanted={anchor.hash for anchor in anchors} | set(stored_after.values()))
    if result.ok:
        breaks = [*_missing(result, anchors), *_appended(result, stored_after)]
        result.first_break = min(breaks, key=lambda found: found.position, default=None)
        result.anchored = len(anchors)
    return result


def _missing(result: Verification, anchors: list[Anchor]) -> Iterator[Break]:
    for anchor in anchors:
        if result.found.get(anchor.hash, ("", 0))[0] != anchor.chain:
            yield Break(result.last.get(anchor.chain, result.checked), anchor.chain, "unanchored",
                        f"chain {anchor.chain} no longer holds the record {anchor.hash[:12]}… that {anchor.source} "
                        "vouches for: its records since were re-hashed, or removed")


def _appended(result: Verification, stored_after: Mapping[str, str]) -> Iterator[Break]:
    for chain, head in stored_after.items():
        if result.found.get(head, ("", 0))[0] == chain and head in result.followed:
            yield Break(result.followed[head], chain, "unanchored",
                        f"it follows {head[:12]}…, the head of chain {chain} the router stored in audit.heads: "
                        "the router writes no record without its head, so it was appended by someone else")


def stored_anchors(heads: Mapping[str, str]) -> list[Anchor]:
    return [Anchor(chain, head, "audit.heads") for chain, head in sorted(heads.items())]


def published_anchors(publications: Iterable[bytes]) -> list[Anchor]:
    """The heads in governance's publications (``control.audit_anchors``); unreadable ones skipped."""
    anchors = []
    for value in publications:
        try:
            body = decode(value)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(body, dict) and body.get("format") == ANCHORS_FORMAT and isinstance(body.get("heads"), dict):
            source = f"the head governance published at {body.get('published_at')}"
            anchors += [Anchor(str(chain), str(head), source) for chain, head in sorted(body["heads"].items())]
    return anchors


def publication(heads: Mapping[str, str], published_at: datetime, by: str) -> bytes:
    """What ``govbus audit publish`` writes: every chain's verified head, when and by whom."""
    return canonical({"format": ANCHORS_FORMAT, "published_at": timestamp(published_at), "by": by,
                      "heads": dict(sorted(heads.items()))})


def _as_record(item: Mapping[str, Any] | bytes) -> Record | None:
    if isinstance(item, Mapping):
        return dict(item)
    try:
        value = decode(item)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _check(position: int, record: Record | None, heads: dict[str, str], seen: set[str],
           where: dict[str, int]) -> Break | Literal["duplicate"] | None:
    if record is None or not all(isinstance(record.get(k), str) for k in ("chain", "previous", "hash")):
        return Break(position, None, "altered", "not a sharing record (unreadable or without chain, "
                                                "previous and hash)")
    chain, previous = record["chain"], record["previous"]
    if record_hash(record) != record["hash"]:
        return Break(position, chain, "altered", "its content does not match its hash (altered)")
    if record["hash"] in seen:
        return "duplicate"
    head = heads.get(chain, GENESIS)
    if previous == head:
        return None
    linked = where.get(previous)
    if linked is not None and linked > position:
        return Break(position, chain, "out_of_order", f"it links to record {linked}, which comes "
                                                      "after it: records are out of order (swapped)")
    if previous in seen:
        return Break(position, chain, "wrong_link", f"it links to record {linked}, not to the head of "
                     f"chain {chain}: a record was slid in before it, or the chain forked")
    return Break(position, chain, "removed", f"its previous hash {previous[:12]}… matches no record: "
                 f"the record before it in chain {chain} was removed (or altered and re-hashed)")


def rows(records: Iterable[Mapping[str, Any] | bytes]) -> Iterator[Record]:
    """One row per delivery, whatever the record's format: the change's fields (`hash` is the
    record's) with one department's `department`, `subscription`, `purpose`, `fields`, `masked`."""
    for record in filter(None, map(_as_record, records)):
        if "deliveries" not in record:  # format 1: the record is the delivery
            yield record
            continue
        change = {key: value for key, value in record.items() if key != "deliveries"}
        for each in record.get("deliveries") or ():
            if isinstance(each, Mapping):
                yield {**change, **each}


def query(records: Iterable[Mapping[str, Any] | bytes], department: str | None = None,
          entity_id: str | None = None, library: str | None = None) -> list[Record]:
    """Who received this entity's data, when, for what: one row per delivery (see `rows`), each
    once (re-sent duplicates dropped), oldest delivery first."""
    found: dict[tuple[str, str, str], Record] = {}
    for row in rows(records):
        if ((department is None or row.get("department") == department)
                and (entity_id is None or row.get("entity_id") == entity_id)
                and (library is None or row.get("library") == library)):
            found.setdefault((str(row.get("hash")), str(row.get("subscription")), str(row.get("department"))), row)
    return sorted(found.values(), key=lambda row: str(row.get("delivered_at")))
