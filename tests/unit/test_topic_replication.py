"""`topics apply` and replication: a topic left with fewer replicas than the catalog wants is
drifted and reassigned, and min.insync.replicas is never raised above its in-sync replicas.
The planning is pure; the broker's answers are given as Kafka's admin client returns them."""

from __future__ import annotations

from govbus.topics import apply as topic_apply
from govbus.topics.catalog import TopicSpec

SPEC = TopicSpec(name="shared.population", partitions=3, replication_factor=3,
                 config={"retention.ms": "-1", "min.insync.replicas": "2"})


def described(replicas: list[list[int]], in_sync: list[list[int]] | None = None) -> dict:
    """A topic as `describe_topics` gives it."""
    return {"name": SPEC.name, "partitions": [
        {"partition_index": index, "replica_nodes": nodes, "isr_nodes": (in_sync or replicas)[index]}
        for index, nodes in enumerate(replicas)]}


class AnsweringAdmin:
    """Answers `describe_topics` with a fixed description (the guard's one question)."""

    def __init__(self, description: dict) -> None:
        self.description = description

    def describe_topics(self, topics: list[str]) -> list[dict]:
        return [self.description]


def test_a_topic_kept_at_one_replica_after_the_cluster_grew_is_drifted_and_planned_onto_other_brokers() -> None:
    comparison = topic_apply._compare_one(SPEC, described([[1], [2], [3]]), {"retention.ms": "-1"}, [1, 2, 3])
    assert comparison.state == "drifted" and comparison.replication == 1
    assert comparison.reassignment == {0: [1, 2, 3], 1: [2, 3, 1], 2: [3, 1, 2]}, "current replicas first, leader kept"
    assert "replication 1 → 3 (reassigning 3 partition(s))" in comparison.describe()
    assert "min.insync.replicas default → 2" in comparison.describe()


def test_a_topic_with_its_replicas_and_settings_is_in_sync() -> None:
    current = {"retention.ms": "-1", "min.insync.replicas": "2"}
    comparison = topic_apply._compare_one(SPEC, described([[1, 2, 3], [2, 3, 1], [3, 1, 2]]), current, [1, 2, 3])
    assert (comparison.state, comparison.reassignment) == ("in sync", {})


def test_only_the_missing_replicas_are_added_and_never_beyond_the_brokers() -> None:
    assert topic_apply.plan_reassignment({0: [2, 1], 1: [1, 2, 3]}, 3, [1, 2, 3]) == {0: [2, 1, 3]}
    assert topic_apply.plan_reassignment({0: [1]}, 3, [1]) == {}, "nowhere to put them: nothing planned"


def test_min_insync_replicas_is_not_raised_above_the_in_sync_replicas() -> None:
    comparison = topic_apply._compare_one(SPEC, described([[1], [2], [3]]), {"retention.ms": "-1"}, [1, 2, 3])
    kept, refused = topic_apply._guard_min_insync(AnsweringAdmin(described([[1], [2], [3]])), [comparison])
    assert refused == ["refused to raise shared.population min.insync.replicas to 2: it has 1 in-sync replica(s); "
                       "every acks=all write would fail (raise its replication first)"]
    assert "min.insync.replicas" not in kept[0].config_changes and kept[0].reassignment == comparison.reassignment


def test_min_insync_replicas_is_raised_once_the_new_replicas_are_in_sync() -> None:
    comparison = topic_apply._compare_one(SPEC, described([[1], [2], [3]]), {"retention.ms": "-1"}, [1, 2, 3])
    grown = described([[1, 2, 3], [2, 3, 1], [3, 1, 2]])
    kept, refused = topic_apply._guard_min_insync(AnsweringAdmin(grown), [comparison])
    assert refused == [] and kept[0].config_changes == {"min.insync.replicas": (None, "2")}
