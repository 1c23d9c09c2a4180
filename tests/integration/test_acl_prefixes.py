"""On a real broker, reconciling one prefix's ACLs leaves every other prefix's alone."""

from __future__ import annotations

from govbus import clients
from govbus.topics import acls
from govbus.topics.names import TopicNames


def test_reconciling_one_prefix_never_removes_another_prefixs_acls(bus) -> None:
    assert bus.secured
    nested = TopicNames(f"{bus.names.prefix}eu.")  # a staging bus inside this one's namespace
    admin = clients.admin(bus.settings)
    try:
        acls.reconcile(admin, bus.catalog, nested, [])
        acls.reconcile(admin, bus.catalog, bus.names, [])
        principals = {grant.principal for grant in acls.desired(bus.catalog, nested, [])}
        assert acls.current(admin, principals, nested, bus.catalog) == acls.desired(bus.catalog, nested, [])

        _, removed = acls.reconcile(admin, bus.catalog, bus.names, [])
        assert removed == [], "a second pass finds its own ACLs in sync"
        # The unprefixed bus (a deployment without GOVBUS_TOPIC_PREFIX) must not claim either of them.
        _, removed = acls.reconcile(admin, bus.catalog, TopicNames(""), [], dry_run=True)
        theirs = [grant.describe() for grant in removed if grant.name.startswith(bus.names.prefix)]
        assert theirs == [], theirs
        assert acls.current(admin, principals, nested, bus.catalog) == acls.desired(bus.catalog, nested, [])
    finally:
        admin.delete_acls([acls._filter(grant) for grant in acls.desired(bus.catalog, nested, [])
                           if grant.resource_type != "CLUSTER"])
        admin.close()
