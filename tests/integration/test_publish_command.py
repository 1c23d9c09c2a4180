"""`govbus publish` end to end on a real broker, as a source system's operator runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from govbus.processes import settings_environment
from govbus.producers.generate import generate

GOVBUS = [sys.executable, "-m", "govbus.cli"]


def _run(bus, department: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """The command as the department's own operator runs it: logged in as that department."""
    environment = settings_environment(bus.as_principal(department))
    return subprocess.run([*GOVBUS, *arguments], capture_output=True, text=True, env=environment, timeout=300)


def test_publish_reports_each_rejected_record_in_the_rejects_file_and_exits_non_zero(bus, tmp_path: Path) -> None:
    bus.apply_catalog()
    source = tmp_path / "changes.jsonl"
    records = list(generate("legal_entity", 300, seed=9, invalid_share=0.1, department="market_regulation"))
    source.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records) + "{broken json\n")
    completed = _run(bus, "market_regulation", "publish", "legal_entity", "--department", "market_regulation", "--input", str(source))
    assert completed.returncode == 1, completed.stderr
    rejects = [json.loads(line) for line in (tmp_path / "changes.jsonl.rejects.jsonl").read_text().splitlines()]
    published = int(completed.stdout.split(" published")[0].replace(",", ""))
    assert published + len(rejects) == 301
    assert rejects[-1]["line"] == 301 and rejects[-1]["violations"][0]["rule"] == "parse"
    for reject in rejects[:-1]:
        assert reject["violations"] and all(v["rule"] and v["message"] for v in reject["violations"])
        assert 1 <= reject["line"] <= 300
    assert "Rejected records and their reasons" in completed.stdout


def test_publish_of_a_clean_csv_file_exits_zero_and_leaves_no_rejects_file(bus, tmp_path: Path) -> None:
    bus.apply_catalog()
    records = list(generate("population", 40, seed=2, department="civil_affairs"))
    columns = sorted({key for record in records for key in record})
    lines = [",".join(columns)] + [",".join("" if record.get(c) is None else str(record[c]) for c in columns) for record in records]
    source = tmp_path / "marriages.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    completed = _run(bus, "civil_affairs", "publish", "population", "-d", "civil_affairs", "--input", str(source))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.startswith("40 published to ")
    assert not (tmp_path / "marriages.csv.rejects.jsonl").exists()


def test_publish_for_a_department_that_is_not_a_source_is_refused(bus, tmp_path: Path) -> None:
    source = tmp_path / "x.jsonl"
    source.write_text("")
    completed = _run(bus, "health", "publish", "credit", "-d", "health", "--input", str(source))
    assert completed.returncode == 1
    assert "health is not a source of credit" in completed.stderr
