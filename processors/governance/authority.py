"""The authority processor: who may say what, decided from who wrote it.

Every department (and governance) writes its acts — subscription requests and decisions,
objections and answers — to its own ``control.acts.<principal>`` topic, which the broker lets
only that principal write (``topics/acls.py``). This processor, the one writer of
``control.subscriptions`` and ``control.objections*`` besides the operators' super user, reads
them all and folds each act with the author **named by the topic**:

- a request is judged against the catalog and the schema (``subscriptions.judge``): refused
  when written in another department's name;
- a decision is applied only when its author has the right (``subscriptions.entitled``: the
  fields' authority, the subscriber for a revocation, governance for policy-level refusals
  and revocations); otherwise it is kept on the subscription as refused, with the reason;
- an objection is raised as its author, owned by the field's authority in the schema, and
  answered only by that authority (``objections.judge_act``); a malformed act is refused with
  its reason, and the fold goes on for everyone else. Each step is recorded in
  ``control.objections`` and copied to the raiser's and the owner's own topics;
- each conflict the gate writes to ``control.conflicts`` is copied to the authoritative
  department's own ``control.conflicts.<department>``, and only that department's verdict
  closes it (``conflicts.judge_verdict``), recorded in ``control.verdicts``.

The clock acts here too: an approved subscription whose ``until`` has passed is put on the
record as expired (by the bus) within half a second of its end.

After a subscription changes, the broker's ACLs are brought in line (an approval opens the
department's delivery topic, a revocation or an expiry closes it), so this processor's
principal, ``govbus-authority``, may alter ACLs.

Nothing is applied twice: every record carries the id of the act it came from; on start the
processor reads its own record back and skips the acts it already folded, then commits its
position in the acts topics after each batch is written (at least once, recognised once).
Acts are rare (people's decisions), so this runs on kafka-python in a thread of the worker.

Why one module of about 330 lines: the fold of every act into decisions is one state machine; its rules read best side by side.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError, SecurityDisabledError
from pydantic import ValidationError

from govbus import clients
from govbus.consumers import objections as objection_rules
from govbus.consumers.objections import Objection
from govbus.errors import GovbusError
from govbus.processors.governance import acts
from govbus.processors.governance import conflicts as conflict_rules
from govbus.processors.governance import subscriptions as rules
from govbus.processors.governance.subscriptions import Subscription, SubscriptionRequest
from govbus.schemas.registry import SchemaRegistry
from govbus.settings import Settings
from govbus.topics import acls
from govbus.topics.catalog import Catalog
from govbus.topics.names import CONFLICTS, OBJECTIONS, SUBSCRIPTIONS, VERDICTS, TopicNames

log = logging.getLogger("govbus.authority")
RUN_PATIENCE = 120.0  # seconds of refused reads or writes in a row before the authority processor stops
ACL_RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)  # seconds between tries to bring the ACLs in line, then the processor fails
DECISIONS = {"subscription.approve": "approved", "subscription.refuse": "refused", "subscription.revoke": "revoked"}


@dataclass(frozen=True, slots=True)
class Record:
    """One message the fold writes."""

    topic: str
    key: bytes
    value: bytes


class AuthorityFold:
    """The current subscriptions and objections, and what each new act makes of them. No I/O
    except `real_entity_id` (the sharing records, for a pseudonymous objection)."""

    def __init__(self, catalog: Catalog, registry: SchemaRegistry, names: TopicNames,
                 real_entity_id: Callable[[Objection], str] | None = None) -> None:
        self.catalog = catalog
        self.registry = registry
        self.names = names
        self.real_entity_id = real_entity_id
        self.subscriptions: dict[str, Subscription] = {}
        self.objections: dict[str, Objection] = {}
        self.conflict_authorities: dict[str, str] = {}  # conflict id → its authoritative department
        self.closed_conflicts: set[str] = set()
        self.seen: set[str] = set()
        self.counts: Counter[str] = Counter()

    # -- what is already on the record ---------------------------------------------------
    def learn_subscription(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            self.subscriptions.pop(key.decode(), None)
            return
        subscription = rules.from_json(value)
        known = self.subscriptions.get(subscription.id)
        if known is not None and _steps(subscription) < _steps(known):
            # An earlier record of this fold's own, read back after the fold moved on (the
            # record reader trails the writes under load): taking it would step a decision
            # back, and the next ACL reconciliation would close an approved department's
            # delivery topic for good (seen in `govbus simulate`: 0 rows, 2 ACLs short).
            return
        self.subscriptions[subscription.id] = subscription
        self.seen.update(subscription.acts())

    def learn_objection(self, value: bytes) -> None:
        self.objections = objection_rules.fold([value], self.objections)
        try:
            act = json.loads(value).get("act")
        except (ValueError, AttributeError):
            return
        if act:
            self.seen.add(act)

    def learn_conflict(self, value: bytes | None) -> str | None:
        """A conflict the gate recorded; its authoritative department."""
        try:
            body = json.loads(value or b"")
            identifier, authority = body["conflict_id"], body["authoritative_department"]
        except (ValueError, KeyError, TypeError):
            return None
        self.conflict_authorities[str(identifier)] = str(authority)
        return str(authority)

    def learn_verdict(self, value: bytes | None) -> None:
        try:
            body = json.loads(value or b"")
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        if body.get("act"):
            self.seen.add(body["act"])
        if body.get("kind") == "verdict" and body.get("conflict_id"):
            self.closed_conflicts.add(body["conflict_id"])

    def route_conflict(self, key: bytes | None, value: bytes | None) -> list[Record]:
        """The gate's conflict, copied to its authoritative department's own topic."""
        authority = self.learn_conflict(value)
        if authority is None or authority not in self.catalog.departments or value is None:
            return []
        return [Record(self.names.conflicts_of(authority), key or b"", value)]

    # -- the clock -----------------------------------------------------------------------
    def expire_due(self, now: datetime) -> list[Record]:
        """Each approved subscription whose ``until`` has passed by `now`, put on the record as
        expired by the bus, at the instant it ended (not when this noticed): once, since the
        fold then holds it as expired. The router has stopped at that instant already; the
        record is what closes the ACL and what `subscriptions list` and the assessment read."""
        records = []
        for subscription in list(self.subscriptions.values()):
            if subscription.state == "approved" and not subscription.active_at(now):
                expired = rules.expire(subscription, subscription.expires_at or now)
                self.subscriptions[expired.id] = expired
                self.counts["expired"] += 1
                records.append(Record(self.names.bus(SUBSCRIPTIONS), rules.key(expired), rules.to_json(expired)))
        return records

    # -- a new act -----------------------------------------------------------------------
    def handle(self, author: str, value: bytes | None, at: datetime) -> list[Record]:
        """The records one act by `author` (the acts topic's principal) makes."""
        try:
            act = acts.parse(value)
        except acts.ActError as why:
            self.counts["refused"] += 1
            return self._objection_records(objection_rules.refused_event(
                None, by=author, at=at, wanted="unreadable act", reason=str(why), act=None), author)
        if act["act"] in self.seen:
            self.counts["already_folded"] += 1
            return []
        self.seen.add(act["act"])
        if act["kind"].startswith("subscription."):
            return self._subscription_act(author, act, at)
        if act["kind"] == "conflict.verdict":
            return self._verdict(author, act, at)
        event = objection_rules.judge_act(self.objections, author, act, at, self.real_entity_id)
        self.counts["refused" if event["step"] == "refused" else "applied"] += 1
        return self._objection_records(event, author)

    def _subscription_act(self, author: str, act: dict[str, Any], at: datetime) -> list[Record]:
        subscription_id = act.get("subscription")
        current = self.subscriptions.get(subscription_id) if isinstance(subscription_id, str) else None
        if act["kind"] == "subscription.request":
            folded = self._request(author, act, at, subscription_id, current)
        elif current is None:
            folded = None
            log.warning("%s %s for unknown subscription %r: refused", author, act["kind"], subscription_id)
        else:
            folded = rules.decide(current, DECISIONS[act["kind"]], author, at, act.get("reason"), act=act["act"])
        if folded is None:
            self.counts["refused"] += 1
            return []
        self.counts["refused" if folded.refusals != (current.refusals if current else ()) else "applied"] += 1
        self.subscriptions[folded.id] = folded
        return [Record(self.names.bus(SUBSCRIPTIONS), rules.key(folded), rules.to_json(folded))]

    def _request(self, author: str, act: dict[str, Any], at: datetime, subscription_id: Any,
                 current: Subscription | None) -> Subscription | None:
        if not isinstance(subscription_id, str) or not subscription_id.startswith("sub-"):
            log.warning("%s wrote a request without a subscription id (sub-…): refused", author)
            return None
        if current is not None:  # an id already taken: never overwritten by another's act
            return rules.refused(current, author, "requested", at, f"subscription {subscription_id} exists already; "
                                 "a new request takes a new id", act=act["act"])
        try:
            request = SubscriptionRequest.model_validate(act.get("request"))
        except ValidationError as why:
            log.warning("%s wrote an unreadable request %s: %s", author, subscription_id, why)
            return None
        return rules.judge(request, self.catalog, self.registry, at, subscription_id, author=author, act=act["act"])

    def _verdict(self, author: str, act: dict[str, Any], at: datetime) -> list[Record]:
        event = conflict_rules.judge_verdict(self.conflict_authorities, self.closed_conflicts, author, act, at)
        self.counts["refused" if event["kind"] == "refused" else "applied"] += 1
        if event["kind"] == "verdict":
            self.closed_conflicts.add(event["conflict_id"])
        encoded, key = json.dumps(event, ensure_ascii=False).encode(), str(event.get("conflict_id") or "").encode()
        records = [Record(self.names.bus(VERDICTS), key, encoded)]
        if author in self.catalog.departments:
            records.append(Record(self.names.conflicts_of(author), key, encoded))
        return records

    def _objection_records(self, event: dict[str, Any], author: str) -> list[Record]:
        """The step in governance's record and in the copies of the raiser and the owner."""
        self.objections = objection_rules.fold([event], self.objections)
        encoded, key = objection_rules.encode(event), str(event.get("objection") or event.get("act") or "").encode()
        records = [Record(self.names.bus(OBJECTIONS), key, encoded)]
        objection = self.objections.get(event.get("objection") or "")
        readers = [author] if event["step"] == "refused" or objection is None else [objection.raised_by, objection.owner]
        for reader in dict.fromkeys(readers):
            if reader not in self.catalog.departments:
                continue
            copy = dict(event)
            if objection is not None and reader != objection.owner:
                copy.pop("real_entity_id", None)  # the raiser knows only the pseudonym it was given
            records.append(Record(self.names.objections_of(reader), key, objection_rules.encode(copy)))
        return records


class AuthorityProcessor:
    """The fold on the broker: restores from its record, follows every acts topic."""

    name = "authority"

    def __init__(self, settings: Settings, catalog: Catalog, registry: SchemaRegistry) -> None:
        from govbus.consumers.corrections import real_entity_id

        self.settings = settings
        self.catalog = catalog
        self.names = TopicNames(settings.topic_prefix)
        self._new_fold = lambda: AuthorityFold(catalog, registry, self.names,
                                               lambda objection: real_entity_id(settings, objection))
        self.fold = self._new_fold()
        self.ready = threading.Event()
        self.failed = False

    def stats(self) -> dict[str, Any]:
        return {"subscriptions": len(self.fold.subscriptions), "objections": len(self.fold.objections),
                "conflicts": len(self.fold.conflict_authorities), "conflicts_closed": len(self.fold.closed_conflicts),
                **dict(self.fold.counts)}

    def run(self, stop: threading.Event) -> None:
        """Until `stop`: learn the record, then fold new acts batch by batch.

        A read or write the broker refuses for a moment (ACLs applied a moment ago and not yet
        in force, a broker away) starts the processor over, as a restart would: a new fold,
        learnt again from the record, and the acts not yet marked read folded again. Only
        failures for ``RUN_PATIENCE`` seconds in a row stop it (a dead fold must not look alive)."""
        progress = {"at": time.monotonic()}
        while not stop.is_set():
            try:
                self._run_once(stop, progress)
                return
            except KafkaError as error:
                if time.monotonic() - progress["at"] > RUN_PATIENCE:
                    log.exception("the authority processor failed for %.0f s", RUN_PATIENCE)
                    self.failed = True
                    self.ready.clear()
                    raise
                log.warning("the authority processor could not read or write (%s); starting over", error)
                self.ready.clear()
                self.fold = self._new_fold()
                stop.wait(1.0)

    def _run_once(self, stop: threading.Event, progress: dict[str, float]) -> None:
        record = self._record_reader()
        incoming = clients.consumer(self.settings, *[self.names.acts(p) for p in self.catalog.acting_principals()],
                                    self.names.bus(CONFLICTS), group_id=f"{self.names.prefix}govbus-authority")
        producer = clients.producer(self.settings)
        try:
            self._learn(record, until_end=True)
            self.ready.set()
            while not stop.is_set():
                self._learn(record)
                self._fold_batch(incoming, producer)
                progress["at"] = time.monotonic()
        except KafkaError:
            raise  # `run` says it, and starts over while it may
        except Exception:  # noqa: BLE001 - a dead fold must not look alive
            log.exception("the authority processor failed")
            self.failed = True
            self.ready.clear()
            raise
        finally:
            for client in (incoming, record, producer):
                client.close()

    def _record_reader(self) -> Any:
        reader = clients.consumer(self.settings)
        topics = [self.names.bus(name) for name in (SUBSCRIPTIONS, OBJECTIONS, CONFLICTS, VERDICTS)]
        reader.assign([TopicPartition(topic, partition) for topic in topics
                       for partition in sorted(reader.partitions_for_topic(topic) or [0])])
        reader.seek_to_beginning()
        return reader

    def _learn(self, reader: Any, until_end: bool = False) -> None:
        """Read what is new in the record (also what the operators wrote directly)."""
        ends = reader.end_offsets(list(reader.assignment())) if until_end else {}
        while True:
            for partition, messages in reader.poll(timeout_ms=200 if until_end else 0).items():
                for message in messages:
                    self._learn_one(partition.topic, message)
            if not until_end or all(reader.position(tp) >= end for tp, end in ends.items()):
                return

    def _learn_one(self, topic: str, message: Any) -> None:
        if topic == self.names.bus(SUBSCRIPTIONS):
            self.fold.learn_subscription(message.key, message.value)
        elif topic == self.names.bus(OBJECTIONS):
            self.fold.learn_objection(message.value)
        elif topic == self.names.bus(CONFLICTS):
            self.fold.learn_conflict(message.value)
        else:
            self.fold.learn_verdict(message.value)

    def _outputs(self, topic: str, message: Any) -> list[Record]:
        if topic == self.names.bus(CONFLICTS):
            return self.fold.route_conflict(message.key, message.value)
        return self.fold.handle(self.names.parse_acts(topic), message.value, datetime.now(timezone.utc))

    def _fold_batch(self, incoming: Any, producer: Any) -> None:
        """One poll's acts folded, and every subscription the clock has ended since the last
        batch expired (so within a poll's wait, 0.5 s, of its end).

        The ACLs follow the fold before its records are written: whoever sees a decision on
        `control.subscriptions` (the deciding command waits for it) finds the broker already
        enforcing it. A crash in between replays the uncommitted acts to the same fold, and
        reconciling again is idempotent."""
        outputs = [output for partition, messages in incoming.poll(timeout_ms=500).items()
                   for message in messages for output in self._outputs(partition.topic, message)]
        outputs += self.fold.expire_due(datetime.now(timezone.utc))
        if any(output.topic == self.names.bus(SUBSCRIPTIONS) for output in outputs):
            self._reconcile_acls()
        sent = [producer.send(output.topic, key=output.key, value=output.value) for output in outputs]
        for future in sent:  # every record written before the acts are marked read: none lost
            future.get(timeout=30)
        if incoming.assignment():
            incoming.commit()

    def _reconcile_acls(self) -> None:
        """The broker's ACLs made equal to the fold's; a refusal or a broker away is tried again
        a few times (reconciling is idempotent) before the processor gives up and fails."""
        for delay in (*ACL_RETRY_DELAYS, None):
            admin = clients.admin(self.settings)
            try:
                acls.reconcile(admin, self.catalog, self.names, self.fold.subscriptions.values())
                return
            except SecurityDisabledError:
                return
            except (GovbusError, KafkaError) as error:
                if delay is None:
                    raise
                log.warning("bringing the ACLs in line failed (%s); trying again in %.1f s", error, delay)
            finally:
                admin.close()
            time.sleep(delay)


def _steps(subscription: rules.Subscription) -> int:
    """How far a subscription's record has come: every transition and refusal appends one, so
    a later record of the same subscription never has fewer."""
    return len(subscription.history) + len(subscription.refusals)
