"""The owner's answer to an objection: the corrected value, through the normal publishing path.

Three steps, each with a clear error when it cannot be done:

1. The real entity. A subscriber may know the entity only by its delivery pseudonym
   ("p-…": the key field is masked for its purpose). Every delivery left a sharing record in
   ``audit.deliveries`` with the subscription, the REAL entity id and the event id; the record
   of the raiser's department under the objection's subscription (and event id, when given)
   whose real id yields that pseudonym is the entity. Recomputing the pseudonym needs the
   bus's key secret (GOVBUS_KEY_SECRET), as the router has it.
2. The next sequence: the owner's last applied sequence for the entity plus one, read from
   the golden record in ``state.<library>`` (``sources[owner].sequence``; 0 when the owner
   never published it). Only the key's partition is read.
3. `Publisher(settings, owner, library).publish({key: id, field: value, "sequence": next})`:
   validated like any other change, so a wrong correction is refused before it is sent.

Reading ``audit.*`` and ``state.*`` needs a principal allowed to (the platform's operators);
the broker's ACLs do not grant departments those topics.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from kafka.partitioner.default import murmur2

from govbus import clients
from govbus.consumers.objections import PSEUDONYM_PREFIX, Objection, ObjectionError
from govbus.processors import audit
from govbus.reading import read_topic
from govbus.producers.publisher import Publisher
from govbus.schemas.framing import entity_key
from govbus.schemas.registry import FieldPolicy, default_registry
from govbus.settings import Settings
from govbus.topics.names import AUDIT, TopicNames


def pseudonym(secret: bytes, subscription_id: str, entity_id: str) -> str:
    """The id a subscription sees for `entity_id` when its key is hidden (as `Projector.pseudonym`)."""
    keyed = hmac.new(secret, f"{subscription_id}\x00{entity_id}".encode("utf-8"), hashlib.sha256)
    return PSEUDONYM_PREFIX + keyed.hexdigest()[:32]


def real_entity_id(settings: Settings, objection: Objection) -> str:
    """The entity id the owner knows; the objection's own id unless it is a pseudonym."""
    if not objection.entity_id.startswith(PSEUDONYM_PREFIX):
        return objection.entity_id
    secret = settings.key_secret.encode()
    sharing_records = (message.value for message in read_topic(settings, TopicNames(settings.topic_prefix).bus(AUDIT)))
    for record in audit.rows(sharing_records):
        if (record.get("department") == objection.raised_by and record.get("library") == objection.library
                and record.get("subscription") == objection.subscription
                and (objection.event_id is None or record.get("event_id") == objection.event_id)
                and pseudonym(secret, objection.subscription or "", record["entity_id"]) == objection.entity_id):
            return str(record["entity_id"])
    given = f" and event {objection.event_id}" if objection.event_id else ""
    raise ObjectionError(f"no sharing record shows {objection.raised_by} receiving {objection.entity_id} under "
                         f"subscription {objection.subscription}{given}: check the subscription and event id, "
                         "and that GOVBUS_KEY_SECRET is the router's")


def next_sequence(settings: Settings, library: str, department: str, entity_id: str) -> int:
    """The sequence `department`'s next change of the entity must carry."""
    secret = settings.key_secret.encode()
    key = entity_key(secret, library, entity_id)
    topic = TopicNames(settings.topic_prefix).state(library)
    consumer = clients.consumer(settings)
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
    finally:
        consumer.close()
    if not partitions:
        raise ObjectionError(f"{topic} does not exist or cannot be read by {settings.sasl_username}; the golden "
                             "records are needed to number the correction")
    partition = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]  # where the gate keeps it
    values = [message.value for message in read_topic(settings, topic, [partition]) if message.key == key]
    if not values or values[-1] is None:
        raise ObjectionError(f"the bus has no {library} record {entity_id}: there is nothing to correct")
    golden = json.loads(values[-1])
    if golden.get("deleted"):
        raise ObjectionError(f"{library} record {entity_id} was deleted: there is nothing to correct")
    return int(golden.get("sources", {}).get(department, {}).get("sequence", 0)) + 1


def publish_correction(settings: Settings, objection: Objection, correction: Any) -> str:
    """Publish the corrected value as the owner; the published event's id."""
    registry = default_registry()
    real_id = real_entity_id(settings, objection)
    sequence = next_sequence(settings, objection.library, objection.owner, real_id)
    record = {registry.entity_key(objection.library): real_id, objection.field: correction, "sequence": sequence,
              "op": "upsert"}
    with Publisher(settings, objection.owner, objection.library, source_system="govbus-objections") as publisher:
        result = publisher.publish(record)
        if not result.accepted:
            problems = "; ".join(f"{v.field}: {v.message}" for v in result.violations)
            raise ObjectionError(f"the correction of {objection.library}.{objection.field} was refused and not "
                                 f"sent: {problems}")
        report = publisher.flush(timeout=30)
    if report.failures:
        raise ObjectionError(f"the correction could not be sent to the broker: {report.failures[0][1]}")
    return str(result.event_id)


def parse_correction(policy: FieldPolicy, text: str) -> Any:
    """A command-line value for a field: text for text fields, JSON for the others (numbers,
    true/false, lists, null); dates and times as ISO text, as in published records."""
    kind = policy.avro_type.get("type") if isinstance(policy.avro_type, dict) else policy.avro_type
    if kind in ("string", "enum") or (isinstance(policy.avro_type, dict) and "logicalType" in policy.avro_type):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text
