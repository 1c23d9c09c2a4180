"""Compact JSON as bytes: the one spelling of the golden records and the sharing records.

Why a module: both are written once per event on the hot path, and the standard library's
encoder was a tenth of the gate's and of the router's own time (bench hot-path profiles).
orjson writes the same bytes as ``json.dumps(value, separators=(",", ":"),
ensure_ascii=False)`` (and, sorted, as the audit chain's canonical form) several times faster,
so the records already on the bus, and the hashes of the audit chain, stay as they are
(``tests/unit/test_compact_json.py`` proves the spellings equal for what those records hold:
text, integers, booleans, null, lists and objects). A float may be spelled differently
(``6.1e-05`` as ``0.000061``) but reads back equal; sharing records hold none. What orjson refuses (an
integer past 64 bits, a key that is not a string) falls back to the standard library's
spelling instead of failing; such an integer reads back as a float (orjson), which no record of
the bus holds: its integers are Avro longs.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """`value` as compact UTF-8 JSON (keys sorted when asked: a canonical form to hash)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except TypeError:
        return json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def loads(value: bytes | str) -> Any:
    """JSON text or UTF-8 bytes as Python values."""
    return orjson.loads(value)
