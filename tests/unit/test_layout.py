"""The house a newcomer walks: processors arranged in rooms, and no long module without a
reason written at its top."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE_FOLDERS = ("govbus", "topics", "schemas", "producers", "processors", "consumers")
LONG = 300
ROOMS = {"runtime", "gate", "router", "freshness", "governance"}


def _modules() -> list[Path]:
    return sorted(path for folder in SOURCE_FOLDERS for path in (ROOT / folder).rglob("*.py")
                  if "__pycache__" not in path.parts)


def test_every_module_over_three_hundred_lines_says_at_its_top_why_it_is_one_module() -> None:
    unexplained = []
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) <= LONG:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if "Why one module" not in docstring:
            unexplained.append(str(path.relative_to(ROOT)))
    assert unexplained == [], f"modules over {LONG} lines without a reason at their top: {unexplained}"


def test_processors_are_rooms_each_saying_what_it_holds() -> None:
    folders = {path.name for path in (ROOT / "processors").iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert folders == ROOMS
    for room in ROOMS:
        docstring = ast.get_docstring(ast.parse((ROOT / "processors" / room / "__init__.py").read_text(encoding="utf-8")))
        assert docstring and len(docstring) > 80, f"processors/{room}/__init__.py does not say what the room holds"
    loose = sorted(path.name for path in (ROOT / "processors").glob("*.py") if path.name != "__init__.py")
    assert loose == ["commands.py", "lifeevents.py"], loose


def test_the_runtime_loop_knows_no_processor() -> None:
    """Data flows one way: the gate and the router use the runtime, never the reverse (the
    worker, which composes them into a process, is the one exception)."""
    rooms = ("gate", "router", "freshness", "governance")
    for name in ("batches.py", "partition_store.py", "output.py", "host.py", "metrics.py"):
        text = (ROOT / "processors" / "runtime" / name).read_text(encoding="utf-8")
        assert not any(f"govbus.processors.{room}" in text for room in rooms), name
