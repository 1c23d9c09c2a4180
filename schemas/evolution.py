"""What a new schema version may change about its predecessor, checked when the registry loads.

Two kinds of change stop a version at load time, so that the bus never runs with it:

- a change that breaks compatibility with the predecessor either way (the Apache `avro`
  checker, `compatibility.reading_problems`): subscribers upgrade at their own pace;
- a change of a field's sharing class, authority or mask (with the purposes it applies to)
  that the file does not mark as reviewed. Such a change decides who receives a citizen's
  data — `not_shared` → `unconditional` would send it to every department — so it must
  never pass as an edit among others. The marker, on the field in the new version:

      "reviewed_changes": [{"change": "sharing", "from": "not_shared", "to": "conditional",
                            "by": "data_bureau", "note": "catalogue revision 2026-12, item 14"}]

  names the exact change (a marker for another change does not cover it), who reviewed it and
  why; `govbus schemas check` prints, for every change without one, the field, the change and
  the marker to add.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .registry import FieldPolicy, SchemaVersion

REVIEWED_ATTRIBUTES = ("sharing", "authority", "mask")
MARKER = "reviewed_changes"


def marker_problems(markers: Any) -> list[str]:
    """Why a field's `reviewed_changes` is malformed (empty when it is well formed)."""
    if not isinstance(markers, list):
        return [f"{MARKER} must be a list of reviewed changes"]
    problems = []
    for marker in markers:
        if not isinstance(marker, dict) or set(marker) != {"change", "from", "to", "by", "note"}:
            problems.append(f'each of {MARKER} has exactly "change", "from", "to", "by" and "note"')
        elif marker["change"] not in REVIEWED_ATTRIBUTES:
            problems.append(f"{MARKER}: change {marker['change']!r} must be one of {', '.join(REVIEWED_ATTRIBUTES)}")
        elif not all(isinstance(marker[key], str) and marker[key].strip() for key in ("by", "note")):
            problems.append(f'{MARKER}: "by" (who reviewed it) and "note" (why) must be given')
    return problems


def reviewed_value(policy: FieldPolicy, attribute: str) -> Any:
    """The value of a reviewed attribute, as a marker's "from" and "to" spell it: the sharing
    class, the authority, or for a mask {"mask": rule, "mask_for": "all" | [purposes]} (None
    when the field is not masked)."""
    if attribute == "mask":
        if policy.mask is None:
            return None
        return {"mask": policy.mask, "mask_for": "all" if policy.mask_all else sorted(policy.mask_for)}
    return getattr(policy, attribute)


def policy_changes(older: SchemaVersion, newer: SchemaVersion) -> list[str]:
    """One problem per field whose sharing class, authority or mask differs between two
    consecutive versions without a matching marker in the newer file."""
    problems = []
    for name, policy in newer.fields.items():
        before = older.fields.get(name)
        if before is None:
            continue
        for attribute in REVIEWED_ATTRIBUTES:
            was, now = reviewed_value(before, attribute), reviewed_value(policy, attribute)
            if was == now or _marked(policy, attribute, was, now):
                continue
            marker = {"change": attribute, "from": was, "to": now, "by": "<who reviewed it>", "note": "<why>"}
            problems.append(
                f"{newer.path}: field {name}: {attribute} changes from {json.dumps(was, ensure_ascii=False)} in "
                f"v{older.version} to {json.dumps(now, ensure_ascii=False)} in v{newer.version} without a reviewed "
                f"marker; once reviewed, add to the field \"{MARKER}\": [{json.dumps(marker, ensure_ascii=False)}]")
    return problems


def _marked(policy: FieldPolicy, attribute: str, was: Any, now: Any) -> bool:
    return any(marker["change"] == attribute and marker["from"] == was and marker["to"] == now
               for marker in policy.reviewed_changes)


def evolution_problems(older: SchemaVersion, newer: SchemaVersion) -> list[str]:
    """Everything that stops `newer` from following `older`: incompatibility either way, and
    unreviewed changes of sharing class, authority or mask."""
    from .compatibility import reading_problems  # it imports the registry, which imports this

    return reading_problems(newer, older) + reading_problems(older, newer) + policy_changes(older, newer)
