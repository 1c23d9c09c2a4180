"""The offset ledger asks the broker where a partition's next record is (to tell offsets
compacted away from events that went missing on the way)."""

from __future__ import annotations

from govbus.processors.offsets import OffsetLedger

from kafka_helpers import send_raw


def test_the_first_offset_at_or_after_a_position_comes_from_the_log(bus) -> None:
    bus.apply_catalog()
    topic = bus.names.bus("control.subscriptions")  # one partition
    for number in range(3):
        send_raw(bus.settings, topic, f"value {number}".encode(), key=f"k{number}".encode())
    ledger = OffsetLedger(bus.settings, "govbus-test")
    assert [ledger.first_offset((topic, 0), offset) for offset in (0, 2)] == [0, 2]
    assert ledger.first_offset((topic, 0), 3, timeout=2) is None, "nothing there yet"
