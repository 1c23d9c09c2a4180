"""Dead letters: a rejected event keeps its bytes and headers, plus why, who and when.

Nothing a processor cannot accept is dropped. It goes to ``dlq.<library>`` with its original
key, value and headers untouched, and ``govbus_dlq_*`` headers that say the reason (a short
code and a readable detail), the processor, the time, and where it came from, so that
``govbus dlq replay`` can send it back to its original topic once the cause is fixed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from govbus.schemas.framing import Headers, header_map, message_size

REASON = "govbus_dlq_reason"
DETAIL = "govbus_dlq_detail"
PROCESSOR = "govbus_dlq_processor"
TIME = "govbus_dlq_time"
ORIGIN_TOPIC = "govbus_dlq_topic"
ORIGIN_PARTITION = "govbus_dlq_partition"
ORIGIN_OFFSET = "govbus_dlq_offset"
_OURS = (REASON, DETAIL, PROCESSOR, TIME, ORIGIN_TOPIC, ORIGIN_PARTITION, ORIGIN_OFFSET)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event was not accepted: a stable code for counting, a detail for people."""

    reason: str
    detail: str


def dead_letter_headers(original: Headers, rejection: Rejection, processor: str,
                        topic: str, partition: int, offset: int, now: datetime | None = None) -> Headers:
    moment = (now or datetime.now(timezone.utc)).isoformat(timespec="milliseconds")
    kept = [(name, value) for name, value in original if name not in _OURS]
    return kept + [
        (REASON, rejection.reason.encode()),
        (DETAIL, rejection.detail.encode()[:8000]),
        (PROCESSOR, processor.encode()),
        (TIME, moment.encode()),
        (ORIGIN_TOPIC, topic.encode()),
        (ORIGIN_PARTITION, str(partition).encode()),
        (ORIGIN_OFFSET, str(offset).encode()),
    ]


def original_headers(headers: Headers) -> Headers:
    """The headers as they were before the event was dead-lettered (for replay)."""
    return [(name, value) for name, value in headers if name not in _OURS]


def describe(headers: Headers) -> dict[str, Any]:
    found = header_map(headers)
    return {name.removeprefix("govbus_dlq_"): found[name].decode(errors="replace") for name in _OURS if name in found}


def violations_detail(violations: list[Any]) -> str:
    """Field and rule of each violation; not the messages, which may quote personal data
    (headers are seen by every tool). ``govbus dlq list`` re-validates to show messages."""
    return json.dumps([{"field": v.field, "rule": v.rule} for v in violations], ensure_ascii=False)


# When the whole original does not fit in a dead letter: what is left out, step by step
# (what the detail says; keep the headers, the value, the key).
_LEAVING_OUT = (("", True, True, True), ("headers", False, True, True), ("headers and value", False, False, True),
                ("headers, value and key", False, False, False))


def fitted(original: tuple[bytes | None, bytes | None, Headers], rejection: Rejection, processor: str,
           topic: str, partition: int, offset: int, limit: int) -> tuple[bytes | None, bytes | None, Headers]:
    """The key, value and headers of a dead letter no bigger than `limit` bytes: the whole
    original when it fits, else without its headers, then its value, then its key, the detail
    saying what was left out.

    Why: a message the producer or broker refuses fails the batch's transaction, and the same
    batch would fail again after every restart — the partition would stall. What is left out
    is still at its origin (topic, partition and offset are in the headers) while that topic
    keeps it."""
    key, value, headers = original
    letter = original
    for left_out, with_headers, with_value, with_key in _LEAVING_OUT:
        noted = rejection if not left_out else Rejection(
            rejection.reason, f"{rejection.detail} (too large to copy whole: the original {left_out} left out; "
                              "read them at the origin)")
        letter = (key if with_key else None, value if with_value else None,
                  dead_letter_headers(list(headers) if with_headers else [], noted, processor, topic, partition, offset))
        if message_size(*letter) <= limit:
            break
    return letter
