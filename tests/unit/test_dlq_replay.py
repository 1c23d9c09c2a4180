"""Which dead letters a replay sends: each chosen letter once, never one already marked, never
one that lost its value; filters by reason, source department and time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from govbus.errors import GovbusError
from govbus.processors.gate import deadletters
from govbus.processors.governance.replay import Choice, DeadLetter, mark_value, parse_time, plan
from govbus.topics.names import TopicNames

NAMES = TopicNames("")
NOON = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)


def letter(offset: int, reason: str = "invalid", department: str = "civil_affairs", value: bytes | None = b"event",
           at: datetime = NOON, partition: int = 0) -> DeadLetter:
    headers = deadletters.dead_letter_headers([("ce_id", b"e")], deadletters.Rejection(reason, "why"), "gate",
                                              NAMES.ingest("population", department), 0, offset, now=at)
    return DeadLetter(partition, offset, b"key", value, headers, deadletters.describe(headers))


def test_a_letter_already_marked_is_not_sent_again() -> None:
    letters = [letter(0), letter(1), letter(2)]
    first = plan(letters, set(), Choice(), NAMES)
    assert [chosen.mark for chosen in first.send] == ["0:0", "0:1", "0:2"]
    second = plan(letters, {"0:0", "0:2"}, Choice(), NAMES)
    assert [chosen.mark for chosen in second.send] == ["0:1"] and second.already_replayed == 2


def test_the_mark_is_the_letters_place_so_two_partitions_never_share_one() -> None:
    assert letter(5, partition=0).mark != letter(5, partition=1).mark
    assert plan([letter(5, partition=1)], {"0:5"}, Choice(), NAMES).send


def test_a_letter_that_lost_its_value_is_reported_not_sent() -> None:
    result = plan([letter(0, value=None)], set(), Choice(), NAMES)
    assert result.send == [] and "too large" in result.unsendable[0][1]


def test_filters_choose_by_reason_department_and_time() -> None:
    letters = [letter(0, "invalid", "civil_affairs", at=NOON - timedelta(hours=2)),
               letter(1, "wrong_key", "civil_affairs", at=NOON),
               letter(2, "invalid", "public_security", at=NOON + timedelta(hours=2))]
    marks = lambda choice: [chosen.offset for chosen in plan(letters, set(), choice, NAMES).send]  # noqa: E731
    assert marks(Choice(reason="invalid")) == [0, 2]
    assert marks(Choice(department="public_security")) == [2]
    assert marks(Choice(since=NOON)) == [1, 2]
    assert marks(Choice(until=NOON)) == [0], "until is exclusive"
    assert marks(Choice(reason="invalid", since=NOON - timedelta(hours=1))) == [2]


def test_a_time_without_an_offset_is_refused_rather_than_guessed() -> None:
    assert parse_time("2026-12-04T20:00:00+08:00", "--since") == NOON
    with pytest.raises(GovbusError, match="no UTC offset"):
        parse_time("2026-12-04T20:00:00", "--since")
    with pytest.raises(GovbusError, match="not an ISO 8601 time"):
        parse_time("yesterday", "--until")


def test_the_mark_says_where_the_letter_went_and_why_it_was_refused() -> None:
    value = mark_value(letter(3, "wrong_key"), NOON).decode()
    assert '"to": "ingest.population.civil_affairs"' in value and '"reason": "wrong_key"' in value
