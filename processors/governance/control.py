"""The one application channel (统一申请): subscriptions as events in ``control.subscriptions``.

A request is judged at once against the catalog and the schema (refused, approved
automatically for unconditional fields, or waiting for the fields' authorities); approvals,
refusals and revocations are further events on the same key. The topic is compacted, so it
always holds the latest state of every subscription, and the router obeys what it says.

Who acts is who is logged in. A department (or governance) writes its request or decision as
an act to its own ``control.acts.<itself>`` (the broker lets nobody else write it), and the
authority processor folds it into ``control.subscriptions`` (``processors/governance/authority.py``); the
call waits for that outcome. The operators' super user (``admin``, provisioning) may write
``control.subscriptions`` directly, naming the department it acts for — a super user can write
any topic, so this path is no less than it could do anyway; the step is marked ``via: admin``
and judged by the same rule (``subscriptions.entitled``).
"""

from __future__ import annotations

from datetime import datetime, timezone

from kafka.errors import SecurityDisabledError

from govbus import clients
from govbus.errors import GovbusError
from govbus.reading import read_topic
from govbus.processors.governance import acts
from govbus.processors.governance import subscriptions as rules
from govbus.processors.governance.subscriptions import Subscription, SubscriptionError, SubscriptionRequest
from govbus.schemas.registry import default_registry
from govbus.security.credentials import ADMIN
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


def operator(settings: Settings) -> bool:
    """Whether this process is the operators' super user (or on a broker without security),
    which writes ``control.subscriptions`` itself instead of through an acts topic."""
    return not settings.secured or acts.principal(settings) == ADMIN


def request(settings: Settings, request: SubscriptionRequest) -> Subscription:
    """Judge a request and record it; the result says refused, approved or requested."""
    if operator(settings):
        return write(settings, rules.judge(request, load_catalog(settings.catalog_dir), default_registry(), _now(),
                                           via=ADMIN if settings.secured else None))
    subscription_id = rules.new_id()
    act = acts.build("subscription.request", subscription=subscription_id, request=request.model_dump(mode="json"))
    return _outcome(settings, subscription_id, act)


def find(settings: Settings, subscription_id: str) -> Subscription:
    current = read_all(settings)
    if subscription_id not in current:
        raise SubscriptionError(f"no subscription {subscription_id!r}; `govbus subscriptions list` shows them")
    return current[subscription_id]


def approve(settings: Settings, subscription_id: str, by: str | None = None, reason: str | None = None) -> Subscription:
    """Approve as the logged-in authority (`by`: only for the operators' super user)."""
    return _decide(settings, "approved", subscription_id, by, reason)


def refuse(settings: Settings, subscription_id: str, by: str | None = None, reason: str = "") -> Subscription:
    return _decide(settings, "refused", subscription_id, by, reason)


def revoke(settings: Settings, subscription_id: str, by: str | None = None, reason: str | None = None) -> Subscription:
    return _decide(settings, "revoked", subscription_id, by, reason)


KINDS = {"approved": "subscription.approve", "refused": "subscription.refuse", "revoked": "subscription.revoke"}


def _decide(settings: Settings, action: str, subscription_id: str, by: str | None,
            reason: str | None) -> Subscription:
    me = acts.principal(settings)
    if operator(settings):
        if not by:
            raise SubscriptionError(f"logged in as {me} (the operators' super user): name the department you act "
                                    "for, or log in as the department")
        decided = rules.DECISIONS[action](find(settings, subscription_id), by, _now(), reason,  # type: ignore[operator]
                                          via=ADMIN if settings.secured else None)
        return write(settings, decided)
    if by not in (None, me):
        raise SubscriptionError(f"logged in as {me}: a principal decides only as itself, not as {by}")
    find(settings, subscription_id)
    return _outcome(settings, subscription_id, acts.build(KINDS[action], subscription=subscription_id, reason=reason))


def _outcome(settings: Settings, subscription_id: str, act: dict) -> Subscription:
    """Write the act, wait until the authority processor recorded it; refused acts raise."""
    act_id = acts.send(settings, act)

    def recorded() -> Subscription | None:
        subscription = read_all(settings).get(subscription_id)
        if subscription is None or act_id not in subscription.acts():
            return None
        for refusal in subscription.refusals:
            if refusal.act == act_id:
                raise SubscriptionError(f"refused by the bus: {refusal.reason}")
        return subscription

    return acts.wait_for(recorded, f"{act['kind']} of {subscription_id}")


def _now() -> datetime:
    return datetime.now(timezone.utc)
