"""The one application channel (统一申请): subscriptions as events in ``control.subscriptions``.

A request is judged at once against the catalog and the schema (refused, approved
automatically for unconditional fields, or waiting for the owner); approvals, refusals and
revocations are further events on the same key. The topic is compacted, so it always holds
the latest state of every subscription, and the router obeys what it says.
"""

from __future__ import annotations

from datetime import datetime, timezone

from kafka.errors import SecurityDisabledError

from govbus import clients
from govbus.errors import GovbusError
from govbus.reading import read_topic
from govbus.processors import subscriptions as rules
from govbus.processors.subscriptions import Subscription, SubscriptionError, SubscriptionRequest
from govbus.schemas.registry import default_registry
from govbus.settings import Settings
from govbus.topics import acls
from govbus.topics.catalog import load_catalog
from govbus.topics.names import SUBSCRIPTIONS, TopicNames


def topic(settings: Settings) -> str:
    return TopicNames(settings.topic_prefix).bus(SUBSCRIPTIONS)


def read_all(settings: Settings) -> dict[str, Subscription]:
    """Every subscription as the topic now says."""
    try:
        messages = read_topic(settings, topic(settings))
    except GovbusError as error:
        raise SubscriptionError(str(error)) from None
    return rules.fold((message.key, message.value) for message in messages)


def write(settings: Settings, subscription: Subscription) -> Subscription:
    """Record a subscription's new state, then bring the broker's ACLs in line with it, so
    that an approval opens and a revocation closes the department's delivery topic at once.

    The ACLs are reconciled whenever the broker has an authorizer, whatever the listener: an
    operator's tool in the compose deployment logs in over the internal PLAINTEXT listener as
    the super user. A development broker without one (SECURITY_DISABLED) has no ACLs to keep."""
    producer = clients.producer(settings)
    try:
        producer.send(topic(settings), key=rules.key(subscription), value=rules.to_json(subscription)).get(timeout=30)
    finally:
        producer.close()
    current = read_all(settings)
    current[subscription.id] = subscription
    admin = clients.admin(settings)
    try:
        acls.reconcile(admin, load_catalog(settings.catalog_dir), TopicNames(settings.topic_prefix), current.values())
    except SecurityDisabledError:
        pass
    finally:
        admin.close()
    return subscription


def request(settings: Settings, request: SubscriptionRequest) -> Subscription:
    """Judge a request and record it; the result says refused, approved or requested."""
    judged = rules.evaluate(request, load_catalog(settings.catalog_dir), default_registry(), _now())
    return write(settings, judged)


def find(settings: Settings, subscription_id: str) -> Subscription:
    current = read_all(settings)
    if subscription_id not in current:
        raise SubscriptionError(f"no subscription {subscription_id!r}; `govbus subscriptions list` shows them")
    return current[subscription_id]


def approve(settings: Settings, subscription_id: str, by: str, reason: str | None = None) -> Subscription:
    return write(settings, rules.approve(find(settings, subscription_id), by, _now(), reason))


def refuse(settings: Settings, subscription_id: str, by: str, reason: str) -> Subscription:
    return write(settings, rules.refuse(find(settings, subscription_id), by, _now(), reason))


def revoke(settings: Settings, subscription_id: str, by: str, reason: str | None = None) -> Subscription:
    return write(settings, rules.revoke(find(settings, subscription_id), by, _now(), reason))


def _now() -> datetime:
    return datetime.now(timezone.utc)
