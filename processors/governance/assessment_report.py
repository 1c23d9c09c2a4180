"""The assessment in four forms: a terminal table, CSV, JSON and a self-contained HTML page.

CSV is long ("tidy"): one row per scope (department or library), subject and measure, so a
spreadsheet or pandas pivots it as it likes and new measures add rows, not columns. The HTML
page embeds everything (styles and SVG charts); it opens from a file on an offline machine.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Iterator
from typing import Any

FORMATS = ("table", "csv", "json", "html")


def human(seconds: float) -> str:
    """A duration as people say it: 800 ms, 5 s, 10 min, 24 h, 7 d."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            value = seconds / size
            return f"{value:.0f} {unit}" if value == int(value) or value >= 10 else f"{value:.1f} {unit}"
    return f"{seconds * 1000:.0f} ms"


DEPARTMENT_COLUMNS = [
    ("department", "department"), ("published", "published"), ("changes", "changes"),
    ("within_sla_share", "within SLA"), ("lateness.p50", "lateness p50"), ("lateness.p95", "p95"),
    ("lateness.p99", "p99"), ("rejected_share", "rejected"), ("conflicts_to_verify", "conflicts to verify"),
    ("conflicts_reported", "conflicts reported"), ("conflicts_open", "open conflicts"),
    ("oldest_open_conflict_seconds", "oldest open"), ("objections_received", "objections"),
    ("median_answer_seconds", "median answer"),
]
LIBRARY_COLUMNS = [
    ("library", "library"), ("receiving_departments", "subscribed"), ("delivered_to", "received"),
    ("live_deliveries", "live deliveries"), ("within_sla_share", "within SLA"), ("delivery_latency.p50", "latency p50"),
    ("delivery_latency.p95", "p95"), ("delivery_latency.p99", "p99"), ("sla.max_delivery_latency_seconds", "SLA"),
]


def render(assessment: dict[str, Any], form: str) -> str:
    if form not in FORMATS:
        raise ValueError(f"unknown format {form!r}; choose from {', '.join(FORMATS)}")
    return {"table": table, "csv": to_csv, "json": to_json, "html": to_html}[form](assessment)


def _get(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _cell(path: str, value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return str(len(value))
    if path.endswith("share"):
        return f"{100 * value:.1f} %"
    if isinstance(value, float) or path.endswith(("seconds", "p50", "p95", "p99")):
        return human(float(value))
    return str(value)


def _rows(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> list[list[str]]:
    return [[_cell(path, _get(row, path)) for path, _ in columns] for row in rows]


def _period(assessment: dict[str, Any]) -> str:
    return f"{assessment['from'] or 'the beginning'} → {assessment['to']}"


def table(assessment: dict[str, Any]) -> str:
    lines = [f"Assessment (数据更新考核) for {_period(assessment)}", ""]
    for title, rows, columns in (("Departments", assessment["departments"], DEPARTMENT_COLUMNS),
                                 ("Libraries", assessment["libraries"], LIBRARY_COLUMNS)):
        cells = [[header for _, header in columns], *_rows(rows, columns)]
        widths = [max(len(row[index]) for row in cells) for index in range(len(columns))]
        lines.append(title)
        for number, row in enumerate(cells):
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
            if number == 0:
                lines.append("  ".join("-" * width for width in widths))
        lines.append("")
    return "\n".join(lines)


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for name, inner in value.items():
            yield from _flatten(f"{prefix}.{name}" if prefix else name, inner)
    elif isinstance(value, list):
        yield prefix, ",".join(str(item) for item in value)
    else:
        yield prefix, value


def to_csv(assessment: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["from", "to", "scope", "subject", "measure", "value"])
    for scope, key, rows in (("department", "department", assessment["departments"]),
                             ("library", "library", assessment["libraries"])):
        for row in rows:
            for measure, value in _flatten("", {k: v for k, v in row.items() if k != key}):
                writer.writerow([assessment["from"] or "", assessment["to"], scope, row[key], measure,
                                 "" if value is None else value])
    return buffer.getvalue()


def to_json(assessment: dict[str, Any]) -> str:
    return json.dumps(assessment, ensure_ascii=False, indent=2)


STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 1em 0 2em; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
figure.chart { margin: 2em 0; } figure.chart svg { max-width: 100%; height: auto; }
figcaption { font-weight: bold; margin-bottom: 0.5em; }
"""


def _html_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], label: str) -> str:
    head = "".join(f"<th>{html.escape(header)}</th>" for _, header in columns)
    body = []
    for row, cells in zip(rows, _rows(rows, columns)):
        first = f"{html.escape(cells[0])}<br><small>{html.escape(row.get('name', ''))}</small>"
        body.append("<tr><td>" + first + "</td>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells[1:]) + "</tr>")
    return f'<table aria-label="{label}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def to_html(assessment: dict[str, Any]) -> str:
    from govbus.processors.governance.assessment_charts import all_charts  # matplotlib: only when charts are drawn

    charts = "".join(f'<figure class="chart" data-chart="{html.escape(caption)}"><figcaption>{html.escape(caption)}'
                     f"</figcaption>{image}</figure>" for caption, image in all_charts(assessment))
    period = html.escape(_period(assessment))
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>数据更新考核 — govbus assessment</title>
<style>{STYLE}</style></head><body>
<h1>数据更新考核 · Data update assessment</h1>
<p>Period: {period}. Counted by the bus from what it recorded: changes published, their lateness against each
library's SLA, rejections, conflicts, objections, and the freshness of every delivery.</p>
<h2>Departments</h2>
{_html_table(assessment["departments"], DEPARTMENT_COLUMNS, "departments")}
<h2>Libraries</h2>
{_html_table(assessment["libraries"], LIBRARY_COLUMNS, "libraries")}
<h2>Charts</h2>
{charts}
</body></html>
"""
