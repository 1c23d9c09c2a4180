"""Administrative division codes (GB/T 2260), read from the packaged `divisions.csv`.

The file lists every provincial-level division and a few hundred prefecture- and
county-level ones that are known to be right; accuracy matters more than coverage,
because an unknown code is reported as an error. Codes marked `abolished` (e.g. Beijing's
崇文区 110103) no longer exist but still appear at the start of citizen identity numbers
issued before the change, so identity numbers accept them while region fields do not.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True, slots=True)
class Division:
    """One row of the division table."""

    code: str
    name: str
    current: bool

    @property
    def level(self) -> str:
        """`province`, `prefecture` or `county`, read off the code's zero suffix."""
        if self.code.endswith("0000"):
            return "province"
        if self.code.endswith("00"):
            return "prefecture"
        return "county"

    @property
    def province_code(self) -> str:
        return self.code[:2] + "0000"


@cache
def divisions() -> dict[str, Division]:
    """All known divisions by code (loaded once)."""
    text = resources.files(__package__).joinpath("divisions.csv").read_text("utf-8")
    table: dict[str, Division] = {}
    for row in csv.DictReader(text.splitlines()):
        code = row["code"].strip()
        table[code] = Division(code, row["name"].strip(), row["status"].strip() == "current")
    return table


@cache
def current_codes() -> frozenset[str]:
    """Codes valid for a region field today."""
    return frozenset(code for code, item in divisions().items() if item.current)


@cache
def known_codes() -> frozenset[str]:
    """Codes that may appear in identifiers issued in the past (current and abolished)."""
    return frozenset(divisions())


@cache
def county_codes() -> tuple[str, ...]:
    """Current county-level codes, sorted: what generators draw household regions from."""
    return tuple(sorted(c for c in current_codes() if divisions()[c].level == "county"))


def name_of(code: str) -> str | None:
    """The division's name, or None when the code is unknown."""
    item = divisions().get(code)
    return item.name if item else None
