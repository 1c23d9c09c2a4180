"""`govbus publish` end to end on a real broker, as a source system's operator runs it."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
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


def _run_on_a_terminal(bus, department: str, *arguments: str) -> tuple[int, str, str]:
    """The command with its standard error on a pseudo-terminal, as at an operator's console:
    exit code, standard output, and everything drawn on the terminal."""
    environment = settings_environment(bus.as_principal(department))
    controller, terminal = pty.openpty()
    drawn: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the command closed the terminal
                return
            if not chunk:
                return
            drawn.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        completed = subprocess.run([*GOVBUS, *arguments], stdout=subprocess.PIPE, stderr=terminal, text=True,
                                   env=environment, timeout=300)
    finally:
        os.close(terminal)
    reader.join(timeout=10)
    os.close(controller)
    return completed.returncode, completed.stdout, b"".join(drawn).decode(errors="replace")


def test_publish_of_a_file_on_a_terminal_shows_records_rate_share_and_time_left(bus, tmp_path: Path) -> None:
    bus.apply_catalog()
    source = tmp_path / "snapshot.jsonl"
    with source.open("w", encoding="utf-8") as output:
        for record in generate("population", 4000, seed=13, department="public_security", op="snapshot"):
            output.write(json.dumps(record, ensure_ascii=False) + "\n")
    code, stdout, terminal = _run_on_a_terminal(bus, "public_security", "publish", "population",
                                                "-d", "public_security", "--input", str(source))
    assert code == 0, stdout + terminal
    assert stdout.startswith("4,000 published to "), stdout
    lines = [line.strip() for line in terminal.replace("\n", "\r").split("\r") if line.startswith("published")]
    assert lines, terminal
    assert lines[-1].startswith("published 4,000  rejected 0  "), "the final line has the final counts"
    assert any("% of ~" in line and " left" in line for line in lines[:-1]), lines
    assert "records/s" in lines[-1]


def test_publish_from_a_pipe_with_its_output_not_a_terminal_keeps_standard_error_quiet(bus, tmp_path: Path) -> None:
    """A short run from a pipe: no size to estimate from, and no log line is due within 10 s."""
    bus.apply_catalog()
    records = "".join(json.dumps(r, ensure_ascii=False) + "\n"
                      for r in generate("population", 50, seed=14, department="public_security"))
    environment = settings_environment(bus.as_principal("public_security"))
    completed = subprocess.run([*GOVBUS, "publish", "population", "-d", "public_security", "--input", "-",
                                "--rejects", str(tmp_path / "rejects.jsonl")], input=records, capture_output=True, text=True,
                               env=environment, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("50 published to ")
    assert "published" not in completed.stderr
