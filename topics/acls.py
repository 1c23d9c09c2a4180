"""Broker ACLs derived from the catalog and the subscriptions, never written by hand.

The rules (the broker denies everything else):

- a department writes only its own ``ingest.<library>.<itself>`` topics and its own
  ``control.acts.<itself>`` (its subscription requests, decisions, objections and answers: the
  topic names the author, as an ingest topic names its source); it reads
  ``control.objections.<itself>`` (the objections it raised or must answer, nobody else's),
  ``control.conflicts.<itself>`` (the conflicts about its fields, to verify),
  ``control.rejections.<itself>`` (what the gate refused of its events, and why),
  ``control.subscriptions`` (who asked for what, decided by whom: no personal data), and
  ``deliver.<itself>.<library>`` only while it holds an approved subscription to that library,
  with consumer groups under its own prefix (``<itself>.``);
- the processors' principal reads ``ingest.*`` and reads and writes ``shared.*``, ``state.*``,
  ``dlq.*``, ``deliver.*``, ``audit.*`` and ``metrics.*`` (it also makes the delivery topics on
  approval), writes ``control.conflicts``, ``control.alerts`` and ``control.rejections.*`` (the
  gate's copy of each rejection for its source) and reads
  ``control.subscriptions``, in transactions whose ids are under its group prefix; it cannot
  write any principal's acts nor ``control.subscriptions``;
- the authority processor (``govbus-authority``) reads every ``control.acts.*``, ``audit.*``
  and ``control.conflicts``, is the only writer of ``control.subscriptions``,
  ``control.objections*``, ``control.conflicts.<department>`` and ``control.verdicts`` besides
  the admin super user, and may alter the ACLs (it grants and withdraws delivery read
  access on approval and revocation);
- governance staff write ``control.acts.governance`` (policy-level refusals and revocations)
  and ``control.audit_anchors`` (the sharing-record chain heads it verified and published), and read everything the assessment and the audit count: ``audit.*``, ``metrics.*``,
  ``control.*``, ``ingest.*``, ``shared.*``, ``dlq.*`` and ``deliver.*`` (never ``state.*``);
- the admin principal is a super user of the broker and needs no ACL: provisioning only.

``reconcile`` shows and applies the difference between these and the broker's ACLs for the
bus's principals, so approving or revoking a subscription (which calls it) changes what a
department can read without an operator's step.

One broker may carry several buses, each under its own topic prefix (a deployment's, the
demo's ``demo.``, every test's). Reconciling one prefix touches only the ACLs **of that bus**:
those whose resource this bus's names could produce or reach —

- a topic under ``<prefix>ingest.``, ``<prefix>shared.``, ``<prefix>state.``, ``<prefix>dlq.``,
  ``<prefix>deliver.``, ``<prefix>audit.``, ``<prefix>control.`` or ``<prefix>metrics.``;
- a consumer group under ``<prefix>govbus-``, ``<prefix>governance.`` or
  ``<prefix><department>.`` for a department of the catalog;
- a transactional id under ``<prefix>govbus-``;
- the cluster, and any ACL whose pattern matches some of the above (the wildcard ``*``, or a
  PREFIXED pattern such as ``<prefix>`` that covers a whole root): every bus wants those gone
  alike, so whichever bus reconciles first may remove them.

So the empty prefix owns ``ingest.…``, ``tax.…`` and so on, but not ``demo.ingest.…``, and
prefix ``a.`` does not own prefix ``a.eu.``'s ACLs. A prefix must not itself begin with one of
those roots (e.g. a bus prefixed ``ingest.x.`` beside an unprefixed one), or the two would
overlap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from kafka import KafkaAdminClient
from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern,
                         ResourcePatternFilter, ResourceType)

from govbus.errors import GovbusError
from govbus.security.credentials import AUTHORITY, GOVERNANCE, PROCESSORS
from govbus.topics.catalog import Catalog
from govbus.topics.names import (ACTS, ALERTS, AUDIT_ANCHORS, CONFLICTS, OBJECTIONS, REJECTIONS, SUBSCRIPTIONS, VERDICTS,
                                 TopicNames)

if TYPE_CHECKING:
    from govbus.processors.governance.subscriptions import Subscription

LITERAL, PREFIXED = ACLResourcePatternType.LITERAL, ACLResourcePatternType.PREFIXED
TOPIC_ROOTS = ("ingest.", "shared.", "state.", "dlq.", "deliver.", "audit.", "control.", "metrics.")
PROCESSOR_ROOT = "govbus-"  # the processors' consumer groups and transactional ids


@dataclass(frozen=True, order=True)
class Grant:
    """One ACL: ``principal`` may ``operation`` on ``resource`` (a topic, group or the cluster)."""

    principal: str
    operation: str
    resource_type: str
    name: str
    pattern: str = "LITERAL"

    def describe(self) -> str:
        star = "*" if self.pattern == "PREFIXED" else ""
        return f"User:{self.principal} {self.operation} {self.resource_type.lower()} {self.name}{star}"

    def to_acl(self) -> ACL:
        return ACL(f"User:{self.principal}", "*", ACLOperation[self.operation], ACLPermissionType.ALLOW,
                   ResourcePattern(ResourceType[self.resource_type], self.name, ACLResourcePatternType[self.pattern]))


def _topic(principal: str, operations: Iterable[str], name: str, pattern: str = "LITERAL") -> list[Grant]:
    return [Grant(principal, operation, "TOPIC", name, pattern) for operation in operations]


def department_grants(catalog: Catalog, names: TopicNames, department: str,
                      subscribed_libraries: Iterable[str]) -> set[Grant]:
    grants: set[Grant] = set()
    for library in catalog.libraries.values():
        if department in library.sources:
            grants.update(_topic(department, ("WRITE", "DESCRIBE"), names.ingest(library.library, department)))
    grants.update(_topic(department, ("WRITE", "DESCRIBE"), names.acts(department)))
    grants.update(_topic(department, ("READ", "DESCRIBE"), names.objections_of(department)))
    grants.update(_topic(department, ("READ", "DESCRIBE"), names.conflicts_of(department)))
    grants.update(_topic(department, ("READ", "DESCRIBE"), names.rejections_of(department)))
    grants.update(_topic(department, ("READ", "DESCRIBE"), names.bus(SUBSCRIPTIONS)))
    for library in subscribed_libraries:
        grants.update(_topic(department, ("READ", "DESCRIBE"), names.deliver(department, library)))
    grants.add(Grant(department, "READ", "GROUP", f"{names.prefix}{department}.", "PREFIXED"))
    return grants


def processor_grants(names: TopicNames) -> set[Grant]:
    grants = set(_topic(PROCESSORS, ("READ", "DESCRIBE"), f"{names.prefix}ingest.", "PREFIXED"))
    for kind in (root for root in TOPIC_ROOTS[1:] if root != "control."):
        grants.update(_topic(PROCESSORS, ("READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS"), f"{names.prefix}{kind}", "PREFIXED"))
    for written in (CONFLICTS, ALERTS):
        grants.update(_topic(PROCESSORS, ("READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS"), names.bus(written)))
    grants.update(_topic(PROCESSORS, ("WRITE", "DESCRIBE", "DESCRIBE_CONFIGS"), f"{names.bus(REJECTIONS)}.", "PREFIXED"))
    grants.update(_topic(PROCESSORS, ("READ", "DESCRIBE", "DESCRIBE_CONFIGS"), names.bus(SUBSCRIPTIONS)))
    grants.update(_topic(PROCESSORS, ("CREATE",), f"{names.prefix}deliver.", "PREFIXED"))
    grants.add(Grant(PROCESSORS, "READ", "GROUP", f"{names.prefix}{PROCESSOR_ROOT}", "PREFIXED"))
    # The batched gate and router write each batch in a Kafka transaction (``processors/runtime/batches.py``).
    grants.update(Grant(PROCESSORS, operation, "TRANSACTIONAL_ID", f"{names.prefix}{PROCESSOR_ROOT}", "PREFIXED")
                  for operation in ("WRITE", "DESCRIBE"))
    grants.add(Grant(PROCESSORS, "DESCRIBE", "CLUSTER", "kafka-cluster"))
    return grants


def authority_grants(names: TopicNames) -> set[Grant]:
    """The authority processor: reads every principal's acts, writes the folded record."""
    grants = set(_topic(AUTHORITY, ("READ", "DESCRIBE"), f"{names.prefix}{ACTS}.", "PREFIXED"))
    grants.update(_topic(AUTHORITY, ("READ", "DESCRIBE"), f"{names.prefix}audit.", "PREFIXED"))
    grants.update(_topic(AUTHORITY, ("READ", "WRITE", "DESCRIBE"), names.bus(SUBSCRIPTIONS)))
    grants.update(_topic(AUTHORITY, ("READ", "WRITE", "DESCRIBE"), names.bus(OBJECTIONS), "PREFIXED"))
    grants.update(_topic(AUTHORITY, ("READ", "DESCRIBE"), names.bus(CONFLICTS)))
    grants.update(_topic(AUTHORITY, ("READ", "WRITE", "DESCRIBE"), f"{names.bus(CONFLICTS)}.", "PREFIXED"))
    grants.update(_topic(AUTHORITY, ("READ", "WRITE", "DESCRIBE"), names.bus(VERDICTS)))
    grants.add(Grant(AUTHORITY, "READ", "GROUP", f"{names.prefix}{PROCESSOR_ROOT}authority"))
    grants.update(Grant(AUTHORITY, operation, "CLUSTER", "kafka-cluster") for operation in ("DESCRIBE", "ALTER"))
    return grants


def governance_grants(names: TopicNames) -> set[Grant]:
    """Governance reads what the assessment and the audit count, never the golden records."""
    grants: set[Grant] = set()
    for kind in ("audit.", "metrics.", "control.", "ingest.", "shared.", "dlq.", "deliver."):
        grants.update(_topic(GOVERNANCE, ("READ", "DESCRIBE"), f"{names.prefix}{kind}", "PREFIXED"))
    grants.update(_topic(GOVERNANCE, ("WRITE",), names.acts(GOVERNANCE)))
    grants.update(_topic(GOVERNANCE, ("WRITE",), names.bus(AUDIT_ANCHORS)))  # the published chain heads
    grants.add(Grant(GOVERNANCE, "READ", "GROUP", f"{names.prefix}{GOVERNANCE}.", "PREFIXED"))
    return grants


def desired(catalog: Catalog, names: TopicNames, subscriptions: Iterable[Subscription],
            now: datetime | None = None) -> set[Grant]:
    """Every ACL the catalog and the subscriptions active at `now` (the clock) imply: one
    past its ``until`` opens nothing, even before its expiry is on the record."""
    moment = now or datetime.now(timezone.utc)
    active: dict[str, set[str]] = {department: set() for department in catalog.departments}
    for subscription in subscriptions:
        if subscription.active_at(moment) and subscription.department in active:
            active[subscription.department].add(subscription.library)
    grants = processor_grants(names) | authority_grants(names) | governance_grants(names)
    for department, libraries in active.items():
        grants |= department_grants(catalog, names, department, libraries)
    return grants


def roots(catalog: Catalog, names: TopicNames) -> dict[str, tuple[str, ...]]:
    """Per resource type, the name prefixes under which every resource of this bus lies."""
    prefix = names.prefix
    groups = (PROCESSOR_ROOT, f"{GOVERNANCE}.", *(f"{department}." for department in catalog.departments))
    return {"TOPIC": tuple(prefix + root for root in TOPIC_ROOTS),
            "GROUP": tuple(prefix + root for root in groups),
            "TRANSACTIONAL_ID": (prefix + PROCESSOR_ROOT,)}


def owned(resource_type: str, name: str, pattern: str, bus_roots: dict[str, tuple[str, ...]]) -> bool:
    """Whether an ACL on this resource is this bus's to reconcile (the rule in the module's text)."""
    if resource_type == "CLUSTER" or name == "*":
        return True
    mine = bus_roots.get(resource_type, ())
    if name.startswith(mine):
        return True
    return pattern == "PREFIXED" and any(root.startswith(name) for root in mine)


def current(admin: KafkaAdminClient, principals: Iterable[str], names: TopicNames, catalog: Catalog) -> set[Grant]:
    """The broker's ACLs for these principals on this bus's resources (``owned``), none of another prefix's."""
    wanted = {f"User:{principal}" for principal in principals}
    bus_roots = roots(catalog, names)
    found = admin.describe_acls(ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                                          ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY)))
    acls = found[0] if isinstance(found, tuple) else found
    grants = set()
    for acl in acls:
        pattern = acl.resource_pattern
        if acl.principal not in wanted or acl.permission_type != ACLPermissionType.ALLOW:
            continue
        if not owned(pattern.resource_type.name, pattern.resource_name, pattern.pattern_type.name, bus_roots):
            continue
        grants.add(Grant(acl.principal.removeprefix("User:"), acl.operation.name, pattern.resource_type.name,
                         pattern.resource_name, pattern.pattern_type.name))
    return grants


def reconcile(admin: KafkaAdminClient, catalog: Catalog, names: TopicNames, subscriptions: Iterable[Subscription],
              *, dry_run: bool = False, now: datetime | None = None) -> tuple[list[Grant], list[Grant]]:
    """(added, removed): make the broker's ACLs for the bus's principals on this bus's resources
    (``owned``: this prefix's, never another prefix's) equal the desired ones."""
    wanted = desired(catalog, names, subscriptions, now)
    principals = {grant.principal for grant in wanted}
    have = current(admin, principals, names, catalog)
    add, remove = sorted(wanted - have), sorted(have - wanted)
    if not dry_run:
        if add:
            created = admin.create_acls([grant.to_acl() for grant in add])
            if created.get("failed"):  # kafka-python reports a refused ACL here instead of raising
                raise GovbusError(f"the broker refused {len(created['failed'])} of {len(add)} ACL(s): "
                                  f"{created['failed'][0]}")
        if remove:
            deleted = admin.delete_acls([_filter(grant) for grant in remove])
            failed = [error for _, _, error in deleted if error is not None and getattr(error, "errno", 0)]
            if failed:
                raise GovbusError(f"the broker refused to delete {len(failed)} ACL filter(s): {failed[0]}")
    return add, remove


def _filter(grant: Grant) -> ACLFilter:
    return ACLFilter(f"User:{grant.principal}", "*", ACLOperation[grant.operation], ACLPermissionType.ALLOW,
                     ResourcePatternFilter(ResourceType[grant.resource_type], grant.name, ACLResourcePatternType[grant.pattern]))
