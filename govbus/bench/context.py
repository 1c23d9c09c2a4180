"""What a scenario gets: settings for a broker, the sizes to run, where to write, a log line.

The broker is started lazily (the hot-path scenario needs none) and shared by every
scenario of one run: a throw-away secured local broker, or the one ``GOVBUS_BOOTSTRAP_SERVERS``
names. Each scenario uses its own topic prefix, so scenarios never see each other's data.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from govbus.settings import Settings


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does. `small()` finishes everything in a few minutes on two
    cores: its offered rates (50, as the polling baseline, then 500 and 1,000 events/s, the targets) are
    ones a 2-core machine sustains, so that they measure freshness and not a growing backlog. `full()` is the issue's size: 500 and
    2,000 events/s, a 1,000,000-record initial load (hours of a shared 2-core machine's time).
    The polling baseline writes at the first offered rate, so the two are compared alike."""

    events: int  # end to end, ceiling, hot path
    snapshot: int  # initial load
    rates: tuple[int, ...]  # offered load, events/s
    offered_seconds: float  # per offered rate
    poll_intervals: tuple[float, ...]  # polling baseline, seconds
    poll_rate: int  # polling baseline: events/s written to the central table
    poll_seconds: float  # polling baseline: how long the sources write
    ceiling_events: int

    @classmethod
    def small(cls) -> Sizes:
        return cls(events=3000, snapshot=5000, rates=(50, 500, 1000), offered_seconds=10.0,
                   poll_intervals=(5.0, 60.0), poll_rate=50, poll_seconds=15.0, ceiling_events=30_000)

    @classmethod
    def full(cls) -> Sizes:
        return cls(events=100_000, snapshot=1_000_000, rates=(500, 2000), offered_seconds=60.0,
                   poll_intervals=(5.0, 60.0), poll_rate=500, poll_seconds=300.0, ceiling_events=1_000_000)

    def scaled(self, events: int) -> Sizes:
        """Everything shrunk or grown around `--events N` (the smoke test runs N=200)."""
        factor = events / self.events
        return Sizes(events=events, snapshot=max(100, int(self.snapshot * factor)), rates=self.rates,
                     offered_seconds=max(2.0, min(self.offered_seconds, self.offered_seconds * factor)),
                     poll_intervals=self.poll_intervals if factor >= 1 else tuple(min(t, 2.0 + i * 2) for i, t in enumerate(self.poll_intervals)),
                     poll_rate=self.poll_rate, poll_seconds=max(3.0, min(self.poll_seconds, self.poll_seconds * factor)),
                     ceiling_events=max(events, int(self.ceiling_events * factor)))


@dataclass
class Context:
    settings: Settings
    sizes: Sizes
    out: Path
    echo: Callable[[str], None] = click.echo
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="govbus-bench-")))
    shared: dict[str, Any] = field(default_factory=dict)  # what one scenario leaves for a later one
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    _broker: Any = None
    _passwords: dict[str, str] = field(default_factory=dict)

    def broker(self):  # -> ProvisionedBroker
        if self._broker is None:
            from govbus.bench.harness import provision_broker

            self.echo("starting a throw-away secured local Kafka broker …")
            self._broker = provision_broker(self.settings)
            self.echo(f"broker: {self._broker.origin} at {self._broker.bootstrap_servers}")
        return self._broker

    def broker_pids(self) -> list[int]:
        """The processes of the bench's own local broker (none for a configured broker, which
        may run elsewhere)."""
        cluster = self.broker().cluster
        return cluster.pids() if cluster is not None else []

    def admin_settings(self, scenario: str, **values: Any) -> Settings:
        """Admin settings under a prefix of the scenario's own."""
        prefix = f"bench-{scenario}-{uuid.uuid4().hex[:6]}."
        return self.broker().admin_settings(topic_prefix=prefix, client_id=f"govbus-bench-{scenario}",
                                            home=self.work / "home", key_secret=self.settings.key_secret,
                                            catalog_dir=self.settings.catalog_dir, **values)

    def passwords(self) -> dict[str, str]:
        """Principals (processors, governance, departments) made once per run: name → password."""
        if not self._passwords and self.broker().security.get("security_protocol", "PLAINTEXT") != "PLAINTEXT":
            from govbus.bench.harness import make_principals

            # On a broker of its own the bench keeps its principals' passwords in its work folder;
            # on a configured broker it reuses (never rotates) those stored in the govbus home.
            home = self.work / "principals" if self.broker().cluster is not None else self.settings.home
            self._passwords = make_principals(self.broker(), self.settings, home)
        return self._passwords

    def close(self, keep_work: bool = False) -> None:
        """Stop what the scenarios started, then the broker; remove the work folder unless kept
        (the commands keep it when a scenario failed: the workers' logs are in it)."""
        while self.cleanups:
            try:
                self.cleanups.pop()()
            except Exception as error:  # noqa: BLE001 - clean up the rest regardless
                self.echo(f"cleanup failed: {error}")
        if self._broker is not None:
            self._broker.close()
            self._broker = None
        if not keep_work:
            shutil.rmtree(self.work, ignore_errors=True)


def secret() -> str:
    return secrets.token_hex(16)
