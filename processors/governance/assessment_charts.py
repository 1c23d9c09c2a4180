"""The assessment's charts, drawn with matplotlib and embedded in the HTML page as inline SVG.

Inline SVG needs no network and no JavaScript (the machines are offline), stays sharp when
printed, and text is drawn as paths, so the page looks the same without the fonts. Each chart
has a title that says what it shows, labelled axes with units, and the SLA as a red dashed
line where there is one, so that a reader sees at a glance who is inside and who is not.
Labels use the catalog's English names (the default fonts have no Chinese glyphs).
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from govbus.processors.governance.assessment_report import human

BLUE, ORANGE, PURPLE, RED, GREY = "#1f77b4", "#ff7f0e", "#9467bd", "#d62728", "#7f7f7f"
QUANTILE_COLOURS = {"p50": BLUE, "p95": ORANGE, "p99": PURPLE}


def svg(figure: Figure) -> str:
    """The figure as an <svg> element (without the XML prologue) for an HTML page."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _empty(axes: Axes, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color=GREY, transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def share_within_sla(departments: list[dict[str, Any]]) -> Figure:
    """Horizontal bars: the share of each department's changes that met the lateness SLA."""
    rows = [d for d in departments if d["within_sla_share"] is not None]
    figure = Figure(figsize=(9, 0.5 * max(len(rows), 3) + 1.4))
    axes = figure.subplots()
    axes.set_title("Changes accepted within the source-lateness SLA, by department")
    if not rows:
        _empty(axes, "No changes in this period")
        return figure
    labels = [d["name_en"] for d in rows]
    shares = [100 * d["within_sla_share"] for d in rows]
    bars = axes.barh(labels, shares, color=[BLUE if s >= 95 else RED for s in shares])
    axes.bar_label(bars, labels=[f"{s:.1f} %  ({d['changes']} changes)" for s, d in zip(shares, rows)], padding=3)
    axes.axvline(100, color=GREY, linewidth=0.8)
    axes.set_xlim(0, 130)
    axes.set_xlabel("changes within SLA (%) — red: under 95 %")
    axes.invert_yaxis()
    return figure


def delays(groups: list[dict[str, Any]], *, title: str, who: str, limit_key: str) -> Figure:
    """Per library, p50/p95/p99 bars per department on a log scale, with the library's SLA.

    ``groups``: [{"library": name, "sla": {limit_key: seconds}, "rows": {department: summary}}].
    """
    groups = [group for group in groups if any(row.get("count") for row in group["rows"].values())]
    figure = Figure(figsize=(9, 3.2 * max(len(groups), 1) + 0.6))
    figure.suptitle(title)
    if not groups:
        _empty(figure.subplots(), "No measurements in this period")
        return figure
    for axes, group in zip(figure.subplots(len(groups), 1, squeeze=False)[:, 0], groups):
        _delay_bars(axes, group, who, group["sla"][limit_key])
    figure.tight_layout()
    return figure


def _delay_bars(axes: Axes, group: dict[str, Any], who: str, limit: float) -> None:
    rows = {name: row for name, row in group["rows"].items() if row.get("count")}
    width = 0.8 / len(QUANTILE_COLOURS)
    for offset, (quantile, colour) in enumerate(QUANTILE_COLOURS.items()):
        positions = [index + (offset - 1) * width for index in range(len(rows))]
        values = [max(row[quantile] or 0, 0.001) for row in rows.values()]
        axes.bar(positions, values, width, label=quantile, color=colour)
    axes.axhline(limit, color=RED, linestyle="--", linewidth=1.5, label=f"SLA {human(limit)}")
    axes.set_yscale("log")
    axes.set_xlim(-0.6, max(len(rows), 3) - 0.4)  # narrow bars even for one department
    axes.set_xticks(range(len(rows)), [f"{name}\n({row['count']})" for name, row in rows.items()], fontsize=8)
    axes.set_title(f"{group['library']}", fontsize=11)
    axes.set_xlabel(f"{who} (number of measurements)")
    axes.set_ylabel("seconds (log scale)")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def rejected_share(departments: list[dict[str, Any]]) -> Figure:
    """Bars: the share of each department's published messages that were rejected."""
    rows = [d for d in departments if d["published"]]
    figure = Figure(figsize=(9, 0.5 * max(len(rows), 3) + 1.4))
    axes = figure.subplots()
    axes.set_title("Published messages rejected by the gate, by department")
    if not rows:
        _empty(axes, "Nothing published in this period")
        return figure
    shares = [100 * (d["rejected_share"] or 0) for d in rows]
    bars = axes.barh([d["name_en"] for d in rows], shares, color=ORANGE)
    axes.bar_label(bars, labels=[f"{s:.1f} %  ({d['rejected']} of {d['published']})" for s, d in zip(shares, rows)],
                   padding=3)
    axes.set_xlim(0, max(100, max(shares) * 1.3))
    axes.set_xlabel("rejected (%) of published messages")
    axes.invert_yaxis()
    return figure


def all_charts(assessment: dict[str, Any]) -> list[tuple[str, str]]:
    """(caption, svg) of every chart of an assessment."""
    departments, libraries = assessment["departments"], assessment["libraries"]
    by_source: dict[str, dict[str, Any]] = {
        library["library"]: {"library": library["name_en"], "sla": library["sla"], "rows": {}} for library in libraries}
    for department in departments:
        for library, figures in department["libraries"].items():
            by_source[library]["rows"][department["name_en"]] = figures["lateness"]
    english = {department["department"]: department["name_en"] for department in departments}
    receivers = [{"library": lib["name_en"], "sla": lib["sla"],
                  "rows": {english.get(name, name): row for name, row in lib["by_department"].items()}}
                 for lib in libraries]
    figures = [
        ("Share within SLA", share_within_sla(departments)),
        ("Source lateness", delays(list(by_source.values()), title="Source lateness (recorded → accepted), p50/p95/p99",
                                   who="source department", limit_key="max_source_lateness_seconds")),
        ("Delivery latency", delays(receivers, title="Delivery latency (accepted → delivered), p50/p95/p99",
                                    who="receiving department", limit_key="max_delivery_latency_seconds")),
        ("Rejected share", rejected_share(departments)),
    ]
    return [(caption, svg(figure)) for caption, figure in figures]
