"""What the broker holds for one bus, asked of the broker itself: its topics and partitions
under the prefix, the ACLs of its principals on its resources, and the messages of each topic.

Messages are counted by reading every topic to its end (committed data only), not from the end
offsets: the processors write in transactions, and each transaction leaves a commit marker in
every partition it wrote, which takes an offset but is no message. The end offsets are
reported beside the counts; their difference is the markers (a cost per batch and partition).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient

from govbus import clients
from govbus.errors import GovbusError
from govbus.settings import Settings
from govbus.topics import acls
from govbus.topics.catalog import Catalog
from govbus.topics.names import AUDIT, TopicNames

READ_TIMEOUT_S = 300.0


@dataclass
class TopicCounts:
    """Per topic: partitions, messages, bytes (key, value and headers) and the log's end offsets."""

    partitions: dict[str, int] = field(default_factory=dict)
    messages: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    log_end: Counter[str] = field(default_factory=Counter)


def bus_topics(admin: KafkaAdminClient, names: TopicNames) -> dict[str, int]:
    """Every topic under the bus's prefix (the broker's own, ``__…``, are not the bus's), with
    its number of partitions."""
    listed = sorted(topic for topic in admin.list_topics() if topic.startswith(names.prefix)
                    and not names.unprefixed(topic).startswith("__"))
    return {topic["name"]: len(topic["partitions"]) for topic in admin.describe_topics(listed)}


def topic_kind(topic: str, catalog: Catalog, names: TopicNames) -> str:
    """The capacity model's kind of a topic: ingest, library (a library's own five), bus (the
    bus's own), principal (one per principal) or deliver."""
    bare = names.unprefixed(topic)
    if bare in catalog.bus.topics:
        return "bus"
    root = bare.split(".", 1)[0]
    if root in ("ingest", "deliver"):
        return root
    if root in ("shared", "state", "dlq") or bare.startswith("audit.heads."):
        return "library"
    if bare.startswith("control."):
        return "principal"
    return "other"


def message_kind(topic: str, names: TopicNames) -> str:
    """The kind the model counts a topic's messages under."""
    bare = names.unprefixed(topic)
    if bare == AUDIT:
        return "audit"
    if bare.startswith("audit.heads."):
        return "audit_heads"
    root = bare.split(".", 1)[0]
    return root if root in ("ingest", "shared", "state", "deliver", "dlq") else "control"


def by_kind(values: Mapping[str, int], kind_of: Callable[[str], str]) -> dict[str, int]:
    """Per-topic figures summed per kind, with the total."""
    summed: Counter[str] = Counter()
    for topic, value in values.items():
        summed[kind_of(topic)] += value
    return {**dict(sorted(summed.items())), "total": sum(summed.values())}


def bus_acls(admin: KafkaAdminClient, catalog: Catalog, names: TopicNames, principals: Iterable[str]) -> int:
    """The ACLs the broker holds for these principals on this bus's resources (``acls.current``)."""
    return len(acls.current(admin, principals, names, catalog))


def count_messages(settings: Settings, partitions: Mapping[str, int], timeout: float = READ_TIMEOUT_S) -> TopicCounts:
    """Read every partition of `partitions` (topic → count) from its start to its end, as a
    reader of committed data sees it, and count."""
    from confluent_kafka import KafkaError, TopicPartition

    counts = TopicCounts(partitions=dict(partitions))
    consumer = clients.fast_consumer(settings, f"{settings.topic_prefix}govbus-simulate-count",
                                     **{"enable.partition.eof": True})
    try:
        assigned = [TopicPartition(topic, number, 0) for topic, count in partitions.items() for number in range(count)]
        left = set()
        for each in assigned:
            low, high = consumer.get_watermark_offsets(each, timeout=30)
            counts.log_end[each.topic] += high
            if high > low:
                left.add((each.topic, each.partition))
        consumer.assign(assigned)
        deadline = time.monotonic() + timeout
        while left:
            if time.monotonic() > deadline:
                raise GovbusError(f"could not read {len(left)} partition(s) to their end within {timeout:.0f} s, "
                                  f"e.g. {sorted(left)[:3]}")
            for message in consumer.consume(num_messages=5000, timeout=1.0):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        left.discard((message.topic(), message.partition()))
                        continue
                    raise GovbusError(f"reading {message.topic()}: {error}")
                counts.messages[message.topic()] += 1
                counts.bytes[message.topic()] += _size(message)
    finally:
        consumer.close()
    return counts


def _size(message: Any) -> int:
    headers = message.headers() or ()
    return (len(message.key() or b"") + len(message.value() or b"")
            + sum(len(name) + len(value or b"") for name, value in headers))
