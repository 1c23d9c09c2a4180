"""What the gate refused of one source department's events, and why: read by that department.

`govbus publish` tells a source what the publisher itself refused (a record that does not
validate never leaves the machine). The gate refuses more, from what only it knows: a
sequence already used, a delete by a department that is not the entity's authority, a key
that is not the entity's, a partition the key does not map to. Each such event goes to
``dlq.<library>`` for the operators, and the same message, with the same reason headers
(``processors/gate/deadletters.py``), to ``control.rejections.<department>``, which only that
department (and governance) may read: a source learns about its own data and nobody
else's, from the broker's ACLs, not from a filter in this code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kafka.errors import KafkaError

from govbus.errors import GovbusError
from govbus.processors.gate import deadletters
from govbus.reading import stream_topic
from govbus.schemas.framing import header_map
from govbus.settings import Settings
from govbus.topics.names import TopicNames


@dataclass(frozen=True, slots=True)
class Rejected:
    """One event the gate refused: where it came from, when, why."""

    at: str  # when the gate refused it (ISO 8601)
    reason: str  # a stable code (counted in the assessment)
    detail: str  # for people: what was wrong (never the values, which may be personal data)
    origin: str  # ingest topic[partition]@offset the event was read from
    event_id: str | None  # the event's ce_id as the source sent it, to find it in its own logs
    library: str

    def line(self) -> str:
        return f"{self.at}  {self.library:<12} {self.reason:<24} {self.event_id or '-':<36}  {self.origin}  {self.detail}"


def rejected(message: Any, names: TopicNames) -> Rejected:
    """The rejection a message of a rejections topic records."""
    info = deadletters.describe(list(message.headers or ()))
    origin_topic = info.get("topic", "?")
    try:
        library = names.parse_ingest(origin_topic)[0]
    except ValueError:
        library = "?"
    event_id = header_map(list(message.headers or ())).get("ce_id")
    return Rejected(at=info.get("time", "?"), reason=info.get("reason", "?"), detail=info.get("detail", ""),
                    origin=f"{origin_topic}[{info.get('partition', '?')}]@{info.get('offset', '?')}",
                    event_id=event_id.decode(errors="replace") if event_id else None, library=library)


def read(settings: Settings, department: str, *, reason: str | None = None,
         since: datetime | None = None) -> Iterator[Rejected]:
    """The department's rejections now on the broker, oldest first per partition; a
    GovbusError naming the principal when the broker does not let it read them."""
    names = TopicNames(settings.topic_prefix)
    topic = names.rejections_of(department)
    try:
        for message in stream_topic(settings, topic, timeout=60, settle=2.0):
            found = rejected(message, names)
            if reason and found.reason != reason:
                continue
            if since is not None and not _after(found.at, since):
                continue
            yield found
    except (GovbusError, KafkaError) as error:
        raise GovbusError(f"{settings.sasl_username} cannot read {department}'s rejections ({error}); a department "
                          "reads only its own: log in as it") from None


def _after(moment: str, since: datetime) -> bool:
    try:
        return datetime.fromisoformat(moment) >= since
    except ValueError:
        return True  # an unreadable time is shown rather than hidden
