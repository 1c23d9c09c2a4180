"""The bench says how fast the machine was at the start and the end of a run (a fixed Python
workload), so that absolute figures of runs hours apart on a shared machine are compared
only when the machine was alike."""

from __future__ import annotations

import math

from govbus.bench import machine, report


def _document(**speeds: float) -> dict:
    return {"date": "2026-12-07T03:00:00+00:00", "parameters": {}, "results": {}, "ratios": {},
            "versions": {"python": "3.11"},
            "machine": {"cores": 2, "memory_gib": 24.0, "cpu_model": "x", "system": "Linux",
                        "load_average_at_start": [0.1, 0.1, 0.1], **speeds}}


def test_the_speed_is_a_positive_time_per_round() -> None:
    speed = machine.python_speed(rounds=50, repeats=2)
    assert math.isfinite(speed) and speed > 0


def test_the_report_states_the_speed_at_the_start_and_the_end() -> None:
    text = report.markdown(_document(python_speed_us_at_start=9.5, python_speed_us_at_end=12.25))
    assert "a fixed Python workload took 9.5 µs per round at the start and 12.25 at the end" in text


def test_a_results_file_from_before_the_speed_was_measured_still_reads() -> None:
    assert "Machine speed" not in report.markdown(_document())

