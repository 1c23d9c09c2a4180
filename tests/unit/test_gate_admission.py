"""The gate admits an event only on what it verified itself; anything else is one dead letter.

Each finding of "the gate trusts nothing the producer chose" is checked on `GateLogic`
directly — a null value, the key, the partition, heartbeats, an oversize golden record,
hostile headers — and then a fuzz run feeds it thousands of generated bad inputs mixed with
good ones: every input yields accepted outputs or exactly one dead letter, never an exception.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from govbus.processors.gate import deadletters
from govbus.processors.gate.logic import GateLogic, Step, key_partition
from govbus.processors.runtime.output import Output
from govbus.producers.generate import generate
from govbus.producers.records import to_event
from govbus.schemas.codec import default_codec
from govbus.schemas.framing import (HEARTBEAT_TYPE, PUBLISHED_AT, Headers, cloudevent_headers, entity_key, header_map,
                                    heartbeat_headers, message_size, source_urn)
from govbus.settings import get_settings
from govbus.topics.catalog import Catalog
from govbus.topics.names import TopicNames

NAMES = TopicNames("u.")
LIBRARY = "population"
PARTITIONS = 6
SECRET = get_settings().key_secret.encode()  # what the gate uses when it is given no secret
# librdkafka's message.max.bytes default: the gate's producer refuses a bigger message (key,
# value, headers and some framing), below the broker's own default of 1,048,588 bytes.
PRODUCER_LIMIT = 1_000_000
DEPARTMENTS = ("public_security", "civil_affairs", "health", "education")


def topic_of(department: str) -> str:
    return NAMES.ingest(LIBRARY, department)


def partition_of(key: bytes) -> int:
    return key_partition(key, PARTITIONS)


def gate(catalog: Catalog, **options: Any) -> GateLogic:
    return GateLogic(LIBRARY, catalog, default_codec(), NAMES, **options)


def message(department: str = "public_security", seed: int = 1, secret: bytes = SECRET,
            **changes: Any) -> tuple[bytes, bytes, Headers]:
    """(key, value, headers) of a valid event as the publisher sends it."""
    record = {**next(generate(LIBRARY, 1, seed=seed, department=department)), **changes}
    event = to_event(LIBRARY, department, record, "unit-test")
    key = entity_key(secret, LIBRARY, event["entity_id"])
    return key, default_codec().encode(LIBRARY, event), cloudevent_headers(event, LIBRARY, 1, key)


def handle(logic: GateLogic, key: bytes | None, value: bytes | None, headers: Headers,
           department: str = "public_security", partition: int | None = None,
           golden: bytes | None = None) -> Step:
    where = partition_of(key) if partition is None and key else partition or 0
    return logic.handle(topic_of(department), where, 7, key, value, headers, golden)


def dead_letter_of(step: Step) -> Output:
    """The one dead letter of a rejected step, after checking that its only other output is the
    same message in its source department's own rejections topic."""
    assert step.golden is None, "a dead letter changes no golden record"
    letter, *copies = step.outputs
    assert letter.topic == NAMES.dlq(LIBRARY)
    source = NAMES.parse_ingest(deadletters.describe(letter.headers)["topic"])[1]
    assert [(copy.topic, copy.key, copy.value, copy.headers) for copy in copies] == [
        (NAMES.rejections_of(source), letter.key, letter.value, letter.headers)], "the source learns why, once"
    return letter


def rejection_of(step: Step) -> dict[str, str]:
    """The reason and detail of a step that must be exactly one dead letter (and its copy)."""
    return deadletters.describe(dead_letter_of(step).headers)


def accepted(step: Step) -> bool:
    return step.status != "rejected" and all(output.topic != NAMES.dlq(LIBRARY) for output in step.outputs)


# 1. A null value


def test_a_null_value_is_a_dead_letter_and_keeps_its_null(catalog) -> None:
    key, _, headers = message()
    step = handle(gate(catalog), key, None, headers)
    assert rejection_of(step)["reason"] == "empty_value"
    assert step.outputs[0].value is None and step.outputs[0].key == key


# 2. The key is the entity's pseudonymous key


@pytest.mark.parametrize("wrong", [None, b"", "身份证号".encode(), b"\xff\xfe\x00"], ids=["null", "empty", "unicode", "binary"])
def test_a_key_that_is_not_the_entitys_is_a_dead_letter(catalog, wrong: bytes | None) -> None:
    _, value, headers = message()
    info = rejection_of(handle(gate(catalog), wrong, value, headers, partition=0))
    assert info["reason"] == "wrong_key"


def test_another_entitys_key_is_a_dead_letter_whose_detail_quotes_no_identity(catalog) -> None:
    _, value, headers = message(seed=1)
    other_key, _, _ = message(seed=2)
    person = next(generate(LIBRARY, 1, seed=1, department="public_security"))["citizen_id"]
    letter = handle(gate(catalog), other_key, value, headers).outputs[0]
    info = deadletters.describe(letter.headers)
    assert info["reason"] == "wrong_key" and "pseudonymous key" in info["detail"]
    assert all(person not in (value or b"").decode(errors="ignore") for name, value in letter.headers
               if name.startswith("govbus_dlq")), "no personal data in the reason headers"


def test_the_key_secret_is_the_settings_one_unless_given(catalog) -> None:
    default_key, value, headers = message()
    assert accepted(handle(gate(catalog), default_key, value, headers))
    assert rejection_of(handle(gate(catalog, secret=b"another secret"), default_key, value, headers))["reason"] == "wrong_key"
    other_key, other_value, other_headers = message(secret=b"another secret")
    assert accepted(handle(gate(catalog, secret=b"another secret"), other_key, other_value, other_headers))


# 3. The partition is the one the key maps to


def test_an_event_on_another_partition_than_its_key_maps_to_is_a_dead_letter(catalog) -> None:
    key, value, headers = message()
    logic = gate(catalog, partitions=lambda topic: PARTITIONS)
    info = rejection_of(handle(logic, key, value, headers, partition=(partition_of(key) + 1) % PARTITIONS))
    assert info["reason"] == "wrong_partition"
    assert accepted(handle(logic, key, value, headers, partition=partition_of(key)))


def test_a_topic_of_unknown_size_is_not_checked_for_partitions(catalog) -> None:
    key, value, headers = message()
    logic = gate(catalog, partitions=lambda topic: None)
    assert accepted(handle(logic, key, value, headers, partition=(partition_of(key) + 1) % PARTITIONS))


# 4. Heartbeats


def heartbeat(department: str = "civil_affairs") -> tuple[bytes, bytes, Headers]:
    return f"heartbeat:{department}".encode(), b"", heartbeat_headers(department, "hukou")


def test_a_publishers_heartbeat_is_skipped(catalog) -> None:
    key, value, headers = heartbeat()
    step = handle(gate(catalog), key, value, headers, department="civil_affairs", partition=0)
    assert (step.status, step.outputs, step.golden) == ("heartbeat", [], None)


def _replaced(headers: Headers, name: str, value: bytes | None) -> Headers:
    return [(each, value if each == name else kept) for each, kept in headers]


BAD_HEARTBEATS = {
    "null key": lambda key, value, headers: (None, value, headers),
    "another department's key": lambda key, value, headers: (b"heartbeat:health", value, headers),
    "an entity key": lambda key, value, headers: (b"0" * 32, value, headers),
    "a value": lambda key, value, headers: (key, b"\xc3\x01garbage", headers),
    "another department's source": lambda key, value, headers: (
        key, value, _replaced(headers, "ce_source", b"urn:govbus:department:health:system:x")),
    "no time": lambda key, value, headers: (key, value, [h for h in headers if h[0] != "ce_time"]),
    "a null time": lambda key, value, headers: (key, value, _replaced(headers, "ce_time", None)),
    "a garbage time": lambda key, value, headers: (key, value, _replaced(headers, "ce_time", b"\xff yesterday")),
    "no id": lambda key, value, headers: (key, value, _replaced(headers, "ce_id", b"")),
    "only the type": lambda key, value, headers: (key, value, [("ce_type", HEARTBEAT_TYPE)]),
}


@pytest.mark.parametrize("spoil", BAD_HEARTBEATS.values(), ids=BAD_HEARTBEATS.keys())
def test_anything_else_with_a_heartbeat_type_is_a_dead_letter_that_keeps_its_value(catalog, spoil) -> None:
    key, value, headers = spoil(*heartbeat())
    step = handle(gate(catalog), key, value, headers, department="civil_affairs", partition=0)
    assert rejection_of(step)["reason"] == "bad_heartbeat"
    assert step.outputs[0].value == value


# 5. A golden record never exceeds what the state topic takes


def test_an_event_that_would_make_the_golden_record_too_large_is_a_dead_letter(catalog) -> None:
    key, value, headers = message(household_address="长安路" * 70_000)  # 630 KB: the golden record holds it twice
    assert message_size(key, value, headers) < PRODUCER_LIMIT
    step = handle(gate(catalog), key, value, headers)
    info = rejection_of(step)
    assert info["reason"] == "golden_too_large"
    size, limit = map(int, re.findall(r"\d{6,}", info["detail"].replace(",", ""))[:2])
    assert size > limit and limit < PRODUCER_LIMIT and "bytes" in info["detail"], info["detail"]
    assert step.outputs[0].value == value, "the event is kept whole in the dead-letter topic"


def test_a_golden_record_that_grows_past_the_limit_over_many_updates_is_refused_at_the_update_that_would(catalog) -> None:
    logic, golden, refused = gate(catalog), None, []
    for sequence in range(1, 12):  # the address grows by 60 KB an update, the golden record by twice that
        key, value, headers = message(household_address=f"{sequence}号" + "路" * (20_000 * sequence), sequence=sequence)
        step = handle(logic, key, value, headers, golden=golden)
        if step.golden is not None:
            assert not refused, "once too large, a bigger one is refused too"
            assert len(key) + len(step.golden) < PRODUCER_LIMIT
            golden = step.golden
        else:
            refused.append(rejection_of(step)["reason"])
    assert golden is not None and refused and set(refused) == {"golden_too_large"}


# 6. Hostile headers


def test_the_producers_own_headers_do_not_travel_past_the_gate(catalog) -> None:
    """A spoofed ``ce_source``, an arbitrary header, a header without a value, a garbled
    send time: the shared change's headers are the gate's, built from the verified event."""
    key, value, headers = message()
    hostile = [("ce_source", source_urn("health", "forged").encode()), ("x-anything", b"through?"),
               ("x-empty", None), ("ce_time", b"2000-01-01T00:00:00Z"), (PUBLISHED_AT, b"soon")]
    step = handle(gate(catalog), key, value, headers + hostile)
    assert accepted(step)
    shared = header_map(step.outputs[0].headers)
    expected = header_map(headers)
    assert shared["ce_source"] == expected["ce_source"] and b"public_security" in shared["ce_source"]
    assert shared["ce_time"] == expected["ce_time"], "the event's recorded_at, not the header's claim"
    assert not {"x-anything", "x-empty", PUBLISHED_AT} & set(shared)


def test_a_well_formed_send_time_is_the_one_producer_header_kept(catalog) -> None:
    key, value, headers = message()
    step = handle(gate(catalog), key, value, headers + [(PUBLISHED_AT, b"1700000000000")])
    assert header_map(step.outputs[0].headers)[PUBLISHED_AT] == b"1700000000000"


def test_a_huge_producer_header_is_left_behind_and_the_event_admitted(catalog) -> None:
    key, value, headers = message()
    step = handle(gate(catalog), key, value, headers + [("x-huge", b"h" * 999_000)])
    assert accepted(step)
    assert all(message_size(output.key, output.value, output.headers) < 10_000 for output in step.outputs)


def test_a_rejected_event_too_large_to_copy_whole_still_makes_a_dead_letter_that_fits(catalog) -> None:
    for value, headers in [(b"x" * 1_040_000, []), (b"x" * 10, [("x-huge", b"h" * 1_040_000)])]:
        step = handle(gate(catalog), b"k", value, headers)
        letter = dead_letter_of(step)
        assert deadletters.describe(letter.headers)["reason"] == "undecodable"
        assert message_size(letter.key, letter.value, letter.headers) < PRODUCER_LIMIT


# 7. No personal data in dead-letter headers


def test_the_decisions_dead_letters_name_no_entity_in_their_headers(catalog) -> None:
    """A reused sequence and a delete by a department that is not the authority: the detail
    (a header every tool shows) says what went wrong without the citizen's id."""
    logic = gate(catalog)
    record = next(generate(LIBRARY, 1, seed=9, department="civil_affairs"))
    key, first, headers = message("civil_affairs", seed=9)
    applied = handle(logic, key, first, headers, department="civil_affairs")
    again_key, again, again_headers = message("civil_affairs", seed=9, event_id="00000000-0000-4000-8000-000000000009")
    reused = handle(logic, again_key, again, again_headers, department="civil_affairs", golden=applied.golden)
    deleted_key, delete, delete_headers = message("civil_affairs", seed=9, op="DELETE", sequence=record["sequence"] + 1)
    refused = handle(logic, deleted_key, delete, delete_headers, department="civil_affairs", golden=applied.golden)
    for step, reason in ((reused, "duplicate_sequence"), (refused, "not_authoritative_delete")):
        letter = rejection_of(step)
        assert letter["reason"] == reason
        assert record["citizen_id"] not in json.dumps(header_map(step.outputs[0].headers), default=str)


# A fuzz run: thousands of generated inputs, never an exception


GOOD = [message(department, seed) for department in DEPARTMENTS for seed in range(1, 6)]


def _mutated(draw: Any, value: bytes) -> bytes:
    """A valid payload with a few bytes changed, and perhaps cut short or lengthened."""
    mutated = bytearray(value)
    for _ in range(draw(st.integers(1, 4))):
        mutated[draw(st.integers(0, len(mutated) - 1))] = draw(st.integers(0, 255))
    how = draw(st.sampled_from(["changed", "cut", "lengthened"]))
    if how == "cut":
        return bytes(mutated[:draw(st.integers(0, len(mutated) - 1))])
    if how == "lengthened":
        return bytes(mutated) + draw(st.binary(min_size=1, max_size=20))
    return bytes(mutated)


HOSTILE_HEADERS = st.lists(st.tuples(
    st.one_of(st.text(max_size=30), st.sampled_from(["ce_type", "ce_source", "ce_id", "ce_time", "ce_specversion",
                                                     deadletters.REASON, deadletters.DETAIL, "govbus_backfill"])),
    st.one_of(st.none(), st.binary(max_size=40), st.just(HEARTBEAT_TYPE), st.just(b"h" * 300_000))), max_size=6)


@st.composite
def inputs(draw: Any) -> tuple[str, bytes | None, bytes | None, Headers, int]:
    """(department, key, value, headers, partition): a good event or one of many bad ones."""
    key, value, headers = draw(st.sampled_from(GOOD))
    department = header_map(headers)["ce_source"].decode().split(":")[3]
    kind = draw(st.sampled_from(["good", "random", "mutated", "truncated", "key", "headers", "heartbeat",
                                 "other_department"]))
    if kind == "random":
        value = draw(st.one_of(st.none(), st.binary(max_size=200), st.binary(min_size=10, max_size=200).map(
            lambda body: b"\xc3\x01" + value[2:10] + body)))
    elif kind == "mutated":
        value = _mutated(draw, value)
    elif kind == "truncated":
        value = value[:draw(st.integers(0, len(value) - 1))]
    elif kind == "key":
        key = draw(st.one_of(st.none(), st.binary(max_size=40), st.text(max_size=20).map(str.encode),
                             st.sampled_from([k for k, _, _ in GOOD])))
    elif kind == "headers":
        headers = draw(st.sampled_from([headers, []])) + draw(HOSTILE_HEADERS)
    elif kind == "heartbeat":
        key = draw(st.sampled_from([f"heartbeat:{department}".encode(), None, key, b"heartbeat:"]))
        value = draw(st.sampled_from([b"", None, value, b"\x00"]))
        headers = draw(st.sampled_from([heartbeat_headers(department, "x"), [("ce_type", HEARTBEAT_TYPE)]]))
        headers = headers + draw(HOSTILE_HEADERS)
    elif kind == "other_department":
        department = draw(st.sampled_from([d for d in DEPARTMENTS if d != department]))
    on_key = partition_of(key) if key else 0
    partition = draw(st.sampled_from([on_key, on_key, (on_key + 1) % PARTITIONS]))
    return department, key, value, headers, partition


def _check(step: Step) -> None:
    """Accepted outputs that fit their topics, or exactly one dead letter with a reason."""
    dlq = [output for output in step.outputs if output.topic == NAMES.dlq(LIBRARY)]
    if step.status == "rejected" or dlq:
        assert step.status == "rejected" and len(step.outputs) == 2 and len(dlq) == 1 and step.golden is None
        dead_letter_of(step)
        assert deadletters.describe(dlq[0].headers)["reason"]
    if step.golden is not None:
        assert len(step.golden) < PRODUCER_LIMIT
        json.loads(step.golden)
    for output in step.outputs:
        assert message_size(output.key, output.value, output.headers) < PRODUCER_LIMIT


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(inputs(), min_size=1, max_size=8))
def test_generated_bad_inputs_mixed_with_good_ones_never_raise(catalog, batch) -> None:
    logic, table = gate(catalog, partitions=lambda topic: PARTITIONS), {}
    for department, key, value, headers, partition in batch:
        step = logic.handle(topic_of(department), partition, 0, key, value, headers, table.get((partition, key)))
        _check(step)
        if step.golden is not None:
            table[(partition, key)] = step.golden


def test_partition_counts_are_asked_once_per_topic_and_an_unknown_one_again_later() -> None:
    from govbus.processors.gate.logic import remembered_counts

    asked: list[str] = []
    answers = {"a": 6, "b": None}
    counts = remembered_counts(lambda topic: asked.append(topic) or answers[topic], retry_after=0.0)
    assert [counts("a"), counts("a"), counts("b"), counts("b")] == [6, 6, None, None]
    assert asked == ["a", "b", "b"]
