"""ACL reconciliation touches only its own bus's ACLs: never another prefix's (no broker)."""

from __future__ import annotations

from govbus.settings import PROJECT_ROOT
from govbus.topics import acls
from govbus.topics.catalog import load_catalog
from govbus.topics.names import TopicNames


class FakeAdmin:
    """Holds ACLs as a broker would and records what reconcile asks of it."""

    def __init__(self, grants: set[acls.Grant]) -> None:
        self.grants = set(grants)
        self.deleted: list = []

    def describe_acls(self, _filter):
        return [grant.to_acl() for grant in self.grants], None

    def create_acls(self, created):
        self.grants |= {acls.Grant(acl.principal.removeprefix("User:"), acl.operation.name,
                                   acl.resource_pattern.resource_type.name, acl.resource_pattern.resource_name,
                                   acl.resource_pattern.pattern_type.name) for acl in created}
        return {"succeeded": list(created), "failed": []}  # as kafka-python answers

    def delete_acls(self, filters):
        self.deleted += filters
        gone = {(f.principal.removeprefix("User:"), f.operation.name, f.resource_pattern.resource_type.name,
                 f.resource_pattern.resource_name, f.resource_pattern.pattern_type.name) for f in filters}
        self.grants = {grant for grant in self.grants
                       if (grant.principal, grant.operation, grant.resource_type, grant.name, grant.pattern) not in gone}
        return [(each, [], None) for each in filters]  # (filter, matched ACLs, error) as kafka-python answers


CATALOG = load_catalog(PROJECT_ROOT / "topics")


def _bus(prefix: str) -> set[acls.Grant]:
    return acls.desired(CATALOG, TopicNames(prefix), [])


def test_every_desired_grant_is_owned_by_its_own_prefix_only() -> None:
    for prefix in ("", "demo.", "demo.eu.", "t0123456789."):
        mine = acls.roots(CATALOG, TopicNames(prefix))
        assert all(acls.owned(g.resource_type, g.name, g.pattern, mine) for g in _bus(prefix)), prefix
    unprefixed = acls.roots(CATALOG, TopicNames(""))
    others = (_bus("demo.") | _bus("t0123456789.")) - _bus("")
    assert not [g for g in others if acls.owned(g.resource_type, g.name, g.pattern, unprefixed)]


def test_reconciling_the_empty_prefix_keeps_every_other_prefixs_acls() -> None:
    demo, test = _bus("demo."), _bus("t0123456789.")
    admin = FakeAdmin(demo | test)
    added, removed = acls.reconcile(admin, CATALOG, TopicNames(""), [])
    assert removed == [], [grant.describe() for grant in removed]
    assert demo | test <= admin.grants
    assert set(added) == _bus("") - demo - test  # the cluster grant is shared by all


def test_reconciling_a_prefix_keeps_a_nested_prefixs_acls() -> None:
    outer, nested = _bus("demo."), _bus("demo.eu.")
    admin = FakeAdmin(outer | nested)
    _, removed = acls.reconcile(admin, CATALOG, TopicNames("demo."), [])
    assert removed == [], [grant.describe() for grant in removed]
    assert nested <= admin.grants


def test_a_prefix_still_removes_what_it_does_not_want_on_its_own_resources() -> None:
    names = TopicNames("demo.")
    stray = {acls.Grant("tax", "READ", "TOPIC", names.deliver("tax", "population")),           # a revoked subscription
             acls.Grant("tax", "READ", "TOPIC", "demo.", "PREFIXED"),                          # the whole bus
             acls.Grant("tax", "ALTER", "CLUSTER", "kafka-cluster"),                           # the cluster
             acls.Grant("tax", "READ", "TOPIC", "*")}                                         # every topic
    admin = FakeAdmin(_bus("demo.") | stray)
    _, removed = acls.reconcile(admin, CATALOG, names, [])
    assert set(removed) == stray


def test_an_acl_the_broker_refuses_is_an_error_not_a_silent_gap() -> None:
    """kafka-python answers a refused ACL in its result instead of raising: a reconciliation
    that ignored it left an approved department without read access, with nothing said."""
    import pytest
    from kafka.errors import ClusterAuthorizationFailedError

    from govbus.errors import GovbusError

    class RefusingAdmin(FakeAdmin):
        def create_acls(self, created):
            return {"succeeded": [], "failed": [ClusterAuthorizationFailedError for _ in created]}

    with pytest.raises(GovbusError, match="refused"):
        acls.reconcile(RefusingAdmin(set()), CATALOG, TopicNames("demo."), [])
