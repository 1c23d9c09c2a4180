"""The lateness rule, pinned once: the gate, the freshness monitor and the assessment judge a
change late by the one rule in `processors/freshness/sla.py`, so they never count differently."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from govbus.processors.governance.assessment import Tally
from govbus.processors.freshness.monitor import FreshnessMonitor
from govbus.processors.gate.logic import GateLogic
from govbus.processors.freshness.sla import breaches, late, late_change, lateness_limit
from govbus.producers.generate import generate
from govbus.producers.records import to_event
from govbus.schemas.codec import default_codec
from govbus.schemas.framing import LATE, cloudevent_headers, entity_key, header_map
from govbus.topics.catalog import Catalog
from govbus.topics.names import TopicNames

NAMES = TopicNames("p.")
SECRET = b"test-secret"
LIBRARY = "population"


def gate_output_headers(catalog: Catalog, lateness: float) -> list[tuple[str, bytes]]:
    """The headers of the shared change the gate makes of one event accepted `lateness` s late."""
    codec = default_codec()
    gate = GateLogic(LIBRARY, catalog, codec, NAMES, secret=SECRET)
    event = to_event(LIBRARY, "public_security", next(generate(LIBRARY, 1, seed=5, department="public_security")), "t")
    event["recorded_at"] = event["recorded_at"].replace(microsecond=0)  # whole milliseconds, as ce_time says
    key, value = entity_key(SECRET, LIBRARY, event["entity_id"]), codec.encode(LIBRARY, event)
    step = gate.handle(NAMES.ingest(LIBRARY, "public_security"), 0, 0, key, value,
                       cloudevent_headers(event, LIBRARY, 1, key), None,
                       now=event["recorded_at"].timestamp() + lateness)
    return step.outputs[0].headers


def counted_late(catalog: Catalog, headers: list[tuple[str, bytes]]) -> tuple[int, int]:
    """(late changes the freshness monitor counts, late changes the assessment counts)."""
    accepted = int(header_map(headers)["govbus_accepted_at"]) / 1000
    monitor = FreshnessMonitor(catalog, NAMES, started=accepted, window=10 ** 9, settle=10)
    monitor.accepted(LIBRARY, headers, accepted)
    tally = Tally(catalog, NAMES)
    tally.shared(LIBRARY, type("Message", (), {"headers": headers})())
    return (sum(monitor.late.values()), tally.counts["public_security"]["late:all"])


@pytest.mark.parametrize(("over_the_limit", "is_late"), [(-1.0, False), (0.0, False), (1.0, True)])
def test_the_gate_the_monitor_and_the_assessment_judge_lateness_alike(catalog: Catalog, over_the_limit: float,
                                                                       is_late: bool) -> None:
    headers = gate_output_headers(catalog, lateness_limit(catalog, LIBRARY) + over_the_limit)
    assert header_map(headers)[LATE] == (b"true" if is_late else b"false")
    assert counted_late(catalog, headers) == (int(is_late), int(is_late))


def test_the_gates_mark_is_the_verdict_and_an_unmarked_change_is_judged_by_the_same_rule(catalog: Catalog) -> None:
    limit = lateness_limit(catalog, LIBRARY)
    headers = gate_output_headers(catalog, limit + 60)
    unmarked = [(name, value) for name, value in headers if name != LATE]
    assert late_change(header_map(unmarked), limit) is True and counted_late(catalog, unmarked) == (1, 1)
    marked_in_time = unmarked + [(LATE, b"false")]
    assert late_change(header_map(marked_in_time), limit) is False and counted_late(catalog, marked_in_time) == (0, 0)


def test_a_snapshot_is_never_late_and_a_breach_is_strictly_over_the_limit() -> None:
    recorded = datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()
    assert late(recorded, recorded + 10, 5, backfill=True) is False
    assert late(recorded, recorded + 10, 5, backfill=False) is True
    assert (breaches(5.0, 5.0), breaches(5.001, 5.0)) == (False, True)
