"""A batch's counts reach the Prometheus counters when it is flushed, by kind, department and reason."""

from __future__ import annotations

from govbus.processors.runtime import metrics
from govbus.processors.runtime.counting import Tally
from govbus.processors.gate.deadletters import REASON
from govbus.processors.runtime.output import Output
from govbus.topics.names import TopicNames

NAMES = TopicNames("count-test.")


def value(name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_batch_is_counted_by_kind_department_and_reason_once_flushed() -> None:
    tally = Tally("router", NAMES)
    delivery = Output(NAMES.deliver("health", "population"), b"k", b"v", [])
    sharing = Output(NAMES.bus("audit.deliveries"), b"population/0", b"{}", [])
    letter = Output(NAMES.dlq("population"), b"k", b"v", [(REASON, b"wrong_key")])
    before = {"in": value("govbus_events_in_total", processor="router", library="population"),
              "deliveries": value("govbus_deliveries_total", library="population", department="health"),
              "dead": value("govbus_dead_letters_total", processor="router", library="population", reason="wrong_key"),
              "audit": value("govbus_events_out_total", processor="router", library="population", kind="audit")}
    tally.add("population", [delivery, sharing])
    tally.add("population", [delivery, sharing])
    tally.add("population", [letter])
    assert value("govbus_events_in_total", processor="router", library="population") == before["in"], \
        "nothing is counted before the batch is flushed"
    tally.flush()
    assert value("govbus_events_in_total", processor="router", library="population") == before["in"] + 3
    assert value("govbus_deliveries_total", library="population", department="health") == before["deliveries"] + 2
    assert value("govbus_events_out_total", processor="router", library="population", kind="audit") == before["audit"] + 2
    assert value("govbus_dead_letters_total", processor="router", library="population",
                 reason="wrong_key") == before["dead"] + 1
    tally.flush()
    assert value("govbus_events_in_total", processor="router", library="population") == before["in"] + 3, \
        "a flush starts again from nothing"
