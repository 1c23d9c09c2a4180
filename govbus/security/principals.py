"""Principals on the broker: SCRAM credentials made, rotated and listed by the admin tooling."""

from __future__ import annotations

from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import UserScramCredentialUpsertion

from govbus.errors import GovbusError
from govbus.security import credentials
from govbus.security.credentials import Credentials


def ensure(admin: KafkaAdminClient, home: Path, username: str, *, rotate: bool = False) -> Credentials:
    """The principal exists on the broker with the credentials stored under ``home``.

    A stored password is reused (so running this twice changes nothing a client sees) unless
    ``rotate`` asks for a new one; the broker stores only a salted SCRAM hash of it. A principal
    that exists on the broker but whose password is not stored under ``home`` is refused rather
    than given a new password: from another machine, `departments add --all` would otherwise
    lock every department's clients out at once.
    """
    try:
        login = credentials.generate(username) if rotate else credentials.load(home, username)
    except GovbusError:
        if username in on_broker(admin):
            raise GovbusError(
                f"{username} already has credentials on the broker, but they are not stored in "
                f"{credentials.directory(home)}: copy its {username}.json there, or give it a new password "
                f"with `govbus departments rotate {username}` (its clients must then use the new one)") from None
        login = credentials.generate(username)
    result = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(username, credentials.MECHANISM, login.password, iterations=8192)])
    problem = result.get(username) if isinstance(result, dict) else None
    if problem:
        raise GovbusError(f"the broker refused credentials for {username}: {problem}")
    credentials.save(home, login)
    return login


def on_broker(admin: KafkaAdminClient) -> list[str]:
    """The names of the principals that have SCRAM credentials on the broker."""
    described = admin.describe_user_scram_credentials()
    if isinstance(described, dict):
        return sorted(described)
    return sorted(getattr(entry, "user", str(entry)) for entry in described)
