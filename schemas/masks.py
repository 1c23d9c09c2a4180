"""Desensitisation (脱敏) rules, looked up by the name a schema field gives in its `"mask"`.

The one table of masks (`MASKS`): the registry refuses a schema naming a mask that is not in
it, and the router applies the function registered in it, so what a schema may name and what
a department receives cannot disagree (before, `rules.MASKS` and the router's own table
did: 欧阳娜娜 → 欧*** against 欧阳**, and `phone` was refused although the router knew it).

The schema says *which* field is masked *for which purpose*; this module says *how*. The
router never branches on a library or field name: it asks `FieldPolicy.mask_for_purpose`
for a rule name and applies the function registered here under that name.

Every rule fails closed: a value a rule cannot handle (wrong type, too short to keep any
part of) comes out fully hidden, never as it went in. Null stays null (a cleared field says
nothing), and a list is masked element by element (e.g. former names).

A date masked to its year stays a date — the 1st of January of that year — so that it still
fits the field's Avro type on the delivery topic; the masked field names travel with every
delivery (headers and sharing record), so a subscriber knows that 1990-01-01 means "1990".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from govbus.errors import GovbusError

Mask = Callable[[Any], Any]
STAR = "*"
HIDDEN = "***"

# 复姓: compound surnames keep two characters (欧阳修 → 欧阳*).
COMPOUND_SURNAMES = frozenset(
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 夏侯 轩辕 令狐 钟离 澹台 公冶 "
    "端木 独孤 南宫 西门 闻人 呼延 百里 申屠 太史 司空 万俟 拓跋 赫连 东郭 第五 濮阳 淳于 单于".split())
# Suffixes ending a county-level division (区, 县, 旗) and the city level before it (市, 州, 盟).
_COUNTY_ENDS = frozenset("区县旗")
_CITY_ENDS = frozenset("市州盟")
_NOT_A_DIVISION = frozenset("小社园校景厂矿营")  # 小区, 社区, 园区 … end in 区 but are places
_ADDRESS_SCAN = 16  # administrative prefixes are short; look no further for them


class MaskError(GovbusError, ValueError):
    """A schema names a mask rule that this module does not define."""


def keep_ends(value: str, head: int, tail: int) -> str:
    """Keep `head` leading and `tail` trailing characters; hide everything when fewer than
    four characters (or than half the kept ones) would be hidden."""
    hidden = len(value) - head - tail
    if hidden < max(4, (head + tail) // 2):
        return STAR * len(value)
    return value[:head] + STAR * hidden + value[len(value) - tail:]


def mask_identity_number(value: str) -> str:
    """GB 11643 identity number: region and last four, 610102********1234."""
    return keep_ends(value, 6, 4)


def mask_credit_code(value: str) -> str:
    """GB 32100 credit code: registration authority, entity type and region, plus the check
    character: 91610102*********X."""
    return keep_ends(value, 8, 1)


def mask_identifier(value: str) -> str:
    """Any identifier: the first six and the last four characters (an identity number keeps
    its region, a credit code its authority, type and part of the region)."""
    return keep_ends(value, 6, 4)


def mask_name(value: str) -> str:
    """Keep the surname: 张三 → 张*, 欧阳娜娜 → 欧阳**; a one-character value is hidden."""
    kept = 2 if len(value) > 2 and value[:2] in COMPOUND_SURNAMES else 1
    if len(value) <= 1:
        return STAR * len(value)
    return value[:kept] + STAR * (len(value) - kept)


def mask_address(value: str) -> str:
    """Keep the address down to the county level (陕西省西安市碑林区***), else to the city
    level, else at most six characters and never more than half of it."""
    prefix = value[:_ADDRESS_SCAN]
    cut = next((index + 1 for index, char in enumerate(prefix) if char in _COUNTY_ENDS
                and (index == 0 or prefix[index - 1] not in _NOT_A_DIVISION)), 0)
    if not cut:
        cut = max((index + 1 for index, char in enumerate(prefix) if char in _CITY_ENDS), default=0)
    if not cut or cut >= len(value):
        cut = min(6, len(value) // 2)
    return value[:cut] + HIDDEN


def mask_phone(value: str) -> str:
    """Mobile or landline: first three and last four, 138****5678."""
    return keep_ends(value, 3, 4)


def mask_date_to_year(value: Any) -> Any:
    """Only the year: a date or datetime becomes 1 January of its year (same type); an ISO
    string becomes 'YYYY-01-01'."""
    if isinstance(value, datetime):
        return value.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    if isinstance(value, date):
        return date(value.year, 1, 1)
    if isinstance(value, str) and len(value) >= 4 and value[:4].isdigit():
        return value[:4] + "-01-01"
    raise TypeError(f"not a date: {type(value).__name__}")


def redact(value: Any) -> None:
    """Nothing of the value; the field name stays, so the subscriber knows it exists."""
    return None


def _fail_closed(rule: Mask) -> Mask:
    """Null in, null out; lists element-wise; anything the rule cannot handle is hidden."""
    def apply(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            return [apply(item) for item in value]
        try:
            return rule(value)
        except (TypeError, ValueError, AttributeError, IndexError):
            return STAR * len(value) if isinstance(value, str) else None

    apply.__name__ = rule.__name__
    apply.__doc__ = rule.__doc__
    return apply


MASKS: Mapping[str, Mask] = {name: _fail_closed(rule) for name, rule in {
    "identity_number": mask_identity_number,
    "credit_code": mask_credit_code,
    "identifier": mask_identifier,     # used by the schemas for identity numbers
    "name": mask_name,
    "address": mask_address,
    "phone": mask_phone,
    "date_to_year": mask_date_to_year,
    "year_only": mask_date_to_year,    # the schemas' name for date_to_year
    "redact": redact,
}.items()}


def mask(name: str) -> Mask:
    """The rule registered under `name`; MaskError names the known ones otherwise."""
    try:
        return MASKS[name]
    except KeyError:
        raise MaskError(f"unknown mask rule {name!r}; known: {', '.join(sorted(MASKS))} "
                        "(schemas/masks.py)") from None
