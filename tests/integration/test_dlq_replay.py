"""`govbus dlq list | replay` on the real secured broker, with the gate judging what comes back:
each dead letter is sent once however often replay runs; one still bad is dead-lettered again
with its reason, and the next run offers that new letter; a dry run sends and marks nothing."""

from __future__ import annotations

import json


from govbus.processors.gate import deadletters
from govbus.producers.generate import generate
from govbus.schemas.codec import default_codec
from govbus.topics.catalog import replay_marks_name

from kafka_helpers import cli, encoded_event, read_topic, send_raw, wait_for

LIBRARY = "population"


def fixed_dead_letter(bus, person: dict) -> None:
    """A dead letter whose cause has since been fixed: a valid event the gate of an earlier
    deployment refused (here written as that gate wrote it, with its headers), so that the
    gate running now accepts it on replay."""
    ingest = bus.names.ingest(LIBRARY, "public_security")
    key, value, headers = encoded_event(bus.settings, LIBRARY, "public_security", person)
    rejection = deadletters.Rejection("unknown_schema", "the writer schema was not deployed yet")
    send_raw(bus.settings, bus.names.dlq(LIBRARY), value, key,
             deadletters.dead_letter_headers(headers, rejection, "gate", ingest, 0, 0))


def reasons(letters) -> list[str]:
    return [deadletters.describe(list(letter.headers))["reason"] for letter in letters]


def test_a_replay_run_twice_sends_each_dead_letter_once_and_one_still_bad_is_dead_lettered_again(
        bus, start_processors) -> None:
    bus.apply_catalog()
    start_processors("gate")
    person = next(generate(LIBRARY, 1, seed=41, department="public_security"))
    civil_ingest = bus.names.ingest(LIBRARY, "civil_affairs")
    send_raw(bus.settings, civil_ingest, b"still not avro", headers=[("ce_id", b"bad-1")])
    wait_for(bus.settings, bus.names.dlq(LIBRARY), 1)
    fixed_dead_letter(bus, person)
    before = wait_for(bus.settings, bus.names.dlq(LIBRARY), 2)
    assert sorted(reasons(before)) == ["undecodable", "unknown_schema"]

    dry = cli(bus.settings, "dlq", "replay", LIBRARY, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.output.count("would replay") == 2 and "nothing sent" in dry.output
    assert read_topic(bus.settings, replay_marks_name(bus.names, LIBRARY)) == [], "a dry run marks nothing"

    first = cli(bus.settings, "dlq", "replay", LIBRARY, "--yes")
    assert first.exit_code == 0 and "Replayed 2 dead letter(s)." in first.output, first.output
    (shared,) = wait_for(bus.settings, bus.names.shared(LIBRARY), 1)
    assert default_codec().decode(shared.value)[1]["entity_id"] == person["citizen_id"], "the fixed one is applied"
    letters = wait_for(bus.settings, bus.names.dlq(LIBRARY), 3)
    (again,) = [m for m in letters if (m.partition, m.offset) not in {(b.partition, b.offset) for b in before}]
    assert again.value == b"still not avro" and reasons([again]) == ["undecodable"], "the bad one is not lost"
    assert deadletters.describe(list(again.headers))["topic"] == civil_ingest

    fixed_only = cli(bus.settings, "dlq", "replay", LIBRARY, "--reason", "unknown_schema", "--yes")
    assert fixed_only.exit_code == 0 and "No dead letters to replay." in fixed_only.output, fixed_only.output
    assert "1 chosen dead letter(s) were replayed before" in fixed_only.output

    pending = cli(bus.settings, "dlq", "list", LIBRARY)
    assert pending.exit_code == 0 and pending.output.splitlines()[-1].startswith("1 dead letter(s). 2 already replayed"), \
        pending.output
    second = cli(bus.settings, "dlq", "replay", LIBRARY, "--yes")
    assert "Replayed 1 dead letter(s)." in second.output, "only the new letter, not the two replayed before"
    assert sorted(reasons(wait_for(bus.settings, bus.names.dlq(LIBRARY), 4))) == [
        "undecodable", "undecodable", "undecodable", "unknown_schema"]

    marks = read_topic(bus.settings, replay_marks_name(bus.names, LIBRARY))
    assert len(marks) == 3 and len({mark.key for mark in marks}) == 3, "one mark per letter, none twice"
    assert {json.loads(mark.value)["to"] for mark in marks} == {civil_ingest, bus.names.ingest(LIBRARY, "public_security")}
    assert len(read_topic(bus.settings, bus.names.shared(LIBRARY))) == 1, "the fixed event was sent back once"
    everything = cli(bus.settings, "dlq", "list", LIBRARY, "--all")
    assert everything.output.count("(replayed)") == 3 and everything.output.splitlines()[-1] == "4 dead letter(s).", \
        everything.output


def test_replay_filters_by_source_department_and_time_and_refuses_a_time_without_offset(bus, start_processors) -> None:
    bus.apply_catalog()
    start_processors("gate")
    send_raw(bus.settings, bus.names.ingest(LIBRARY, "civil_affairs"), b"not avro either")
    wait_for(bus.settings, bus.names.dlq(LIBRARY), 1)

    other = cli(bus.settings, "dlq", "replay", LIBRARY, "-d", "public_security", "--dry-run")
    assert "No dead letters to replay." in other.output, other.output
    own = cli(bus.settings, "dlq", "replay", LIBRARY, "-d", "civil_affairs", "--dry-run")
    assert own.output.count("would replay") == 1, own.output
    later = cli(bus.settings, "dlq", "replay", LIBRARY, "--since", "2999-01-01T00:00:00+08:00", "--dry-run")
    assert "No dead letters to replay." in later.output, later.output
    naive = cli(bus.settings, "dlq", "replay", LIBRARY, "--since", "2026-12-04T09:00:00", "--dry-run")
    assert naive.exit_code != 0 and "has no UTC offset" in naive.output, naive.output
    assert read_topic(bus.settings, replay_marks_name(bus.names, LIBRARY)) == []
