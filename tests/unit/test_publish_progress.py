"""The progress line of a long publish: records, rate, share read and time left."""

from __future__ import annotations

import io
import os
from pathlib import Path

from govbus.producers.progress import InputSize, Progress, describe, duration, expected_records, measure_input, time_left


def test_time_left_follows_the_rate_of_the_bytes_read() -> None:
    assert time_left(250, 1000, 10.0) == 30.0  # a quarter in 10 s: three quarters in 30 s more
    assert time_left(1000, 1000, 40.0) == 0.0
    assert time_left(0, 1000, 5.0) is None, "no rate before the first byte"
    assert time_left(100, 1000, 0.0) is None


def test_the_expected_records_scale_the_records_so_far_by_the_share_of_bytes_read() -> None:
    assert expected_records(2500, 250, 1000) == 10000
    assert expected_records(10, 1000, 1000) == 10
    assert expected_records(0, 0, 1000) is None


def test_the_progress_line_of_a_file_says_share_expected_records_and_time_left() -> None:
    size = InputSize(10_000_000, lambda: 0)
    line = describe(24_000, 1_000, 50.0, size, bytes_read=2_500_000)
    assert line == "published 24,000  rejected 1,000  500 records/s  25% of ~100,000  about 2 min 30 s left"
    assert describe(24_000, 1_000, 50.0) == "published 24,000  rejected 1,000  500 records/s"
    assert duration(7260) == "2 h 01 min" and duration(59.6) == "1 min 00 s" and duration(4) == "4 s"


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_off_a_terminal_writes_a_line_every_ten_seconds_and_leaves_the_end_to_the_summary() -> None:
    output, clock, read = io.StringIO(), _Clock(), [0]
    progress = Progress(output, live=False, input_size=InputSize(1000, lambda: read[0]), clock=clock)
    for second in range(1, 26):
        clock.now += 1.0
        read[0] = second * 10
        progress.show(second * 100, 0)
    progress.finish(2500, 0)
    lines = output.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0] == "published 1,000  rejected 0  100 records/s  10% of ~10,000  about 1 min 30 s left"
    assert lines[1].startswith("published 2,000  rejected 0  100 records/s  20% of ~10,000  about 1 min 20 s left")


def test_progress_on_a_terminal_redraws_one_line_and_ends_it_with_the_final_counts() -> None:
    output, clock = io.StringIO(), _Clock()
    progress = Progress(output, live=True, clock=clock)
    progress.show(1, 0)  # not due yet
    clock.now += 0.5
    progress.show(5_000, 12)
    clock.now += 0.5
    progress.finish(9_000, 12)
    assert output.getvalue() == ("\rpublished 5,000  rejected 12  10,024 records/s"
                                 "\rpublished 9,000  rejected 12  9,012 records/s \n"), "a shorter line wipes the longer one"


def test_the_input_size_is_known_for_a_file_and_unknown_for_a_pipe(tmp_path: Path) -> None:
    source = tmp_path / "records.jsonl"
    source.write_text('{"a": 1}\n' * 1000, encoding="utf-8")
    with source.open(encoding="utf-8-sig") as stream:
        size = measure_input(stream)
        assert size is not None and size.total == 9000 and size.position() == 0
        for _ in stream:
            pass
        assert size.position() == 9000
    reading, writing = os.pipe()
    with os.fdopen(reading, encoding="utf-8") as pipe:
        os.close(writing)
        assert measure_input(pipe) is None
    assert measure_input(io.StringIO("{}\n")) is None
