"""Sharing records: deterministic, hash-chained, and every kind of tampering is found exactly."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from govbus.processors.governance import audit
from govbus.processors.governance.audit import GENESIS, AuditChain, decode, encode, query, verify
from govbus.processors.router.projection import Projector
from govbus.processors.governance.subscriptions import Subscription, Transition
from govbus.schemas.registry import default_registry

START = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)
CANARY = "CANARY-not-shared-7f3a"


def delivery(index: int, department: str = "health", entity_id: str | None = None) -> dict:
    """`build_record`'s arguments for one change delivered to one department."""
    return {"delivered_at": START + timedelta(seconds=index), "library": "population",
            "entity_id": entity_id or f"6101021990010{index:05d}", "event_id": f"event-{index}",
            "version": index, "op": "UPSERT", "backfill": False, "source_offset": index,
            "deliveries": [audit.delivery(department=department, subscription=f"sub-{department}",
                                          purpose="data_verification", fields=["citizen_id", "name"],
                                          masked=["name"])]}


def chain_of(count: int, chain: str = "population/0") -> list[bytes]:
    writer = AuditChain(chain)
    return [encode(writer.append(**delivery(index))) for index in range(count)]


def altered(record: bytes, **changes: object) -> bytes:
    return encode({**decode(record), **changes})


def test_an_untouched_chain_verifies() -> None:
    result = verify(chain_of(5))
    assert result.ok and result.checked == 5 and result.duplicates == []
    assert result.heads["population/0"] == decode(chain_of(5)[-1])["hash"]


def test_the_first_record_links_to_genesis_and_each_next_to_the_one_before() -> None:
    records = [decode(value) for value in chain_of(3)]
    assert records[0]["previous"] == GENESIS
    assert [record["previous"] for record in records[1:]] == [record["hash"] for record in records[:-1]]


def test_the_hash_is_sha256_of_the_canonical_json_without_the_hash() -> None:
    record = decode(chain_of(1)[0])
    body = {key: value for key, value in record.items() if key != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert record["hash"] == hashlib.sha256(text).hexdigest()


def test_an_altered_record_is_reported_as_altered_at_its_position() -> None:
    records = chain_of(5)
    records[2] = altered(records[2], deliveries=[{**decode(records[2])["deliveries"][0], "department": "tax"}])
    result = verify(records)
    assert (result.first_break.position, result.first_break.kind) == (2, "altered")
    assert result.checked == 2


def test_an_altered_and_rehashed_record_breaks_the_link_of_the_next_one() -> None:
    records = chain_of(5)
    forged = {**decode(records[2]), "event_id": "event-forged"}
    forged["hash"] = audit.record_hash(forged)
    records[2] = encode(forged)
    assert (verify(records).first_break.position, verify(records).first_break.kind) == (3, "removed")


def test_a_removed_record_is_reported_at_the_record_after_it() -> None:
    records = chain_of(5)
    del records[2]
    found = verify(records).first_break
    assert (found.position, found.kind, found.chain) == (2, "removed", "population/0")
    assert "was removed" in found.message


def test_two_swapped_records_are_reported_at_the_first_of_them() -> None:
    records = chain_of(5)
    records[1], records[2] = records[2], records[1]
    found = verify(records).first_break
    assert (found.position, found.kind) == (1, "out_of_order")
    assert "links to record 2" in found.message


def test_a_record_slid_in_between_is_reported_at_the_record_it_displaced() -> None:
    records = chain_of(4)
    intruder = audit.build_record(chain="population/0", previous=decode(records[1])["hash"], **delivery(99))
    records.insert(2, encode(intruder))
    found = verify(records).first_break
    assert (found.position, found.kind) == (3, "wrong_link")


def test_a_byte_identical_repeat_after_a_crash_is_a_harmless_duplicate() -> None:
    records = chain_of(4)
    replayed = records[:3] + records[1:3] + records[3:]  # the router re-sent records 1 and 2
    result = verify(replayed)
    assert result.ok and result.duplicates == [3, 4] and result.checked == 6


def test_records_are_deterministic_given_their_inputs() -> None:
    assert chain_of(3) == chain_of(3)
    with pytest.raises(ValueError, match="time zone"):
        AuditChain("c").append(**{**delivery(0), "delivered_at": datetime(2025, 3, 1, 8, 0)})
    same_instant = {**delivery(0), "delivered_at": START.astimezone(timezone(timedelta(hours=8)))}
    assert encode(AuditChain("population/0").append(**same_instant)) == chain_of(1)[0]


def test_interleaved_chains_are_verified_each_on_its_own_and_can_resume_from_an_anchor() -> None:
    first, second = chain_of(3, "population/0"), chain_of(3, "population/1")
    mixed = [first[0], second[0], first[1], second[1], first[2], second[2]]
    assert verify(mixed).ok
    anchor = {"population/0": decode(first[0])["hash"]}
    assert verify(first[1:], anchors=anchor).ok
    assert verify(first[1:]).first_break.kind == "removed"


def test_resuming_a_chain_continues_from_its_last_record() -> None:
    records = chain_of(2)
    writer = AuditChain.resume("population/0", decode(records[-1]))
    assert verify([*records, encode(writer.append(**delivery(2)))]).ok


def test_a_record_of_a_masked_delivery_holds_field_names_and_no_values() -> None:
    registry = default_registry()
    subscription = Subscription(
        id="sub-7", department="health", library="population", fields=("name", "biometric_digest", "sex"),
        purpose="work_reference", owner="public_security", state="approved",
        history=(Transition(state="requested", by="health", at=START),
                 Transition(state="approved", by="public_security", at=START)))
    projector = Projector.for_subscription(subscription, registry, b"k" * 32)
    change = {"event_id": "e-1", "entity_id": "610102199001011234", "version": 2, "op": "UPSERT",
              "fields_set": ["name", "biometric_digest"], "backfill": False, "recorded_at": START,
              "data": {"name": "王小明", "sex": "male", "biometric_digest": CANARY}}
    delivered, masked = projector.project(change, START)
    part = audit.delivery_of(projector, delivered, masked)
    record = AuditChain("population/0").record_change("population", change, [part], START, 41)
    payload = encode(record).decode("utf-8")
    assert CANARY not in payload and "王小明" not in payload and "male" not in payload
    [row] = audit.rows([record])
    assert (row["fields"], row["masked"]) == (["name", "sex"], ["name"])
    assert (row["entity_id"], row["subscription"], row["purpose"], row["source_offset"]) == (
        "610102199001011234", "sub-7", "work_reference", 41)


def test_query_answers_who_received_an_entity_when_and_for_what_each_once() -> None:
    writer = AuditChain("population/0")
    records = [writer.append(**delivery(index, department, entity_id)) for index, (department, entity_id) in
               enumerate([("health", "A"), ("tax", "A"), ("health", "B"), ("health", "A")])]
    log = [*records, records[0]]  # with a duplicate
    assert [r["event_id"] for r in query(log, entity_id="A")] == ["event-0", "event-1", "event-3"]
    assert [r["event_id"] for r in query(log, department="health", entity_id="A")] == ["event-0", "event-3"]
    assert query(log, department="education") == []


def test_one_record_of_a_change_answers_for_each_department_it_was_delivered_to() -> None:
    parts = [audit.delivery(department=department, subscription=f"sub-{department}", purpose=purpose,
                            fields=fields, masked=masked)
             for department, purpose, fields, masked in (("health", "work_reference", ["name"], ["name"]),
                                                         ("tax", "data_verification", ["name", "sex"], []))]
    record = AuditChain("population/0").append(**{**delivery(0, entity_id="A"), "deliveries": parts})
    assert verify([record]).ok
    health, tax = query([record, record], entity_id="A")  # a re-sent record counts once
    assert (health["department"], health["purpose"], health["fields"], health["masked"]) == (
        "health", "work_reference", ["name"], ["name"])
    assert (tax["department"], tax["purpose"], tax["fields"], tax["masked"]) == (
        "tax", "data_verification", ["name", "sex"], [])
    assert [row["department"] for row in query([record], department="tax")] == ["tax"]
    assert health["hash"] == tax["hash"] == record["hash"]


def test_a_record_of_the_older_one_per_delivery_format_is_still_answered() -> None:
    older = {"format": 1, "chain": "population/0", "previous": GENESIS, "delivered_at": "2025-03-01T08:00:00.000Z",
             "department": "health", "library": "population", "subscription": "sub-h", "purpose": "work_reference",
             "entity_id": "A", "event_id": "e-1", "version": 1, "op": "UPSERT", "backfill": False,
             "fields": ["name"], "masked": [], "source_offset": 3}
    older["hash"] = audit.record_hash(older)
    assert verify([older]).ok
    [row] = query([encode(older)], department="health", entity_id="A")
    assert (row["subscription"], row["fields"]) == ("sub-h", ["name"])


@settings(max_examples=200, deadline=None)
@given(st.integers(3, 12), st.data())
def test_any_single_alteration_removal_or_swap_is_found_where_it_happened(length: int, data: st.DataObject) -> None:
    records = chain_of(length)
    tamper = data.draw(st.sampled_from(["alter", "remove", "swap"]))
    at = data.draw(st.integers(0, length - 2))
    if tamper == "alter":
        records[at] = altered(records[at], purpose="work_reference")
        expected = (at, "altered")
    elif tamper == "remove":
        del records[at]
        expected = (at, "removed")
    else:
        records[at], records[at + 1] = records[at + 1], records[at]
        expected = (at, "out_of_order")
    found = verify(records).first_break
    assert (found.position, found.kind) == expected


# --- anchoring: a re-hashed tail verifies on its own, never against the heads ----------------
def rehashed_tail(records: list[bytes], start: int, **changes: object) -> list[bytes]:
    """Records from `start` on altered and hashed again, each linked to the one before: what a
    writer who can re-hash produces. The chain alone still verifies."""
    writer = AuditChain("population/0", decode(records[start - 1])["hash"])
    tail = []
    for value in records[start:]:
        record = {key: item for key, item in decode(value).items() if key not in ("hash", "previous", "chain")}
        record.update(changes)
        record["delivered_at"] = datetime.fromisoformat(record["delivered_at"].replace("Z", "+00:00"))
        record.pop("format")
        tail.append(encode(writer.append(**record)))
    return records[:start] + tail


def test_a_rehashed_tail_passes_the_chain_alone_but_not_the_stored_head() -> None:
    records = chain_of(8)
    forged = rehashed_tail(records, 5, entity_id="someone else")
    assert verify(forged).ok, "the chain alone cannot tell"
    head = decode(records[-1])["hash"]
    result = audit.verify_anchored(forged, audit.stored_anchors({"population/0": head}))
    assert not result.ok and result.first_break.kind == "unanchored" and result.first_break.chain == "population/0"
    assert f"no longer holds the record {head[:12]}… that audit.heads vouches for" in result.first_break.message
    assert audit.verify_anchored(records, audit.stored_anchors({"population/0": head})).ok


def test_governances_published_head_catches_a_tail_rehashed_with_audit_heads_rewritten_too() -> None:
    records = chain_of(8)
    published = audit.published_anchors([audit.publication({"population/0": decode(records[5])["hash"]},
                                                           START, "governance")])
    forged = rehashed_tail(records, 3, op="DELETE")
    forged_head = {"population/0": decode(forged[-1])["hash"]}  # the writer rewrote audit.heads as well
    result = audit.verify_anchored(forged, audit.stored_anchors(forged_head) + published, forged_head)
    assert not result.ok and "the head governance published at 2025-03-01T08:00:00.000Z" in result.first_break.message
    assert audit.verify_anchored(records, published).ok, "an honest chain still holds it"


def test_a_record_appended_after_the_stored_head_is_caught_at_its_position() -> None:
    records = chain_of(6)
    head = decode(records[-1])["hash"]
    appended = records + [encode(AuditChain("population/0", head).append(**delivery(6)))]
    assert verify(appended).ok
    result = audit.verify_anchored(appended, audit.stored_anchors({"population/0": head}), {"population/0": head})
    assert not result.ok and result.first_break.position == 6 and "appended by someone else" in result.first_break.message
