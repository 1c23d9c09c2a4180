"""`govbus bench` run tiny on the test session's broker: every result file holds what the
report promises, and every figure is a positive, finite number. No timing is asserted: the
figures depend on the machine and on whatever else runs on it."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from click.testing import CliRunner

from govbus.cli import main


def _numbers(value, path="") -> list[tuple[str, float]]:
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float)):
        return [(path, value)]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _numbers(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in _numbers(item, f"{path}[{index}]")]
    return []


def test_bench_writes_results_with_machine_versions_ratios_and_sane_figures(on_session_broker, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["bench", "--events", "200", "--no-profile", "--out", str(tmp_path),
                                       "--scenario", "hot_path", "--scenario", "ceiling",
                                       "--scenario", "end_to_end", "--scenario", "polling"])
    assert result.exit_code == 0, result.output
    [json_file] = tmp_path.glob("*.json")
    [markdown_file] = tmp_path.glob("*.md")
    document = json.loads(json_file.read_text())

    assert {"date", "machine", "versions", "parameters", "results", "ratios"} <= set(document)
    assert document["machine"]["cores"] >= 1 and document["versions"]["kafka"]
    assert set(document["results"]) == {"hot_path", "ceiling", "end_to_end", "polling"}
    end_to_end = document["results"]["end_to_end"]
    assert end_to_end["events"] == 200 and end_to_end["departments"] == 4
    assert {"events_per_s", "cpu_seconds_per_1000_events", "peak_rss_mib", "hops"} <= set(end_to_end)
    assert {"gate", "router"} <= set(end_to_end["peak_rss_mib"])
    ceiling = document["results"]["ceiling"]
    assert ceiling["kafka_tool"]["producer"]["records_per_s"] > 0 and ceiling["python"]["producer_events_per_s"] > 0
    polling = document["results"]["polling"]
    assert polling["intervals"] and all(entry["freshness_s"]["p99"] is not None for entry in polling["intervals"].values())
    assert {"bus_over_python_ceiling", "bus_over_kafka_tool_ceiling"} <= set(document["ratios"])

    figures = _numbers(document["results"]) + _numbers(document["ratios"])
    assert figures
    for path, value in figures:
        assert math.isfinite(value) and value >= 0, f"{path} = {value}"
    rates = [(path, value) for path, value in figures if path.endswith(("_per_s", "records_per_s"))]
    assert rates and all(value > 0 for _, value in rates), rates
    text = markdown_file.read_text()
    assert "## end to end" in text and "## Ratios" in text and document["machine"]["cpu_model"] in text


def test_the_warm_up_reads_how_long_the_broker_jit_compiler_has_run(broker) -> None:
    """The bench's warm-up waits for the broker's JIT compiler threads to settle; a broker
    that has served a test session has compiled for a while, and the figure grows, never shrinks."""
    from govbus.bench.harness import compiler_seconds

    pids = broker.cluster.pids() if broker.cluster is not None else []
    assert pids, "the session's broker is the suite's own local broker"
    first = compiler_seconds(pids)
    assert first > 0
    assert compiler_seconds(pids) >= first
    assert compiler_seconds([os.getpid()]) == 0  # a Python process has no such threads
