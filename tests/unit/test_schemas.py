"""The schema files, the registry that loads them and the compatibility checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import avro.schema
import pytest

from govbus.schemas.compatibility import check_all
from govbus.schemas.registry import SCHEMA_DIRECTORY, SchemaError, SchemaRegistry, default_registry

LIBRARIES = {"population": "citizen_id", "legal_entity": "credit_code",
             "credit": "record_id", "certificate": "certificate_number"}
DEPARTMENTS = {"public_security", "civil_affairs", "market_regulation", "development_reform",
               "health", "hr_social_security", "data_bureau", "education", "tax"}


@pytest.fixture
def schema_copy(tmp_path: Path) -> Path:
    """A writable copy of the packaged schemas, to break on purpose."""
    shutil.copy(SCHEMA_DIRECTORY / "envelope.avsc", tmp_path)
    for library in LIBRARIES:
        shutil.copytree(SCHEMA_DIRECTORY / library, tmp_path / library)
    return tmp_path


def edit_field(directory: Path, library: str, version: int, field: str, **changes: object) -> Path:
    path = directory / library / f"v{version}.avsc"
    schema = json.loads(path.read_text("utf-8"))
    for entry in schema["fields"][0]["type"]["fields"]:
        if entry["name"] == field:
            entry.update(changes)
            for key in [k for k, v in changes.items() if v is None]:
                del entry[key]
    path.write_text(json.dumps(schema, ensure_ascii=False), "utf-8")
    return path


def test_registry_holds_the_four_libraries_with_their_keys() -> None:
    registry = default_registry()
    assert set(registry.libraries()) == set(LIBRARIES)
    for library, key in LIBRARIES.items():
        assert registry.entity_key(library) == key


def test_population_has_a_second_version_that_adds_one_optional_field() -> None:
    registry = default_registry()
    added = set(registry.policy("population", 2)) - set(registry.policy("population", 1))
    assert registry.versions("population") == (1, 2) and added == {"residence_region"}


def test_every_expanded_schema_is_parsed_by_the_apache_avro_package() -> None:
    registry = default_registry()
    for library in registry.libraries():
        for version in registry.versions(library):
            parsed = avro.schema.parse(json.dumps(registry.get(library, version).schema))
            assert [f.name for f in parsed.fields][:2] == ["event_id", "entity_id"]


def test_fingerprint_is_crc_64_avro_in_little_endian_order() -> None:
    # The Avro specification's test vector: "int" has fingerprint 8247732601305521295 (Java long).
    assert avro.schema._crc_64_fingerprint(b'"int"') == (8247732601305521295).to_bytes(8, "little")
    for library in default_registry().libraries():
        version = default_registry().latest(library)
        assert avro.schema._crc_64_fingerprint(version.canonical.encode()) == version.fingerprint


def test_every_library_has_a_field_that_is_never_shared() -> None:
    for library in LIBRARIES:
        sharing = {p.sharing for p in default_registry().policy(library).values()}
        assert "not_shared" in sharing


def test_every_authority_is_a_known_department() -> None:
    SchemaRegistry(known_departments=DEPARTMENTS)


def test_population_authorities_follow_one_number_one_source() -> None:
    registry = default_registry()
    assert registry.authoritative_fields("population", "civil_affairs") == (
        "marital_status", "marriage_registration_date")
    assert registry.authoritative_fields("population", "health") == ("date_of_death",)
    assert registry.authoritative_fields("population", "education") == ("education_level",)
    assert {"citizen_id", "name", "sex", "date_of_birth", "ethnicity", "household_region",
            "household_address", "former_names"} <= set(
        registry.authoritative_fields("population", "public_security"))


def test_field_policy_tells_which_purposes_see_a_masked_value() -> None:
    policy = default_registry().policy("population")
    assert policy["citizen_id"].mask_for_purpose("work_reference") == "identifier"
    assert policy["citizen_id"].mask_for_purpose("administrative_basis") is None
    subject = default_registry().policy("credit")["subject_citizen_id"]
    assert subject.mask_all and subject.mask_for_purpose("administrative_basis") == "identifier"


def test_by_fingerprint_finds_each_version_and_nothing_else() -> None:
    registry = default_registry()
    version = registry.get("population", 1)
    assert registry.by_fingerprint(version.fingerprint) is version
    assert registry.by_fingerprint(b"\x00" * 8) is None


def test_asking_for_an_unknown_version_or_library_names_what_exists() -> None:
    with pytest.raises(KeyError, match="known"):
        default_registry().get("population", 9)
    with pytest.raises(KeyError, match="unknown library"):
        default_registry().latest("weather")


def test_field_without_sharing_class_is_refused_naming_file_and_field(schema_copy: Path) -> None:
    path = edit_field(schema_copy, "credit", 1, "content", sharing=None)
    with pytest.raises(SchemaError, match=f"{path}: field content: sharing None"):
        SchemaRegistry(schema_copy)


def test_unknown_sharing_class_is_refused(schema_copy: Path) -> None:
    edit_field(schema_copy, "credit", 1, "content", sharing="public")
    with pytest.raises(SchemaError, match="field content: sharing 'public'"):
        SchemaRegistry(schema_copy)


def test_unknown_rule_or_mask_is_refused(schema_copy: Path) -> None:
    edit_field(schema_copy, "population", 1, "name", rule="chinese_name")
    with pytest.raises(SchemaError, match="field name: rule 'chinese_name'"):
        SchemaRegistry(schema_copy)


def test_unknown_authority_is_refused_only_when_departments_are_given(schema_copy: Path) -> None:
    edit_field(schema_copy, "credit", 1, "content", authority="weather_bureau")
    SchemaRegistry(schema_copy)
    with pytest.raises(SchemaError, match="authority 'weather_bureau' is not a known department"):
        SchemaRegistry(schema_copy, known_departments=DEPARTMENTS)


def test_data_field_that_is_not_optional_is_refused(schema_copy: Path) -> None:
    edit_field(schema_copy, "credit", 1, "content", type="string", default=None)
    with pytest.raises(SchemaError, match=r'\["null", T\]'):
        SchemaRegistry(schema_copy)


def test_packaged_versions_are_compatible_both_ways() -> None:
    assert check_all() == []


def test_a_version_incompatible_with_its_predecessor_is_refused_at_load_naming_the_field(schema_copy: Path) -> None:
    edit_field(schema_copy, "population", 2, "household_address", type=["null", "long"])
    with pytest.raises(SchemaError) as refused:
        SchemaRegistry(schema_copy)
    problems = str(refused.value).splitlines()
    assert len(problems) == 2  # v2 cannot read v1, and v1 cannot read v2
    assert all("field data.household_address" in problem for problem in problems)


FLIP = {"change": "sharing", "from": "not_shared", "to": "unconditional", "by": "data_bureau",
        "note": "catalogue revision 2026-12, item 14"}


def test_a_version_that_flips_a_fields_sharing_class_is_refused_with_the_field_named(schema_copy: Path) -> None:
    path = edit_field(schema_copy, "population", 2, "biometric_digest", sharing="unconditional")
    with pytest.raises(SchemaError, match=f"{path}: field biometric_digest: sharing changes from \"not_shared\" in v1 "
                                          "to \"unconditional\" in v2 without a reviewed marker"):
        SchemaRegistry(schema_copy)


def test_a_reviewed_marker_naming_the_exact_change_lets_it_load(schema_copy: Path) -> None:
    edit_field(schema_copy, "population", 2, "biometric_digest", sharing="unconditional", reviewed_changes=[FLIP])
    assert SchemaRegistry(schema_copy).policy("population")["biometric_digest"].sharing == "unconditional"
    edit_field(schema_copy, "population", 2, "biometric_digest", reviewed_changes=[{**FLIP, "from": "conditional"}])
    with pytest.raises(SchemaError, match="field biometric_digest: sharing changes"):
        SchemaRegistry(schema_copy)  # a marker for another change does not cover this one


def test_changing_an_authority_or_a_mask_needs_a_reviewed_marker_too(schema_copy: Path) -> None:
    edit_field(schema_copy, "population", 2, "marital_status", authority="public_security")
    edit_field(schema_copy, "population", 2, "name", mask_for="all")
    with pytest.raises(SchemaError) as refused:
        SchemaRegistry(schema_copy)
    problems = str(refused.value).splitlines()
    assert len(problems) == 2
    assert "field marital_status: authority changes from \"civil_affairs\" in v1 to \"public_security\"" in problems[1]
    assert ('field name: mask changes from {"mask": "name", "mask_for": ["work_reference"]} in v1 to '
            '{"mask": "name", "mask_for": "all"} in v2') in problems[0]


def test_a_malformed_reviewed_marker_is_refused(schema_copy: Path) -> None:
    edit_field(schema_copy, "population", 2, "biometric_digest", reviewed_changes=[{**FLIP, "by": ""}])
    with pytest.raises(SchemaError, match='field biometric_digest: reviewed_changes: "by"'):
        SchemaRegistry(schema_copy)


def test_schemas_check_says_which_field_changed_and_why(schema_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from govbus.schemas import commands

    edit_field(schema_copy, "population", 2, "biometric_digest", sharing="unconditional")
    monkeypatch.setattr(commands, "default_registry", lambda: SchemaRegistry(schema_copy))
    outcome = CliRunner().invoke(commands.schemas, ["check"])
    assert outcome.exit_code == 1
    assert "field biometric_digest: sharing changes from \"not_shared\" in v1 to \"unconditional\"" in outcome.output
    assert '"reviewed_changes": [{"change": "sharing", "from": "not_shared", "to": "unconditional"' in outcome.output
