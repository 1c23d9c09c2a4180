"""The topic catalog model: the shipped files are valid, and bad files are refused clearly."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from govbus.settings import PROJECT_ROOT
from govbus.topics.apply import fit_to_cluster
from govbus.topics.catalog import CatalogError, load_catalog, parse_duration
from govbus.topics.names import TopicNames

CATALOG = PROJECT_ROOT / "topics"


@pytest.fixture
def catalog_copy(tmp_path: Path) -> Path:
    for path in CATALOG.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def test_shipped_catalog_has_the_four_base_libraries_and_the_departments() -> None:
    catalog = load_catalog(CATALOG)
    assert set(catalog.libraries) == {"population", "legal_entity", "credit", "certificate"}
    for department in ("public_security", "civil_affairs", "market_regulation", "development_reform",
                       "health", "hr_social_security", "data_bureau"):
        assert department in catalog.departments
    assert catalog.departments["civil_affairs"].zh == "民政"


def test_every_source_department_gets_its_own_ingest_topic() -> None:
    specs = {spec.name: spec for spec in load_catalog(CATALOG).topic_specs(TopicNames("p."))}
    assert "p.ingest.population.public_security" in specs
    assert "p.ingest.population.civil_affairs" in specs
    assert specs["p.state.population"].config["cleanup.policy"] == "compact"
    assert specs["p.control.subscriptions"].config["cleanup.policy"] == "compact"
    assert specs["p.shared.population"].partitions == 6
    assert "p.audit.deliveries" in specs and "p.metrics.freshness" in specs


def test_a_new_library_is_one_file_and_no_code(catalog_copy: Path) -> None:
    (catalog_copy / "geospatial.yaml").write_text(
        "library: geospatial\nname: {zh: 自然资源和空间地理, en: Geospatial}\nowner: data_bureau\n"
        "partitions: 2\nreplication_factor: 1\n"
        "freshness: {max_source_lateness: 1d, max_delivery_latency: 10s}\n"
        "sources: {data_bureau: {cadence: 1h}}\n"
    )
    catalog = load_catalog(catalog_copy)
    names = {spec.name for spec in catalog.topic_specs(TopicNames())}
    assert {"ingest.geospatial.data_bureau", "shared.geospatial", "state.geospatial", "dlq.geospatial"} <= names


def test_bad_field_value_is_refused_with_file_and_field(catalog_copy: Path) -> None:
    path = catalog_copy / "credit.yaml"
    path.write_text(path.read_text().replace("partitions: 3", "partitions: lots"))
    with pytest.raises(CatalogError) as refused:
        load_catalog(catalog_copy)
    assert "credit.yaml" in str(refused.value)
    assert "partitions" in str(refused.value)


def test_unknown_field_is_refused(catalog_copy: Path) -> None:
    path = catalog_copy / "credit.yaml"
    path.write_text(path.read_text() + "retension: 3d\n")
    with pytest.raises(CatalogError, match=r"credit\.yaml: retension: Extra inputs"):
        load_catalog(catalog_copy)


def test_unknown_source_department_is_refused(catalog_copy: Path) -> None:
    path = catalog_copy / "certificate.yaml"
    path.write_text(path.read_text() + "  police_dept: {cadence: 1h}\n")
    with pytest.raises(CatalogError, match=r"certificate\.yaml: sources: unknown department 'police_dept'"):
        load_catalog(catalog_copy)


def test_library_name_must_match_file_name(catalog_copy: Path) -> None:
    (catalog_copy / "credit.yaml").rename(catalog_copy / "creditx.yaml")
    with pytest.raises(CatalogError, match="must match the file name"):
        load_catalog(catalog_copy)


def test_bad_duration_says_what_a_duration_looks_like(catalog_copy: Path) -> None:
    path = catalog_copy / "population.yaml"
    path.write_text(path.read_text().replace("cadence: 10m", "cadence: ten minutes"))
    with pytest.raises(CatalogError, match=r"population\.yaml: sources\.public_security\.cadence: .*like 500ms"):
        load_catalog(catalog_copy)


def test_invalid_yaml_is_refused_with_its_file(catalog_copy: Path) -> None:
    (catalog_copy / "bus.yaml").write_text("library_topics: [unclosed\n")
    with pytest.raises(CatalogError, match=r"bus\.yaml: not valid YAML"):
        load_catalog(catalog_copy)


def test_owner_must_be_a_source(catalog_copy: Path) -> None:
    path = catalog_copy / "credit.yaml"
    path.write_text(path.read_text().replace("owner: development_reform", "owner: tax"))
    with pytest.raises(CatalogError, match="owner 'tax' must also be listed under sources"):
        load_catalog(catalog_copy)


@pytest.mark.parametrize("text, seconds", [("500ms", 0.5), ("5s", 5), ("10m", 600), ("24h", 86400), ("7d", 604800), (30, 30)])
def test_durations_parse(text: object, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_replication_is_capped_to_the_brokers_and_min_isr_follows() -> None:
    specs = load_catalog(CATALOG).topic_specs(TopicNames())
    one = fit_to_cluster(specs, brokers=1, min_insync_replicas=2)
    three = fit_to_cluster(specs, brokers=3, min_insync_replicas=2)
    assert {spec.replication_factor for spec in one} == {1}
    assert {spec.config["min.insync.replicas"] for spec in one} == {"1"}
    assert {spec.replication_factor for spec in three} == {3}
    assert {spec.config["min.insync.replicas"] for spec in three} == {"2"}


def test_dead_letters_are_kept_90_days_by_default_and_their_replay_marks_longer() -> None:
    specs = {spec.name: spec for spec in fit_to_cluster(load_catalog(CATALOG).topic_specs(TopicNames()), 1, 2)}
    ninety_days = str(90 * 86400 * 1000)
    assert {specs[f"dlq.{library}"].config["retention.ms"] for library in ("population", "credit")} == {ninety_days}
    marks = int(specs["dlq.population.replayed"].config["retention.ms"])
    assert marks > int(ninety_days), "a mark gone before its dead letter would let the letter be sent again"


def test_a_library_file_sets_its_own_dead_letter_retention_and_it_reaches_the_dlq_topic(catalog_copy: Path) -> None:
    path = catalog_copy / "credit.yaml"
    path.write_text(path.read_text() + "dead_letters: {retention: 30d}\n")
    (catalog_copy / "bus.yaml").write_text((catalog_copy / "bus.yaml").read_text().replace(
        "  retention: 90d", "  retention: forever"))
    specs = {spec.name: spec for spec in load_catalog(catalog_copy).topic_specs(TopicNames("p."))}
    assert specs["p.dlq.credit"].config["retention.ms"] == str(30 * 86400 * 1000)
    assert specs["p.dlq.population"].config["retention.ms"] == "-1"
    assert specs["p.dlq.population.replayed"].config["retention.ms"] == "-1"


def test_dead_letter_retention_has_one_home_and_retention_ms_in_the_dlq_config_is_refused(catalog_copy: Path) -> None:
    path = catalog_copy / "credit.yaml"
    path.write_text(path.read_text() + "topics: {dlq: {config: {retention.ms: -1}}}\n")
    with pytest.raises(CatalogError, match=r"credit\.yaml: .*dead_letters: \{retention"):
        load_catalog(catalog_copy)
