"""Domain rules that schema fields name in their `"rule"` attribute (the masks they name are
`masks.MASKS`, the one table the registry and the router share).

A rule is a function `value -> None | message`; it is only called on non-null values that
already have the field's Avro type. Enum-like values are plain strings checked here rather
than Avro enums: adding a marital status or a certificate status is then a code change in
one place, not a breaking schema change that every reader must pick up first.

Identifier rules follow the national standards exactly:
- citizen identity number, GB 11643-1999: 6-digit division, 8-digit birth date, 3-digit
  sequence (odd = male), ISO 7064 MOD 11-2 check character (0-9 or X);
- unified social credit code, GB 32100-2015: registration authority, entity type, 6-digit
  division, 9-character organisation code (GB 11714, MOD 11 check), MOD 31 check character.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

from . import divisions

CHINA_TIME = timezone(timedelta(hours=8), "CST")

Rule = Callable[[Any], "str | None"]

# --- GB 11643-1999 citizen identity number -------------------------------------------
_CITIZEN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CITIZEN_CHECK = "10X98765432"  # indexed by the weighted sum mod 11 (ISO 7064 MOD 11-2)
_DIGITS = frozenset("0123456789")


def _weighted_tables(values: dict[str, int], weights: tuple[int, ...]) -> tuple[dict[str, int], ...]:
    """Per position, character → value × weight: a check sum becomes dictionary look-ups."""
    return tuple({char: value * weight for char, value in values.items()} for weight in weights)


_CITIZEN_TABLES = _weighted_tables({d: int(d) for d in "0123456789"}, _CITIZEN_WEIGHTS)


def citizen_id_check_char(body: str) -> str:
    """The check character for the first 17 digits of an identity number."""
    return _CITIZEN_CHECK[sum(map(dict.__getitem__, _CITIZEN_TABLES, body)) % 11]


def citizen_id_birth_date(number: str) -> date | None:
    """The birth date embedded in an identity number, or None when it is not a date."""
    try:
        return date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return None


def citizen_id_sex(number: str) -> str:
    """`male` when the sequence (17th digit) is odd, else `female`."""
    return "male" if int(number[16]) % 2 else "female"


def make_citizen_id(region: str, birth: date, sequence: int) -> str:
    """A valid identity number from its parts (sequence 0..999)."""
    body = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return body + citizen_id_check_char(body)


def check_citizen_id(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) != 18:
        return "a citizen identity number has 18 characters"
    body, check = value[:17], value[17]
    if not _DIGITS.issuperset(body) or not (check in _DIGITS or check == "X"):
        return "17 digits then a digit or upper-case X expected"
    if body[:6] not in divisions.known_codes():
        return f"region {body[:6]} is not a known GB/T 2260 division"
    birth = citizen_id_birth_date(value)
    if birth is None or birth.year < 1850:
        return f"birth date {body[6:14]} is not a valid date"
    if birth > today():
        return f"birth date {birth} is in the future"
    if citizen_id_check_char(body) != check:
        return "check character does not match (ISO 7064 MOD 11-2)"
    return None


# --- GB 32100-2015 unified social credit code ----------------------------------------
CREDIT_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, Z, S, V
_CREDIT_VALUE = {char: index for index, char in enumerate(CREDIT_CHARSET)}
_CREDIT_WEIGHTS = tuple(pow(3, index, 31) for index in range(17))  # 1, 3, 9, 27, 19, ...
_CREDIT_TABLES = _weighted_tables(_CREDIT_VALUE, _CREDIT_WEIGHTS)
_ORGANISATION_TABLES = _weighted_tables(  # GB 11714: digits, then A=10 ... Z=35
    {char: int(char, 36) for char in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}, (3, 7, 9, 10, 5, 8, 4, 2))
# Registration authority → entity types. 1 机构编制 (1 机关, 2 事业单位, 3 群众团体, 9 其他),
# 5 民政 (1 社会团体, 2 民办非企业单位, 3 基金会, 9 其他), 9 市场监管 (1 企业, 2 个体工商户,
# 3 农民专业合作社), Y 其他. Other authorities (2-8, A, N) are checked for the authority only.
REGISTRATION_AUTHORITIES: dict[str, str] = {
    "1": "1239", "5": "1239", "9": "123", "Y": "1",
    **{code: "123456789" for code in "2345678AN"},
}


def credit_code_check_char(body: str) -> str:
    """The 18th character for the first 17 characters of a unified social credit code."""
    total = sum(map(dict.__getitem__, _CREDIT_TABLES, body))
    return CREDIT_CHARSET[(31 - total % 31) % 31]


def organisation_code_check_char(body: str) -> str:
    """GB 11714-1997 check character for an 8-character organisation code body."""
    total = sum(map(dict.__getitem__, _ORGANISATION_TABLES, body))
    remainder = 11 - total % 11
    return "X" if remainder == 10 else "0" if remainder == 11 else str(remainder)


def make_credit_code(authority: str, entity_type: str, region: str, organisation: str) -> str:
    """A valid credit code from its parts; `organisation` is the 8-character body."""
    body = authority + entity_type + region + organisation
    body += organisation_code_check_char(organisation)
    return body + credit_code_check_char(body)


def check_credit_code(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) != 18:
        return "a unified social credit code has 18 characters"
    if any(char not in _CREDIT_VALUE for char in value):
        return "only digits and upper-case letters except I, O, Z, S, V are allowed"
    types = REGISTRATION_AUTHORITIES.get(value[0])
    if types is None:
        return f"registration authority code {value[0]} is not assigned"
    if value[1] not in types:
        return f"entity type {value[1]} is not defined for registration authority {value[0]}"
    if value[2:8] not in divisions.known_codes():
        return f"region {value[2:8]} is not a known GB/T 2260 division"
    if organisation_code_check_char(value[8:16]) != value[16]:
        return "organisation code check character does not match (GB 11714)"
    if credit_code_check_char(value[:17]) != value[17]:
        return "check character does not match (GB 32100 MOD 31)"
    return None


# --- enum-like values -------------------------------------------------------------------
MARITAL_STATUSES = ("unmarried", "married", "divorced", "widowed")  # 未婚 已婚 离婚 丧偶
SEXES = ("male", "female")
EDUCATION_LEVELS = ("none", "primary", "junior_secondary", "senior_secondary",
                    "vocational_secondary", "associate", "bachelor", "master", "doctorate")
# 存续, 在业, 注销, 吊销, 迁出
ENTITY_STATUSES = ("in_existence", "in_business", "deregistered", "licence_revoked", "moved_out")
TAX_STATUSES = ("normal", "suspended", "abnormal", "deregistered")  # 正常 停业 非正常 注销
CERTIFICATE_STATUSES = ("valid", "revoked", "expired")
# 双公示 (licences and penalties) and 红黑名单 (honour and dishonesty lists)
CREDIT_RECORD_KINDS = ("administrative_licence", "administrative_penalty",
                       "honour_list", "dishonesty_list")
ETHNICITIES = tuple(
    "汉族 蒙古族 回族 藏族 维吾尔族 苗族 彝族 壮族 布依族 朝鲜族 满族 侗族 瑶族 白族 土家族 "
    "哈尼族 哈萨克族 傣族 黎族 傈僳族 佤族 畲族 高山族 拉祜族 水族 东乡族 纳西族 景颇族 "
    "柯尔克孜族 土族 达斡尔族 仫佬族 羌族 布朗族 撒拉族 毛南族 仡佬族 锡伯族 阿昌族 普米族 "
    "塔吉克族 怒族 乌孜别克族 俄罗斯族 鄂温克族 德昂族 保安族 裕固族 京族 塔塔尔族 独龙族 "
    "鄂伦春族 赫哲族 门巴族 珞巴族 基诺族".split()
)


def one_of(kind: str, allowed: tuple[str, ...]) -> Rule:
    """A rule accepting exactly the listed values."""
    accepted = frozenset(allowed)
    message = f"not a known {kind}; expected one of: {', '.join(allowed)}"

    def check(value: Any) -> str | None:
        return None if value in accepted else message

    return check


# --- other rules ------------------------------------------------------------------------
_HEX = frozenset("0123456789abcdef")


_today: tuple[float, date] = (0.0, date.min)  # (until when, in seconds since the epoch; the date)


def today() -> date:
    """Today's date in China Standard Time, where the facts happen. Worked out once a day, until
    the next midnight there: validation asks for it twice per event (dates not in the future)."""
    global _today
    now = time.time()
    until, day = _today
    if now < until:
        return day
    day = datetime.fromtimestamp(now, CHINA_TIME).date()
    _today = (datetime.combine(day + timedelta(days=1), datetime.min.time(), CHINA_TIME).timestamp(), day)
    return day


def check_division_code(value: Any) -> str | None:
    if value in divisions.current_codes():
        return None
    if value in divisions.known_codes():
        return f"division {value} ({divisions.name_of(value)}) has been abolished"
    return f"{value!r} is not a known GB/T 2260 division code"


def check_sha256_hex(value: Any) -> str | None:
    if isinstance(value, str) and len(value) == 64 and _HEX.issuperset(value):
        return None
    return "a SHA-256 digest is 64 lower-case hexadecimal characters"


def check_not_in_future(value: Any) -> str | None:
    if isinstance(value, datetime):
        if value > datetime.now(timezone.utc) + timedelta(minutes=5):
            return f"{value.isoformat()} is in the future"
        return None
    return f"{value} is in the future" if value > today() else None


def check_non_negative(value: Any) -> str | None:
    return "must not be negative" if value < 0 else None


RULES: dict[str, Rule] = {
    "citizen_id": check_citizen_id,
    "credit_code": check_credit_code,
    "division_code": check_division_code,
    "sha256_hex": check_sha256_hex,
    "not_in_future": check_not_in_future,
    "non_negative": check_non_negative,
    "sex": one_of("sex", SEXES),
    "ethnicity": one_of("ethnic group (GB 3304)", ETHNICITIES),
    "marital_status": one_of("marital status", MARITAL_STATUSES),
    "education_level": one_of("education level", EDUCATION_LEVELS),
    "entity_status": one_of("entity status", ENTITY_STATUSES),
    "tax_status": one_of("tax registration status", TAX_STATUSES),
    "certificate_status": one_of("certificate status", CERTIFICATE_STATUSES),
    "credit_record_kind": one_of("credit record kind", CREDIT_RECORD_KINDS),
}


# --- checks across fields (named by a data record's "cross_checks" attribute) -----------
Finding = tuple[str, Any, str]  # field, value, message
CrossCheck = Callable[[Mapping[str, Any]], list[Finding]]


def citizen_id_consistency(data: Mapping[str, Any]) -> list[Finding]:
    """Birth date and sex, when set, must agree with the identity number (GB 11643).
    `data` holds only values that passed their own rules (the validator's `checked`)."""
    number = data.get("citizen_id")
    if number is None:
        return []
    findings: list[Finding] = []
    birth = data.get("date_of_birth")
    if isinstance(birth, date) and birth != citizen_id_birth_date(number):
        findings.append(("date_of_birth", birth, "differs from the birth date in citizen_id"))
    sex = data.get("sex")
    if sex in SEXES and sex != citizen_id_sex(number):
        findings.append(("sex", sex, "differs from the sex encoded in citizen_id"))
    return findings


CROSS_CHECKS: dict[str, CrossCheck] = {"citizen_id_consistency": citizen_id_consistency}
