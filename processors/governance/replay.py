"""Replaying dead letters once: which ones to send back, and the mark that says a letter was sent.

A dead letter (``dlq.<library>``, written by the gate) is replayed to the ingest topic it came
from once its cause is fixed; the gate judges it again. Replay is idempotent: each letter sent
back gets a mark in ``dlq.<library>.replayed`` keyed by its place in the dead-letter topic
(``partition:offset``), written in the same Kafka transaction as the re-sent event — a crash
leaves both or neither, so a letter is never sent twice and never marked unsent. A letter that
fails again is not lost: the gate dead-letters it anew, at a new offset, with its new reason,
and the next replay offers that one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from govbus import clients
from govbus.errors import GovbusError
from govbus.processors.gate import deadletters
from govbus.reading import stream_topic
from govbus.schemas.framing import Headers
from govbus.settings import Settings
from govbus.topics.catalog import replay_marks_name
from govbus.topics.names import TopicNames


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message of ``dlq.<library>`` and what its headers say about it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    info: dict[str, str] = field(default_factory=dict)

    @property
    def mark(self) -> str:
        """The letter's identity: its place in the dead-letter topic, the key of its replay mark."""
        return f"{self.partition}:{self.offset}"

    @property
    def reason(self) -> str:
        return self.info.get("reason", "?")

    @property
    def origin(self) -> str:
        return self.info.get("topic", "")

    @property
    def time(self) -> datetime | None:
        try:
            return datetime.fromisoformat(self.info["time"])
        except (KeyError, ValueError):
            return None

    def department(self, names: TopicNames) -> str | None:
        """The source department whose ingest topic the event came from, if it came from one."""
        try:
            return names.parse_ingest(self.origin)[1]
        except ValueError:
            return None

    def unsendable(self) -> str | None:
        """Why this letter cannot be sent back, or None: a letter too large to be copied whole
        lost its value (the original is still at its origin while that topic keeps it)."""
        if not self.origin:
            return "the dead letter does not say where it came from"
        if self.value is None:
            return "the original value was too large to keep in the dead letter; read it at its origin"
        return None


@dataclass(frozen=True, slots=True)
class Choice:
    """Which dead letters to replay: all of them by default, or those of one reason, one
    source department, and a time window (of the rejection, ISO 8601 with an offset)."""

    reason: str | None = None
    department: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def admits(self, letter: DeadLetter, names: TopicNames) -> bool:
        if self.reason and letter.reason != self.reason:
            return False
        if self.department and letter.department(names) != self.department:
            return False
        if self.since or self.until:
            moment = letter.time
            if moment is None or (self.since and moment < self.since) or (self.until and moment >= self.until):
                return False
        return True


@dataclass(frozen=True, slots=True)
class Plan:
    """What a replay run will do: the letters it sends, those already replayed, those it cannot send."""

    send: list[DeadLetter]
    already_replayed: int
    unsendable: list[tuple[DeadLetter, str]]


def plan(letters: Iterable[DeadLetter], marks: set[str], choice: Choice, names: TopicNames) -> Plan:
    """The replay of `letters` given the `marks` already written: each chosen letter not yet
    marked is sent, once."""
    send: list[DeadLetter] = []
    unsendable: list[tuple[DeadLetter, str]] = []
    already = 0
    for letter in letters:
        if not choice.admits(letter, names):
            continue
        if letter.mark in marks:
            already += 1
            continue
        problem = letter.unsendable()
        if problem:
            unsendable.append((letter, problem))
        else:
            send.append(letter)
    return Plan(send, already, unsendable)


def parse_time(text: str | None, option: str) -> datetime | None:
    """A time given on the command line; without an offset it is refused rather than guessed."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise GovbusError(f"{option} {text!r} is not an ISO 8601 time (like 2026-12-04T09:00:00+08:00)") from error
    if moment.tzinfo is None:
        raise GovbusError(f"{option} {text!r} has no UTC offset; add one (like +08:00 or Z)")
    return moment


def dead_letters(settings: Settings, names: TopicNames, library: str) -> list[DeadLetter]:
    """Every dead letter of `library` now in ``dlq.<library>``, in offset order per partition."""
    return [DeadLetter(m.partition, m.offset, m.key, m.value, list(m.headers), deadletters.describe(list(m.headers)))
            for m in stream_topic(settings, names.dlq(library), timeout=60)]


def replayed_marks(settings: Settings, names: TopicNames, library: str) -> set[str]:
    """The marks of the letters already replayed (``dlq.<library>.replayed``)."""
    return {m.key.decode() for m in stream_topic(settings, replay_marks_name(names, library), timeout=60)
            if m.key is not None}


def mark_value(letter: DeadLetter, now: datetime) -> bytes:
    return json.dumps({"replayed_at": now.isoformat(timespec="milliseconds"), "to": letter.origin,
                       "reason": letter.reason}).encode()


def send(settings: Settings, names: TopicNames, library: str, letters: list[DeadLetter]) -> None:
    """Send `letters` back to their origins and mark each, all in one transaction.

    The transactional id is the library's: a second replay of the same library started
    meanwhile fences this one off, so two runs never both send a letter."""
    producer = clients.fast_producer(settings, **{"transactional.id": f"govbus-dlq-replay-{names.dlq(library)}"})
    marks_topic, now = replay_marks_name(names, library), datetime.now(timezone.utc)
    failures: list[Any] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(error)

    producer.init_transactions(30)
    producer.begin_transaction()
    for letter in letters:
        producer.produce(letter.origin, key=letter.key, value=letter.value,
                         headers=deadletters.original_headers(letter.headers), on_delivery=delivered)
        producer.produce(marks_topic, key=letter.mark.encode(), value=mark_value(letter, now), on_delivery=delivered)
        producer.poll(0)
    producer.flush(60)
    if failures:
        producer.abort_transaction(30)
        raise GovbusError(f"replay sent nothing: {failures[0]} (and {len(failures) - 1} more)" if len(failures) > 1
                          else f"replay sent nothing: {failures[0]}")
    producer.commit_transaction(60)
