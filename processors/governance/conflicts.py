"""Conflicts to verify (多元校核): the authoritative department receives the conflicts about its
fields and closes each with a verdict.

The gate writes each conflict (two departments' values of one field disagree) to
``control.conflicts``. The authority processor copies it to
``control.conflicts.<authoritative department>``, which only that department reads, and folds
the department's verdicts — acts ``conflict.verdict`` in its own ``control.acts.<department>``:

- ``kept``: the authoritative value is right and stays;
- ``corrected``: it was wrong and the department publishes the right value through its normal
  path (the verdict names the event id when it has one);
- ``source_told``: the other department's copy is wrong and it has been told.

Only the conflict's authoritative department closes it, once (`judge_verdict`); anything else
is recorded as refused with the reason, to its author. Verdicts go to ``control.verdicts``
(governance's record, no data values) and to the department's own conflict topic. Open
conflicts and their age show in the assessment. The conflict records hold both values, so they
are kept only as long as the catalog's retention of those topics says (``topics/bus.yaml``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from govbus.processors.governance import acts
from govbus.reading import read_topic
from govbus.errors import GovbusError
from govbus.settings import Settings
from govbus.topics.catalog import load_catalog
from govbus.topics.names import CONFLICTS, VERDICTS, TopicNames

VERDICT_KINDS = ("kept", "corrected", "source_told")


class ConflictError(GovbusError, ValueError):
    """A verdict that cannot be given; the message says why."""


@dataclass(frozen=True, slots=True)
class Conflict:
    """One conflict as its authoritative department sees it, with its verdict when closed."""

    id: str
    entity_id: str
    field: str
    authority: str
    reported_by: str
    record: Mapping[str, Any]
    verdict: Mapping[str, Any] | None = None

    @property
    def open(self) -> bool:
        return self.verdict is None


def verdict_event(conflict_id: str | None, *, by: str, at: datetime, verdict: str, note: str | None,
                  act: str | None, refused: str | None = None) -> dict[str, Any]:
    """A verdict (or, with `refused`, a verdict act that was not applied and why)."""
    event = {"format": 1, "conflict_id": conflict_id, "kind": "refused" if refused else "verdict",
             "verdict": verdict, "by": by, "at": at.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
             "note": note, "act": act}
    if refused:
        event["reason"] = refused
    return event


def judge_verdict(authorities: Mapping[str, str], closed: Iterable[str], author: str, act: Mapping[str, Any],
                  at: datetime) -> dict[str, Any]:
    """THE rule of who closes a conflict: its authoritative department, once, with a known
    verdict. `authorities`: conflict id → its authoritative department (from the gate's record)."""
    conflict_id, verdict = act.get("conflict_id"), str(act.get("verdict"))
    note = act.get("note") if isinstance(act.get("note"), str) else None
    why = None
    if not isinstance(conflict_id, str) or conflict_id not in authorities:
        why = f"no conflict {conflict_id!r}"
    elif authorities[conflict_id] != author:
        why = (f"conflict {conflict_id} is about a field whose authority is {authorities[conflict_id]}; only "
               f"{authorities[conflict_id]} gives its verdict, not {author}")
    elif conflict_id in set(closed):
        why = f"conflict {conflict_id} is closed already"
    elif verdict not in VERDICT_KINDS:
        why = f"verdict {verdict!r}: one of {', '.join(VERDICT_KINDS)}"
    return verdict_event(conflict_id if isinstance(conflict_id, str) else None, by=author, at=at, verdict=verdict,
                         note=note, act=act.get("act"), refused=why)


def fold(values: Iterable[bytes | None]) -> dict[str, Conflict]:
    """Conflicts and their verdicts from a department's topic (or the gate's record plus
    governance's verdicts), in order; unreadable records and refusals are skipped."""
    found: dict[str, Conflict] = {}
    for value in values:
        try:
            body = json.loads(value or b"")
        except ValueError:
            continue
        if not isinstance(body, dict) or not isinstance(body.get("conflict_id"), str):
            continue
        identifier = body["conflict_id"]
        if body.get("kind") == "verdict":
            if identifier in found and found[identifier].open:
                current = found[identifier]
                found[identifier] = Conflict(current.id, current.entity_id, current.field, current.authority,
                                             current.reported_by, current.record, body)
        elif "authoritative_department" in body and identifier not in found:
            found[identifier] = Conflict(identifier, str(body.get("entity_id")), str(body.get("field")),
                                         str(body["authoritative_department"]), str(body.get("reported_department")),
                                         body)
    return found


def topics_for(settings: Settings) -> list[str]:
    """Where the logged-in principal reads conflicts: a department its own; others the record."""
    names = TopicNames(settings.topic_prefix)
    who = acts.principal(settings)
    if settings.secured and who in load_catalog(settings.catalog_dir).departments:
        return [names.conflicts_of(who)]
    return [names.bus(CONFLICTS), names.bus(VERDICTS)]


def list_conflicts(settings: Settings, *, open_only: bool = False) -> list[Conflict]:
    values = [message.value for topic in topics_for(settings) for message in read_topic(settings, topic)]
    return [c for c in fold(values).values() if c.open or not open_only]


def give_verdict(settings: Settings, conflict_id: str, verdict: str, note: str | None = None) -> Conflict:
    """Close a conflict about one's own field, as the logged-in department; waits for the record."""
    if verdict not in VERDICT_KINDS:
        raise ConflictError(f"verdict {verdict!r}: one of {', '.join(VERDICT_KINDS)}")
    act_id = acts.send(settings, acts.build("conflict.verdict", conflict_id=conflict_id, verdict=verdict, note=note))

    def recorded() -> Conflict | None:
        values = [message.value for topic in topics_for(settings) for message in read_topic(settings, topic)]
        for value in values:
            body = json.loads(value or b"{}") if value else {}
            if isinstance(body, dict) and body.get("act") == act_id:
                if body.get("kind") == "refused":
                    raise ConflictError(f"refused by the bus: {body.get('reason')}")
                return fold(values).get(conflict_id)
        return None

    return acts.wait_for(recorded, f"the verdict on {conflict_id}")
