"""Every topic name of the bus, made in one place.

A prefix namespaces a whole bus: tests give each test its own, so that tests never see each
other's data; a deployment may use one per environment. The names carry meaning the broker
enforces: ``ingest.<library>.<department>`` names the only department allowed to write it,
``deliver.<department>.<library>`` the only department allowed to read it,
``control.acts.<principal>`` the only principal allowed to write it (what that principal says
to the bus: requests, decisions, objections and answers), ``control.objections.<department>``
the only department allowed to read it (the objections it raised or must answer), and
``control.rejections.<department>`` likewise (what the gate refused of its events).
"""

from __future__ import annotations

from dataclasses import dataclass

SUBSCRIPTIONS = "control.subscriptions"
OBJECTIONS = "control.objections"
CONFLICTS = "control.conflicts"
ALERTS = "control.alerts"
AUDIT = "audit.deliveries"
FRESHNESS = "metrics.freshness"
ACTS = "control.acts"
VERDICTS = "control.verdicts"
AUDIT_ANCHORS = "control.audit_anchors"  # governance's published chain heads (only it writes)
REJECTIONS = "control.rejections"  # per source department: what the gate refused of it, and why


@dataclass(frozen=True)
class TopicNames:
    prefix: str = ""

    def ingest(self, library: str, department: str) -> str:
        return f"{self.prefix}ingest.{library}.{department}"

    def shared(self, library: str) -> str:
        return f"{self.prefix}shared.{library}"

    def state(self, library: str) -> str:
        return f"{self.prefix}state.{library}"

    def dlq(self, library: str) -> str:
        return f"{self.prefix}dlq.{library}"

    def audit_heads(self, library: str) -> str:
        return f"{self.prefix}audit.heads.{library}"

    def deliver(self, department: str, library: str) -> str:
        return f"{self.prefix}deliver.{department}.{library}"

    def acts(self, principal: str) -> str:
        """What `principal` says to the bus; the broker lets only `principal` write it, so the
        topic, not the message, names the author (as ingest topics name their source)."""
        return f"{self.prefix}{ACTS}.{principal}"

    def parse_acts(self, topic: str) -> str:
        """The principal whose acts topic this is; ValueError for any other name."""
        root = f"{self.prefix}{ACTS}."
        principal = topic[len(root):] if topic.startswith(root) else ""
        if not principal or "." in principal:
            raise ValueError(f"{topic!r} is not a control.acts.<principal> topic")
        return principal

    def objections_of(self, department: str) -> str:
        """The objections `department` raised or must answer; only it (and governance) reads it."""
        return f"{self.prefix}{OBJECTIONS}.{department}"

    def conflicts_of(self, department: str) -> str:
        """The conflicts about `department`'s fields, with both values; only it reads it."""
        return f"{self.prefix}{CONFLICTS}.{department}"

    def rejections_of(self, department: str) -> str:
        """What the gate refused of `department`'s events, with why; only it (and governance)
        reads it, so a source learns about its own data and nobody else's."""
        return f"{self.prefix}{REJECTIONS}.{department}"

    def bus(self, name: str) -> str:
        """A bus topic such as ``control.subscriptions`` under this prefix."""
        return f"{self.prefix}{name}"

    def unprefixed(self, topic: str) -> str:
        return topic[len(self.prefix):] if topic.startswith(self.prefix) else topic

    def parse_ingest(self, topic: str) -> tuple[str, str]:
        """(library, department) of an ingest topic; ValueError for any other name."""
        kind, _, rest = self.unprefixed(topic).partition(".")
        library, _, department = rest.partition(".")
        if kind != "ingest" or not library or not department:
            raise ValueError(f"{topic!r} is not an ingest.<library>.<department> topic")
        return library, department
