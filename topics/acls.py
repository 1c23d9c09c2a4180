"""Broker ACLs derived from the catalog and the subscriptions, never written by hand.

The rules (the broker denies everything else):

- a department writes only its own ``ingest.<library>.<itself>`` topics and
  ``control.objections``; it reads ``deliver.<itself>.<library>`` only while it holds an
  approved subscription to that library, with consumer groups under its own prefix
  (``<itself>.``), and reads ``control.objections`` to follow its objections;
- the processors' principal reads ``ingest.*`` and reads and writes ``shared.*``, ``state.*``,
  ``dlq.*``, ``deliver.*``, ``audit.*``, ``control.*`` and ``metrics.*`` (it also makes the
  delivery topics on approval), in transactions whose ids are under its group prefix;
- governance staff read ``audit.*`` and ``metrics.*``;
- the admin principal is a super user of the broker and needs no ACL.

``reconcile`` shows and applies the difference between these and the broker's ACLs for the
bus's principals, so approving or revoking a subscription (which calls it) changes what a
department can read without an operator's step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern,
                         ResourcePatternFilter, ResourceType)

from govbus.security.credentials import GOVERNANCE, PROCESSORS
from govbus.topics.catalog import Catalog
from govbus.topics.names import OBJECTIONS, TopicNames

LITERAL, PREFIXED = ACLResourcePatternType.LITERAL, ACLResourcePatternType.PREFIXED


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
    grants.update(_topic(department, ("WRITE", "READ", "DESCRIBE"), names.bus(OBJECTIONS)))
    for library in subscribed_libraries:
        grants.update(_topic(department, ("READ", "DESCRIBE"), names.deliver(department, library)))
    grants.add(Grant(department, "READ", "GROUP", f"{names.prefix}{department}.", "PREFIXED"))
    return grants


def processor_grants(names: TopicNames) -> set[Grant]:
    grants = set(_topic(PROCESSORS, ("READ", "DESCRIBE"), f"{names.prefix}ingest.", "PREFIXED"))
    for kind in ("shared.", "state.", "dlq.", "deliver.", "audit.", "control.", "metrics."):
        grants.update(_topic(PROCESSORS, ("READ", "WRITE", "DESCRIBE", "DESCRIBE_CONFIGS"), f"{names.prefix}{kind}", "PREFIXED"))
    grants.update(_topic(PROCESSORS, ("CREATE",), f"{names.prefix}deliver.", "PREFIXED"))
    grants.add(Grant(PROCESSORS, "READ", "GROUP", f"{names.prefix}govbus-", "PREFIXED"))
    # The batched gate and router write each batch in a Kafka transaction (``processors/batches.py``).
    grants.update(Grant(PROCESSORS, operation, "TRANSACTIONAL_ID", f"{names.prefix}govbus-", "PREFIXED")
                  for operation in ("WRITE", "DESCRIBE"))
    grants.add(Grant(PROCESSORS, "DESCRIBE", "CLUSTER", "kafka-cluster"))
    return grants


def governance_grants(names: TopicNames) -> set[Grant]:
    grants: set[Grant] = set()
    for kind in ("audit.", "metrics."):
        grants.update(_topic(GOVERNANCE, ("READ", "DESCRIBE"), f"{names.prefix}{kind}", "PREFIXED"))
    grants.add(Grant(GOVERNANCE, "READ", "GROUP", f"{names.prefix}{GOVERNANCE}.", "PREFIXED"))
    return grants


def desired(catalog: Catalog, names: TopicNames, subscriptions: Iterable[object]) -> set[Grant]:
    """Every ACL the catalog and the approved subscriptions imply."""
    active: dict[str, set[str]] = {department: set() for department in catalog.departments}
    for subscription in subscriptions:
        if getattr(subscription, "state", None) == "approved" and subscription.department in active:
            active[subscription.department].add(subscription.library)
    grants = processor_grants(names) | governance_grants(names)
    for department, libraries in active.items():
        grants |= department_grants(catalog, names, department, libraries)
    return grants


def current(admin: KafkaAdminClient, principals: Iterable[str], names: TopicNames) -> set[Grant]:
    """The broker's ACLs for these principals on this bus's resources (its prefix)."""
    wanted = {f"User:{principal}" for principal in principals}
    found = admin.describe_acls(ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                                          ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY)))
    acls = found[0] if isinstance(found, tuple) else found
    grants = set()
    for acl in acls:
        pattern = acl.resource_pattern
        if acl.principal not in wanted or acl.permission_type != ACLPermissionType.ALLOW:
            continue
        if pattern.resource_type != ResourceType.CLUSTER and not pattern.resource_name.startswith(names.prefix):
            continue
        grants.add(Grant(acl.principal.removeprefix("User:"), acl.operation.name, pattern.resource_type.name,
                         pattern.resource_name, pattern.pattern_type.name))
    return grants


def reconcile(admin: KafkaAdminClient, catalog: Catalog, names: TopicNames, subscriptions: Iterable[object],
              *, dry_run: bool = False) -> tuple[list[Grant], list[Grant]]:
    """(added, removed): make the broker's ACLs for the bus's principals equal the desired ones."""
    wanted = desired(catalog, names, subscriptions)
    principals = {grant.principal for grant in wanted}
    have = current(admin, principals, names)
    add, remove = sorted(wanted - have), sorted(have - wanted)
    if not dry_run:
        if add:
            admin.create_acls([grant.to_acl() for grant in add])
        if remove:
            admin.delete_acls([_filter(grant) for grant in remove])
    return add, remove


def _filter(grant: Grant) -> ACLFilter:
    return ACLFilter(f"User:{grant.principal}", "*", ACLOperation[grant.operation], ACLPermissionType.ALLOW,
                     ResourcePatternFilter(ResourceType[grant.resource_type], grant.name, ACLResourcePatternType[grant.pattern]))
