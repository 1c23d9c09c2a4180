"""A province, generated: its departments at three levels, the catalog that registers them, and
what each department subscribes to.

The province is Guangdong ("44"), because the division table the generator draws places from
(``schemas/divisions.csv``) knows two of its cities and twenty of its counties: enough for
departments at the province, city and county level, whose region filters (``region=4401..``,
``region=440106..``) select a city's or a county's share of the libraries. The catalog's own
departments are the province-level sources and the fields' authorities; every other
department is simulated — a function (民政, 住建 …) at a city or a county — registered in an
in-memory copy of the catalog (``Catalog.model_copy``) that is also written to a folder, since
every process of the bus (the processors, the subscribers) reads the catalog from
``GOVBUS_CATALOG_DIR``.

Subscriptions are drawn from `PROFILES`: realistic field sets per library, each with its
purpose, some of them life events (``events``), filtered to the department's own region.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from govbus.processors.governance.subscriptions import SubscriptionRequest
from govbus.producers.generate import places_in
from govbus.schemas import divisions
from govbus.simulate import model
from govbus.topics.catalog import Catalog, Names

PROVINCE = "44"
LEVEL_SHARES = (("province", 0.1), ("city", 0.3), ("county", 0.6))  # of the simulated departments
FUNCTIONS = (  # (id, 中文, English): the functions a city or county government has a bureau for
    ("civil_affairs", "民政局", "Civil Affairs"), ("health", "卫生健康局", "Health"),
    ("hr_social_security", "人力资源和社会保障局", "Human Resources and Social Security"),
    ("education", "教育局", "Education"), ("housing", "住房和城乡建设局", "Housing and Urban-Rural Development"),
    ("transport", "交通运输局", "Transport"), ("natural_resources", "自然资源局", "Natural Resources"),
    ("agriculture", "农业农村局", "Agriculture and Rural Affairs"), ("emergency", "应急管理局", "Emergency Management"),
    ("justice", "司法局", "Justice"), ("finance", "财政局", "Finance"), ("statistics", "统计局", "Statistics"),
    ("veterans", "退役军人事务局", "Veterans Affairs"), ("medical_insurance", "医疗保障局", "Medical Insurance"),
)


@dataclass(frozen=True)
class Profile:
    """One kind of subscription a department makes: fields and/or life events of a library,
    for a purpose. `regional`: the department's region filter applies (a library without a
    region field cannot be filtered by region)."""

    name: str
    library: str
    fields: tuple[str, ...]
    purpose: str
    events: tuple[str, ...] = ()
    weight: float = 1.0
    regional: bool = True


PROFILES = (
    Profile("identity", "population", ("citizen_id", "name", "sex", "date_of_birth", "household_region"),
            "data_verification", weight=3),
    Profile("address", "population", ("citizen_id", "name", "date_of_birth", "household_region", "household_address"),
            "work_reference", weight=2),
    Profile("marital", "population", ("citizen_id", "name", "marital_status", "marriage_registration_date"),
            "administrative_basis", weight=1.5),
    Profile("schooling", "population", ("citizen_id", "name", "education_level"), "administrative_basis"),
    Profile("deaths", "population", (), "administrative_basis", events=("death",), weight=1.5),
    Profile("moves", "population", (), "data_verification", events=("moved_out",)),
    Profile("marriages", "population", (), "administrative_basis", events=("marriage",), weight=0.5),
    Profile("entity", "legal_entity", ("credit_code", "name", "legal_form", "status", "region"), "data_verification",
            weight=2),
    Profile("representative", "legal_entity", ("credit_code", "name", "legal_representative", "registered_address",
                                               "registered_capital_fen", "region"), "work_reference"),
    Profile("tax_status", "legal_entity", ("credit_code", "name", "tax_registration_status"), "administrative_basis",
            weight=0.5),
    Profile("closures", "legal_entity", (), "administrative_basis", events=("deregistered",)),
    Profile("public_credit", "credit", ("record_id", "kind", "subject_name", "subject_credit_code", "decision_date",
                                        "content"), "administrative_basis", weight=1.5, regional=False),
    Profile("penalties", "credit", ("record_id", "kind", "subject_citizen_id", "penalty_amount_fen"),
            "administrative_basis", weight=0.5, regional=False),
    Profile("certificates", "certificate", ("certificate_number", "certificate_type", "holder_name", "status",
                                            "expiry_date", "region"), "data_verification", weight=2),
    Profile("certificate_files", "certificate", ("certificate_number", "certificate_type", "status", "file_digest"),
            "administrative_basis", weight=0.5),
    Profile("revocations", "certificate", (), "administrative_basis", events=("revoked",)),
)


@dataclass(frozen=True)
class Department:
    """A department of the province: its id, its names, its level and the region it serves."""

    id: str
    zh: str
    en: str
    level: str  # province | city | county
    region: str  # "44", a city's four digits or a county's six
    simulated: bool = True  # False for the catalog's own

    @property
    def region_filter(self) -> tuple[str, ...]:
        """Its subscriptions' filter: its own region, none for the province's departments."""
        return () if self.level == "province" else (f"region={self.region}..",)


@dataclass(frozen=True)
class Planned:
    """One planned subscription: the request its department makes, from which profile."""

    profile: Profile
    request: SubscriptionRequest


@dataclass(frozen=True)
class ProvincePlan:
    """Everything generated about the province before anything reaches the broker."""

    scale: float
    catalog: Catalog
    departments: tuple[Department, ...]
    subscriptions: tuple[Planned, ...]

    @property
    def simulated(self) -> tuple[Department, ...]:
        """The departments beyond the catalog's own."""
        return tuple(department for department in self.departments if department.simulated)

    def department(self, identifier: str) -> Department:
        return next(department for department in self.departments if department.id == identifier)


def plan(catalog: Catalog, scale: float, seed: int,
         per_department: int = model.SUBSCRIPTIONS_PER_DEPARTMENT) -> ProvincePlan:
    """The province at `scale`: departments, its catalog, `per_department` subscriptions of each
    (deterministic per seed)."""
    if not 1 <= per_department <= len(PROFILES):
        raise ValueError(f"a department makes 1 to {len(PROFILES)} subscriptions here, not {per_department}")
    rng = random.Random(seed)
    own = [Department(name, names.zh, names.en, "province", PROVINCE, simulated=False) for name, names in catalog.departments.items()]
    extra = simulated_departments(model.departments_at(scale, len(own)) - len(own), {d.id for d in own}, rng)
    departments = tuple(own + extra)
    widened = with_departments(catalog, extra)
    subscriptions = tuple(planned for department in departments
                          for planned in choose_subscriptions(department, rng, per_department))
    return ProvincePlan(scale, widened, departments, subscriptions)


def simulated_departments(count: int, taken: set[str], rng: random.Random) -> list[Department]:
    """`count` departments beyond the catalog's, at the province, city and county levels in
    `LEVEL_SHARES`, each a function of a region no other department of that function serves."""
    counties = sorted(place[0] for place in places_in(PROVINCE))
    regions = {"province": [PROVINCE], "city": sorted({county[:4] for county in counties}), "county": counties}
    found: list[Department] = []
    for index in range(count):
        level = _level(index, count)
        free = [(region, function) for region in regions[level] for function in FUNCTIONS
                if _identifier(function[0], level, region) not in taken]
        if not free:
            raise ValueError(f"the province's {len(regions[level])} {level}-level region(s) have a department of "
                             f"every function already: {count} simulated departments are too many (lower --scale)")
        region = rng.choice(sorted({region for region, _ in free}))
        function = rng.choice([function for where, function in free if where == region])
        found.append(_department(function, level, region))
        taken.add(found[-1].id)
    return found


def _level(index: int, count: int) -> str:
    """Levels in proportion (`LEVEL_SHARES`), the province's first."""
    bound = 0.0
    for level, share in LEVEL_SHARES:
        bound += share * count
        if index < round(bound):
            return level
    return LEVEL_SHARES[-1][0]


def _identifier(function: str, level: str, region: str) -> str:
    return function if level == "province" else f"{function}_{region}"


def _department(function: tuple[str, str, str], level: str, region: str) -> Department:
    identifier, zh, en = function
    place = divisions.name_of(region.ljust(6, "0")) or region
    return Department(_identifier(identifier, level, region), f"{place}{zh}", f"{en} of {place} ({region})",
                      level, region)


def with_departments(catalog: Catalog, departments: Iterable[Department]) -> Catalog:
    """`catalog` with `departments` registered beside its own (in memory)."""
    registered = {**catalog.departments, **{d.id: Names(zh=d.zh, en=d.en) for d in departments}}
    return catalog.model_copy(update={"departments": registered})


def choose_subscriptions(department: Department, rng: random.Random, count: int) -> list[Planned]:
    """`count` different profiles by weight, filtered to its region."""
    chosen: list[Profile] = []
    while len(chosen) < count:
        left = [profile for profile in PROFILES if profile not in chosen]
        chosen.append(rng.choices(left, weights=[profile.weight for profile in left])[0])
    return [Planned(profile, SubscriptionRequest(
        department=department.id, library=profile.library, fields=profile.fields, purpose=profile.purpose,
        events=profile.events, filters=department.region_filter if profile.regional else ()))
            for profile in chosen]


def write_catalog(catalog: Catalog, source: Path, target: Path) -> Path:
    """The catalog folder every process reads: `source`'s files, with ``departments.yaml``
    listing the province's departments."""
    target.mkdir(parents=True, exist_ok=True)
    for path in Path(source).glob("*.yaml"):
        if path.name != "departments.yaml":
            shutil.copyfile(path, target / path.name)
    registry = {"departments": {name: names.model_dump() for name, names in catalog.departments.items()},
                "purposes": {name: names.model_dump() for name, names in catalog.purposes.items()}}
    (target / "departments.yaml").write_text(yaml.safe_dump(registry, allow_unicode=True, sort_keys=False),
                                             encoding="utf-8")
    return target
