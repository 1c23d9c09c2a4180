"""Until when a department's view of a library is current: its subscriptions' ends.

A store's watermark ("current as of T") promises that every delivery routed before T is
applied. Once every subscription of the department to a library has ended — expired at its
``until``, or revoked — nothing more is routed to it, so the bus can promise nothing after
that instant: the watermark stops there, and the subscriber says the view ended, instead of
going on reading an empty topic as "current". A renewal (a new subscription, approved) makes
it current again from its own deliveries.

The subscriber learns the ends from ``control.subscriptions`` (every department may read it:
who asked for what and who decided, no personal data), with the state each subscription has
by the clock (``Subscription.state_at``: the one rule the router, the ACLs and the
assessment use too), so an expiry counts from its instant even before the bus records it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from confluent_kafka import KafkaException, TopicPartition

from govbus import clients
from govbus.consumers.positions import ASK_TIMEOUT_S
from govbus.processors.governance import subscriptions as rules
from govbus.processors.governance.subscriptions import Subscription
from govbus.settings import Settings
from govbus.topics.names import SUBSCRIPTIONS, TopicNames

log = logging.getLogger("govbus.subscriber")


def ended_at(subscriptions: Iterable[Subscription], department: str, library: str, now: datetime) -> datetime | None:
    """When the department's access to the library ended, or None while one of its
    subscriptions to it is active (or none was ever approved: nothing to end)."""
    ends = []
    for subscription in subscriptions:
        if subscription.department != department or subscription.library != library:
            continue
        if subscription.active_at(now):
            return None
        end = _end(subscription, now)
        if end is not None:
            ends.append(end)
    return max(ends, default=None)


def _end(subscription: Subscription, now: datetime) -> datetime | None:
    """The instant an approved subscription stopped: its expiry, or its revocation."""
    if not any(step.state == "approved" for step in subscription.history) or subscription.state == "requested":
        return None  # never approved, or approved by some of its authorities only: never delivered
    if subscription.state_at(now) == "expired":
        return subscription.expires_at
    if subscription.state == "revoked":
        return subscription.decision.at
    return None


class SubscriptionWatch:
    """Follows ``control.subscriptions`` without waiting, for the subscriber's loop."""

    def __init__(self, settings: Settings, names: TopicNames, group: str) -> None:
        self.topic = names.bus(SUBSCRIPTIONS)
        self.current: dict[str, Subscription] = {}
        self.consumer = clients.fast_consumer(settings, group)
        try:
            metadata = self.consumer.list_topics(self.topic, timeout=ASK_TIMEOUT_S).topics.get(self.topic)
            partitions = sorted(metadata.partitions) if metadata is not None and metadata.error is None else [0]
            self.consumer.assign([TopicPartition(self.topic, partition, 0) for partition in partitions])
        except KafkaException as error:
            log.warning("cannot follow %s (%s): the store's watermark will not stop at a subscription's end",
                        self.topic, error.args[0])

    def poll(self) -> None:
        """Fold what has arrived since the last call (never waits)."""
        try:
            messages = self.consumer.consume(num_messages=500, timeout=0)
        except KafkaException:
            return
        for message in (message for message in messages if message.error() is None):
            key, value = (message.key() or b"").decode("utf-8", "replace"), message.value()
            if value is None:  # a tombstone removes its key
                self.current.pop(key, None)
                continue
            try:
                self.current[key] = rules.from_json(value)
            except ValueError:
                log.warning("an unreadable subscription record %r in %s: ignored", key, self.topic)

    def ended_at(self, department: str, library: str, now: datetime) -> datetime | None:
        return ended_at(self.current.values(), department, library, now)

    def close(self) -> None:
        self.consumer.close()


def capped(as_of: datetime | None, end: datetime | None) -> datetime | None:
    """The watermark, never past the end of access."""
    if as_of is None or end is None:
        return as_of
    return min(as_of, end)
