"""The owner's answer to an objection: the corrected value, through the normal publishing path.

1. The real entity. A subscriber may know the entity only by its delivery pseudonym
   ("p-…": the key field is masked for its purpose). Every delivery left a sharing record in
   ``audit.deliveries`` with the subscription, the REAL entity id and the event id; the record
   of the raiser's department under the objection's subscription (and event id, when given)
   whose real id yields that pseudonym is the entity (`real_entity_id`). The authority
   processor does this when it records the objection (it reads ``audit.*`` and has the bus's
   key secret) and gives the real id in the owner's copy only.
2. The order. A correction is published with source system ``govbus-corrections``, which the
   gate orders apart from the department's own system (``processors/gate/decide.py ordering``),
   numbered by the clock in microseconds (`correction_sequence`). So a correction never takes
   a sequence number the owner's system will send next: the correction applies, and so does
   the owner's next real change; two corrections of one entity apply in the order made.
3. `Publisher(settings, owner, library).publish(...)` as the logged-in owner: validated like
   any other change, so a wrong correction is refused before it is sent. Nothing but the
   owner's own ingest topic is needed: no golden record is read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from govbus.consumers.objections import PSEUDONYM_PREFIX, Objection, ObjectionError
from govbus.processors.governance import audit
from govbus.processors.gate.decide import CORRECTIONS_SYSTEM
from govbus.reading import read_topic
from govbus.producers.publisher import Publisher
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


def correction_sequence() -> int:
    """The sequence of a correction, in the corrections' own order: microseconds of the clock."""
    return time.time_ns() // 1000


def publish_correction(settings: Settings, objection: Objection, correction: Any) -> str:
    """Publish the corrected value as the owner (the logged-in principal); the event's id."""
    registry = default_registry()
    real_id = objection.real_entity_id or objection.entity_id
    if real_id.startswith(PSEUDONYM_PREFIX):
        raise ObjectionError(f"objection {objection.id} names the entity by a pseudonym and this copy has no real "
                             "id: read it as its owner (the authority processor resolves it for the owner only)")
    record = {registry.entity_key(objection.library): real_id, objection.field: correction,
              "sequence": correction_sequence(), "op": "upsert"}
    with Publisher(settings, objection.owner, objection.library, source_system=CORRECTIONS_SYSTEM) as publisher:
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
