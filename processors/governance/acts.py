"""Acts: what a principal says to the bus, written to its own ``control.acts.<principal>``.

A department's subscription requests, approvals, refusals and revocations, its objections and
its answers to objections are acts. The broker lets only the principal write its acts topic
(``topics/acls.py``), exactly as only a department writes its ``ingest.<library>.<department>``
topics, so **the topic names the author**: a name carried in the message is never believed.
The authority processor (``processors/governance/authority.py``) folds every principal's acts into
``control.subscriptions`` and the objection topics, applying each act only if its author has
the right to it and otherwise recording it as refused, with the reason.

An act is JSON: ``{"format": 1, "act": "act-…", "kind": "<what>", "at": "<client time>", …}``;
its id lets the writer find its outcome and lets the authority processor recognise an act it
already folded (after a restart), so none is applied twice. ``at`` is only what the client
said: the authority stamps its own time on everything it records.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar

from govbus import clients
from govbus.errors import GovbusError
from govbus.settings import Settings
from govbus.topics.names import TopicNames

FORMAT = 1
KINDS = ("subscription.request", "subscription.approve", "subscription.refuse", "subscription.revoke",
         "objection.raise", "objection.resolve", "objection.reject", "conflict.verdict")
WAIT_SECONDS = 60.0
T = TypeVar("T")


class ActError(GovbusError, ValueError):
    """An act that cannot be read or was not folded in time; the message says why."""


def principal(settings: Settings) -> str:
    """Who this process is on the broker: the principal it logs in as."""
    return settings.sasl_username


def new_id() -> str:
    return f"act-{uuid.uuid4().hex[:16]}"


def build(kind: str, **payload: Any) -> dict[str, Any]:
    """An act of `kind` with a fresh id."""
    if kind not in KINDS:
        raise ActError(f"{kind!r} is not an act; one of {', '.join(KINDS)}")
    at = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"format": FORMAT, "act": new_id(), "kind": kind, "at": at, **payload}


def parse(value: bytes | None) -> dict[str, Any]:
    """An act from its bytes; ActError naming what is wrong (the fold records it as refused)."""
    try:
        act = json.loads(value or b"")
    except ValueError as error:
        raise ActError(f"not JSON: {error}") from None
    if not isinstance(act, dict):
        raise ActError("an act is a JSON object")
    if not isinstance(act.get("act"), str) or not act["act"]:
        raise ActError("an act needs its id (\"act\")")
    if act.get("kind") not in KINDS:
        raise ActError(f"kind {act.get('kind')!r} is not one of {', '.join(KINDS)}")
    return act


def send(settings: Settings, act: Mapping[str, Any], as_principal: str | None = None) -> str:
    """Write `act` to the acts topic of the logged-in principal (or of `as_principal`, which the
    broker allows only to that principal itself or the admin super user); its id."""
    topic = TopicNames(settings.topic_prefix).acts(as_principal or principal(settings))
    producer = clients.producer(settings)
    try:
        producer.send(topic, key=str(act["act"]).encode(), value=json.dumps(act, ensure_ascii=False).encode()
                      ).get(timeout=30)
    except Exception as error:  # noqa: BLE001 - the broker's refusal, said plainly
        raise ActError(f"{principal(settings)} could not write {topic}: {error}") from None
    finally:
        producer.close()
    return str(act["act"])


def wait_for(find: Callable[[], T | None], what: str, timeout: float = WAIT_SECONDS) -> T:
    """Poll `find` until it gives the outcome of an act; ActError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = find()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise ActError(f"{what} was written but not folded within {timeout:.0f} s: is the authority processor "
                           "running (`govbus processors run authority`, as govbus-authority)?")
        time.sleep(0.3)
