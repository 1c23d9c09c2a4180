"""Realistic synthetic exports of source systems, for demos, load tests and tests.

`generate(library, count, seed)` streams flat records in the format of `records.py`:
valid check characters, real GB/T 2260 divisions, common Chinese names, dates that agree
with each other (a birth date inside the identity number, a marriage after adulthood, a
death after birth). The same seed gives the same stream. With `invalid_share`, that share
of records carries one fault of a kind the validator knows (see `faults.py`); nothing in
the record says which, so tests can compare the validator's verdict with the truth.

`department` keeps only the fields that department is the authority for, plus the key: the
export of that department's system. Without it, records hold every field and are meant to
be published by the library's primary department (the key field's authority).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

from govbus.schemas import divisions, rules
from govbus.schemas.registry import SchemaRegistry, default_registry

from .faults import FaultInjector

DEFAULT_START = date(2024, 6, 1)  # recorded_at of the first record, 09:00 China time
SURNAMES = tuple("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜"
                 "叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙") + (
    "欧阳", "司马", "诸葛", "上官")
GIVEN_CHARS = tuple("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国玲红文辉鹏飞宇浩然欣怡子轩"
                    "梓涵雨泽俊博思佳嘉晨阳婷雪琳颖慧志海林春燕")
BRAND_CHARS = tuple("恒达华盛鑫源宏远金泰瑞丰新锐腾飞博通嘉禾永安佳信和润")
STREETS = ("人民路", "解放路", "建设路", "中山路", "东风路", "和平路", "文化路", "胜利街", "新华街", "朝阳路")
INDUSTRIES = ("商贸", "科技", "建筑工程", "餐饮管理", "物流", "农业开发", "医药", "文化传媒")
SCOPES = ("日用百货销售", "软件开发；信息技术咨询服务", "房屋建筑工程施工", "餐饮服务",
          "普通货物道路运输", "蔬菜种植与销售", "药品零售", "广告设计、制作、发布")
CERTIFICATES = (  # type, holder, issuing department, years of validity (None: unlimited)
    ("营业执照", "organisation", "市场监督管理局", None),
    ("食品经营许可证", "organisation", "市场监督管理局", 5),
    ("道路运输经营许可证", "organisation", "交通运输局", 4),
    ("结婚证", "person", "民政局", None),
    ("出生医学证明", "person", "卫生健康委员会", None),
    ("机动车驾驶证", "person", "公安局交通警察支队", 6),
)
Place = tuple[str, str, str, str]  # county code, "province+prefecture" names, city, city short name


def _places() -> tuple[Place, ...]:
    places = []
    for code in divisions.county_codes():
        province = divisions.name_of(code[:2] + "0000") or ""
        prefecture = divisions.name_of(code[:4] + "00") or ""
        city = prefecture or province
        places.append((code, province + prefecture, city, city.removesuffix("市")))
    return tuple(places)


PLACES = _places()


class Faker:
    """Draws the parts of records from one seeded random stream, placed in `places`."""

    def __init__(self, seed: int, start: date, places: tuple[Place, ...] = PLACES) -> None:
        self.rng = random.Random(seed)
        self.start = start
        self.start_ordinal = start.toordinal()
        self.places = places

    def name(self) -> str:
        rng = self.rng
        given = rng.choice(GIVEN_CHARS) + (rng.choice(GIVEN_CHARS) if rng.random() < 0.7 else "")
        return rng.choice(SURNAMES) + given

    def day(self, first: date, last: date) -> date:
        return date.fromordinal(self.rng.randint(first.toordinal(), max(first, last).toordinal()))

    def days_before_start(self, most: int) -> date:
        return date.fromordinal(self.start_ordinal - self.rng.randrange(1, most))

    def place(self) -> Place:
        return self.rng.choice(self.places)

    def address(self, place: Place) -> str:
        county = divisions.name_of(place[0]) or ""
        return f"{place[1]}{county}{self.rng.choice(STREETS)}{self.rng.randrange(1, 400)}号"

    def digest(self) -> str:
        return f"{self.rng.getrandbits(256):064x}"

    def credit_code(self, region: str, authority: str = "9", entity_type: str = "1") -> str:
        rng = self.rng
        newer = authority == "9" and rng.random() < 0.5  # codes assigned since 2015 start MA
        body = ("MA" + "".join(rng.choices(rules.CREDIT_CHARSET, k=6)) if newer
                else f"{rng.randrange(10**8):08d}")
        return rules.make_credit_code(authority, entity_type, region, body)

    def company(self, place: Place) -> str:
        brand = self.rng.choice(BRAND_CHARS) + self.rng.choice(BRAND_CHARS)
        return f"{place[3]}{brand}{self.rng.choice(INDUSTRIES)}有限公司"

    def citizen(self, earliest: date = date(1930, 1, 1), latest: date = date(2020, 12, 31)) -> tuple[str, date]:
        birth = self.day(earliest, latest)
        return rules.make_citizen_id(self.place()[0], birth, self.rng.randrange(1000)), birth


def years_after(day: date, years: int) -> date:
    return day.replace(year=day.year + years, day=min(day.day, 28))


def make_population(fake: Faker, department: str | None) -> dict[str, Any]:
    rng, place = fake.rng, fake.place()
    birth = fake.day(date(1930, 1, 1), date(2020, 12, 31))
    citizen_id = rules.make_citizen_id(place[0], birth, rng.randrange(1000))
    adult = years_after(birth, 22) < fake.start
    marital = rng.choices(rules.MARITAL_STATUSES, (10, 75, 8, 7))[0] if adult else "unmarried"
    married_on = None if marital == "unmarried" else fake.day(years_after(birth, 22), min(
        years_after(birth, 40), fake.start - timedelta(days=1)))
    dies = department == "health" or (birth.year < 1950 and rng.random() < 0.05)
    return {
        "citizen_id": citizen_id, "name": fake.name(),
        "former_names": [fake.name()] if rng.random() < 0.02 else None,
        "sex": rules.citizen_id_sex(citizen_id), "date_of_birth": birth,
        "ethnicity": "汉族" if rng.random() < 0.91 else rng.choice(rules.ETHNICITIES[1:]),
        "household_region": place[0], "household_address": fake.address(place),
        "marital_status": marital, "marriage_registration_date": married_on,
        "date_of_death": fake.day(birth, fake.start - timedelta(days=1)) if dies else None,
        "education_level": rng.choice(rules.EDUCATION_LEVELS) if adult else "primary",
        "biometric_digest": fake.digest(),
    }


def make_legal_entity(fake: Faker, department: str | None) -> dict[str, Any]:
    rng, place = fake.rng, fake.place()
    kind = rng.choices(("1", "2", "3"), (85, 10, 5))[0]
    established = fake.day(date(1992, 1, 1), fake.start - timedelta(days=1))
    status = rng.choices(rules.ENTITY_STATUSES, (80, 5, 10, 4, 1))[0]
    closed = status in ("deregistered", "licence_revoked")
    return {
        "credit_code": fake.credit_code(place[0], "9", kind),
        "name": fake.company(place) if kind != "2" else f"{place[3]}{fake.name()}便民商店",
        "legal_form": {"1": "有限责任公司", "2": "个体工商户", "3": "农民专业合作社"}[kind],
        "legal_representative": fake.name(),
        "registered_capital_fen": rng.choice((3, 10, 50, 100, 500, 1000)) * 1_000_000,
        "establishment_date": established, "region": place[0],
        "registered_address": fake.address(place), "business_scope": rng.choice(SCOPES),
        "status": status,
        "deregistration_date": fake.day(established, fake.start - timedelta(days=1)) if closed else None,
        "tax_registration_status": "deregistered" if closed else rng.choices(
            rules.TAX_STATUSES[:3], (92, 3, 5))[0],
        "tax_audit_note": "纳税评估发现进项异常，待核实" if rng.random() < 0.05 else None,
    }


def make_credit(fake: Faker, department: str | None) -> dict[str, Any]:
    rng, place = fake.rng, fake.place()
    kind = rng.choices(rules.CREDIT_RECORD_KINDS, (50, 30, 10, 10))[0]
    decided = fake.days_before_start(3 * 365)
    person = rng.random() < 0.2
    citizen_id = fake.citizen()[0] if person else None
    penalty = kind == "administrative_penalty"
    return {
        "record_id": f"CR{place[0]}{decided.year}{rng.randrange(10**10):010d}",
        "kind": kind, "subject_name": fake.name() if person else fake.company(place),
        "subject_credit_code": None if person else fake.credit_code(place[0]),
        "subject_citizen_id": citizen_id,
        "deciding_authority": f"{place[2]}市场监督管理局",
        "decision_number": f"{place[3][:1]}市监{'罚' if penalty else '许'}〔{decided.year}〕{rng.randrange(1, 999)}号",
        "decision_date": decided, "valid_until": years_after(decided, rng.choice((1, 3))),
        "content": "未按规定公示年度报告" if penalty else "准予行政许可",
        "penalty_amount_fen": rng.randrange(1, 200) * 100_000 if penalty else None,
        "source_unit": f"{place[2]}市场监督管理局",
        "informant_identity": fake.name() if penalty and rng.random() < 0.3 else None,
    }


def make_certificate(fake: Faker, department: str | None) -> dict[str, Any]:
    rng, place = fake.rng, fake.place()
    kind, holder, issuer, years = rng.choice(CERTIFICATES)
    issued = fake.days_before_start(8 * 365)
    born = (issued - timedelta(days=60), issued) if kind == "出生医学证明" else (date(1940, 1, 1), date(2004, 1, 1))
    expiry = years_after(issued, years) if years else None
    status = "expired" if expiry and expiry < fake.start else "revoked" if rng.random() < 0.02 else "valid"
    person = holder == "person"
    return {
        "certificate_number": f"{place[0]}{issued.year}{rng.randrange(10**8):08d}",
        "certificate_type": kind, "holder_name": fake.name() if person else fake.company(place),
        "holder_citizen_id": fake.citizen(*born)[0] if person else None,
        "holder_credit_code": None if person else fake.credit_code(place[0]),
        "issuing_authority": f"{place[2]}{issuer}",
        "issuing_authority_code": fake.credit_code(place[0], "1", "1"),
        "issue_date": issued, "expiry_date": expiry, "status": status, "region": place[0],
        "file_digest": fake.digest(), "holder_photo_digest": fake.digest() if person else None,
    }


MAKERS: dict[str, Callable[[Faker, str | None], dict[str, Any]]] = {
    "population": make_population, "legal_entity": make_legal_entity,
    "credit": make_credit, "certificate": make_certificate,
}


def places_in(region: str | None) -> tuple[Place, ...]:
    """The counties whose GB/T 2260 code starts with `region` (every county for None): a
    province's records ("44") stay in that province. ValueError naming the region when the
    division table has no county there."""
    if region is None:
        return PLACES
    found = tuple(place for place in PLACES if place[0].startswith(region))
    if not found:
        raise ValueError(f"no county of schemas/divisions.csv lies in region {region!r}")
    return found


def generate(library: str, count: int, seed: int, invalid_share: float = 0.0,
             department: str | None = None, *, op: str = "upsert", start: date = DEFAULT_START,
             registry: SchemaRegistry | None = None, region: str | None = None) -> Iterator[dict[str, Any]]:
    """Stream `count` flat records of `library` (see the module docstring); with `region`, every
    place in them (households, seats, issuers) lies in that division (``places_in``)."""
    registry = registry or default_registry()
    schema = registry.latest(library)
    maker = MAKERS[library]
    publisher = department or schema.fields[schema.entity_key].authority
    keep = None
    if department is not None:
        keep = set(registry.authoritative_fields(library, department)) | {schema.entity_key}
    if op == "delete":  # a deletion names the entity and nothing else
        keep = {schema.entity_key}
    fake = Faker(seed, start, places_in(region))
    faults = FaultInjector(schema, publisher, fake.rng, start)
    first_recorded = datetime.combine(start, time(9), rules.CHINA_TIME)
    for index in range(count):
        data = maker(fake, department)
        flat: dict[str, Any] = {
            "op": op, "sequence": 1,
            "valid_from": fake.days_before_start(30).isoformat(),
            "recorded_at": (first_recorded + timedelta(seconds=index)).isoformat(),
        }
        for name, value in data.items():
            if keep is None or name in keep:
                flat[name] = value.isoformat() if isinstance(value, date) else value
        if invalid_share and fake.rng.random() < invalid_share:
            faults.inject(flat)
        yield flat
