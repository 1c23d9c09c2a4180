"""Every topic name of the bus, made in one place.

A prefix namespaces a whole bus: tests give each test its own, so that tests never see each
other's data; a deployment may use one per environment. The names carry meaning the broker
enforces: ``ingest.<library>.<department>`` names the only department allowed to write it,
``deliver.<department>.<library>`` the only department allowed to read it.
"""

from __future__ import annotations

from dataclasses import dataclass

SUBSCRIPTIONS = "control.subscriptions"
OBJECTIONS = "control.objections"
CONFLICTS = "control.conflicts"
ALERTS = "control.alerts"
AUDIT = "audit.deliveries"
FRESHNESS = "metrics.freshness"


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
