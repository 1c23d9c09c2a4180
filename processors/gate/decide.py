"""What the gate does with one decoded, validated change event: the pure decision.

`decide` takes the entity's golden record and the event and returns an `Outcome`: the new
golden record, the change to publish on `shared.<library>`, the conflicts to send to
`control.conflicts`, or why the event goes to the dead-letter topic. No I/O, no clock.

The rules, in order:
1. Order (per source department and entity): a sequence below the department's last
   applied one is stale; equal with the same event id is a redelivery after a crash, and
   the outputs recorded the first time are returned again, since the gate cannot know
   whether they were sent; equal with another event id is rejected. A department's
   corrections (its answers to objections, source system ``govbus-corrections``) are
   numbered in an order of their own (`ordering`), so a correction never takes a number the
   department's own system will use next: both the correction and the next real change apply.
2. DELETE: only the owner (the department authoritative for the entity key field) may
   delete; the record becomes a tombstone and a delete change is published.
3. UPSERT / SNAPSHOT, per field in `fields_set` (一数一源): values from the field's
   authority are applied (None clears); other departments' values are never applied but
   kept as claims, and compared with the authoritative value (多元校核).
4. A conflict is raised whenever a department's latest claim and the authoritative value
   differ, once per (claim, authoritative value): when the report comes in, and again when
   the authority later sets or changes the value. A null report is not a claim (it drops
   the department's copy); a null authoritative value is a value and can conflict.
5. The version grows by one when the data image subscribers see changes; an event that
   changes nothing still advances its department's sequence but publishes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from govbus.processors.gate.golden import Claim, Golden, Mark, Stamp

CORRECTIONS_SYSTEM = "govbus-corrections"  # the source system of a department's objection corrections


class Status(StrEnum):
    APPLIED = "applied"  # accepted and a shared change is published
    UNCHANGED = "unchanged"  # accepted (sequence recorded, claims kept) but nothing to publish
    STALE = "stale"  # older than what was applied from this department: ignored
    REDELIVERED = "redelivered"  # the last applied event again: its outputs are re-emitted
    REJECTED = "rejected"  # goes to the dead-letter topic with `rejection`


class Reason(StrEnum):
    """Reason codes of rejected events (the DLQ reason header)."""

    NOT_AUTHORITATIVE_DELETE = "not_authoritative_delete"
    DUPLICATE_SEQUENCE = "duplicate_sequence"


@dataclass(slots=True)
class Outcome:
    """What to write: `golden` to state.<library> (always; it is the input when nothing was
    accepted), `shared_change` to shared.<library>, each conflict to control.conflicts, and
    the event with `rejection` to the dead-letter topic. A stale event is only counted."""

    status: Status
    golden: Golden | None  # the new record (a tombstone after a delete); the old one if not accepted
    shared_change: dict[str, Any] | None = None
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    rejection: tuple[Reason, str] | None = None


def ordering(department: str, event: Mapping[str, Any]) -> str:
    """The sequence namespace of an event: its department's, or that department's corrections'
    (a correction is numbered by its own clock, apart from the source system's numbers). The
    topic names the department, so a department can only ever order its own changes."""
    if event.get("source_system") == CORRECTIONS_SYSTEM:
        return f"{department}/corrections"
    return department


def decide(policies: Mapping[str, Any], entity_key_field: str, golden: Golden | None,
           department: str, event: Mapping[str, Any]) -> Outcome:
    """Decide the fate of one event from `department` about the entity of `golden`.

    `policies` maps each data field to its FieldPolicy (only `.authority` is read).
    """
    namespace = ordering(department, event)
    mark = golden.marks.get(namespace) if golden is not None else None
    if mark is not None:
        sequence = event["sequence"]
        if sequence < mark.sequence:
            return Outcome(Status.STALE, golden)
        if sequence == mark.sequence:
            if event["event_id"] == mark.event_id:
                return Outcome(Status.REDELIVERED, golden, mark.change, list(mark.conflicts))
            return _rejected(golden, Reason.DUPLICATE_SEQUENCE,
                             f"{department} sent sequence {sequence} of this entity "
                             f"twice: event {mark.event_id} was applied, {event['event_id']} is "
                             "another event; a source must raise the sequence with every change")
    if event["op"] == "DELETE":
        return _delete(policies[entity_key_field].authority, entity_key_field, golden,
                       department, event, namespace)
    return _merge(policies, entity_key_field, golden, department, event, namespace)


def _rejected(golden: Golden | None, reason: Reason, message: str) -> Outcome:
    return Outcome(Status.REJECTED, golden, rejection=(reason, message))


def _delete(owner: str, key_field: str, golden: Golden | None, department: str,
            event: Mapping[str, Any], namespace: str) -> Outcome:
    if department != owner:
        return _rejected(golden, Reason.NOT_AUTHORITATIVE_DELETE,
                         f"{department} may not delete this entity: only {owner}, "
                         f"the authority for {key_field}, deletes; to withdraw its own values, "
                         f"{department} sends an UPSERT setting them to null")
    marks = dict(golden.marks) if golden is not None else {}
    if golden is None or golden.deleted:  # nothing subscribers could remove
        version, change = (golden.version if golden is not None else 0), None
    else:
        version = golden.version + 1
        change = _change(event, version, [], [], None)
    marks[namespace] = Mark(event["sequence"], event["event_id"], change)
    tombstone = Golden(event["entity_id"], version, True, {}, {}, {}, marks)
    return Outcome(Status.APPLIED if change else Status.UNCHANGED, tombstone, change)


def _merge(policies: Mapping[str, Any], key_field: str, golden: Golden | None,
           department: str, event: Mapping[str, Any], namespace: str) -> Outcome:
    base = golden if golden is not None else Golden(event["entity_id"])
    data, event_id = event["data"], event["event_id"]
    stamp = Stamp(department, event_id, event["sequence"], event["valid_from"], event["recorded_at"])
    values, stamps, claims = base.values, base.stamps, base.claims
    changed: list[str] = []
    asserted: list[str] = []  # authoritative fields whose stamp is new: their claims are checked
    reported: list[str] = []
    for name in event["fields_set"]:
        value = data.get(name)
        if policies[name].authority != department:
            if name != key_field:  # the key is the entity's identity, not a claim
                reported.append(name)
            continue
        known = name in stamps
        if known and values[name] == value:
            continue  # the same value again keeps the stamp of when it first became true
        if values is base.values:
            values, stamps = dict(values), dict(stamps)
        values[name], stamps[name] = value, stamp
        asserted.append(name)
        if known or value is not None:  # an unknown field declared null leaves the image as is
            changed.append(name)
    conflicts: list[dict[str, Any]] = []
    if claims and asserted:
        claims = _check_claims(claims, asserted, values, stamps, conflicts, event["entity_id"])
    if reported:
        claims = _report(claims, reported, data, stamp, values, stamps, conflicts, event["entity_id"])
    version, change = base.version, None
    if changed:
        version += 1
        image = dict.fromkeys(policies)
        image.update(values)
        backfill = event["op"] == "SNAPSHOT"
        change = _change(event, version, list(values) if backfill else changed, changed, image)
    marks = dict(base.marks)
    marks[namespace] = Mark(event["sequence"], event_id, change, tuple(conflicts))
    new = Golden(base.entity_id, version, False, values, stamps, claims, marks)
    return Outcome(Status.APPLIED if change else Status.UNCHANGED, new, change, conflicts)


def _change(event: Mapping[str, Any], version: int, fields_set: list[str], changed: list[str],
            image: dict[str, Any] | None) -> dict[str, Any]:
    """The shared change: the full data image after the change, and which fields changed."""
    return {"entity_id": event["entity_id"], "version": version, "op": event["op"],
            "fields_set": fields_set, "changed": changed, "data": image,
            "source_department": event["source_department"], "event_id": event["event_id"],
            "sequence": event["sequence"], "valid_from": event["valid_from"],
            "recorded_at": event["recorded_at"], "backfill": event["op"] == "SNAPSHOT"}


def _check_claims(claims: dict[str, dict[str, Claim]], asserted: list[str],
                  values: dict[str, Any], stamps: dict[str, Stamp],
                  conflicts: list[dict[str, Any]], entity_id: str) -> dict[str, dict[str, Claim]]:
    """Compare the claims on newly asserted authoritative values; raise what differs."""
    updated = claims
    for name in asserted:
        by_department = claims.get(name)
        if not by_department:
            continue
        value, stamp = values[name], stamps[name]
        for department, claim in by_department.items():
            if claim.value == value:  # (the stamp is this event's: it cannot have been raised yet)
                continue
            conflicts.append(_conflict(entity_id, name, value, stamp, claim))
            if updated is claims:
                updated = dict(claims)
            if updated[name] is by_department:
                updated[name] = dict(by_department)
            updated[name][department] = claim._replace(raised_against=stamp.event_id)
    return updated


def _report(claims: dict[str, dict[str, Claim]], reported: list[str], data: Mapping[str, Any],
            stamp: Stamp, values: dict[str, Any], stamps: dict[str, Stamp],
            conflicts: list[dict[str, Any]], entity_id: str) -> dict[str, dict[str, Claim]]:
    """Keep a non-authoritative department's values as claims; raise those that differ."""
    claims = dict(claims)
    department = stamp.department
    for name in reported:
        value = data.get(name)
        by_department = dict(claims.get(name, ()))
        previous = by_department.get(department)
        if value is None:
            by_department.pop(department, None)
        else:
            claim = previous if previous is not None and previous.value == value else Claim(value, stamp)
            authority = stamps.get(name)
            if (authority is not None and values[name] != value
                    and claim.raised_against != authority.event_id):
                conflicts.append(_conflict(entity_id, name, values[name], authority, claim))
                claim = claim._replace(raised_against=authority.event_id)
            by_department[department] = claim
        if by_department:
            claims[name] = by_department
        else:
            claims.pop(name, None)
    return claims


def _conflict(entity_id: str, name: str, value: Any, authority: Stamp, claim: Claim) -> dict[str, Any]:
    """One disagreement, with everything the authority needs to verify it."""
    reported = claim.stamp
    return {"conflict_id": f"{entity_id}/{name}/{reported.event_id}/{authority.event_id}",
            "entity_id": entity_id, "field": name,
            "authoritative_department": authority.department, "authoritative_value": value,
            "authoritative_event_id": authority.event_id,
            "authoritative_valid_from": authority.valid_from,
            "authoritative_recorded_at": authority.recorded_at,
            "reported_department": reported.department, "reported_value": claim.value,
            "reported_event_id": reported.event_id, "reported_valid_from": reported.valid_from,
            "reported_recorded_at": reported.recorded_at}
