"""Principals' SCRAM credentials: generated, stored owner-only, never printed unless asked.

Each principal's credentials live in ``<home>/credentials/<principal>.json`` (mode 0600 in a
0700 folder). The broker keeps only the salted SCRAM hashes; these files are what clients
log in with. Who is who:

- ``admin``: the operators' tooling (topics, ACLs, principals, subscriptions) — a super user;
- ``govbus-processors``: the gate, router and freshness processors;
- ``govbus-authority``: the authority processor, which folds what each principal says
  (``control.acts.<principal>``) into ``control.subscriptions`` and the objections, and grants
  and withdraws delivery read access (it may alter ACLs: guard it as the operators' tooling);
- ``governance``: the big-data bureau's staff, who read the audit, metrics and control topics,
  run the assessment and may refuse or revoke a subscription on policy grounds (as themselves);
- one principal per department, named by its catalog id.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from govbus.errors import GovbusError

ADMIN = "admin"
PROCESSORS = "govbus-processors"
AUTHORITY = "govbus-authority"
GOVERNANCE = "governance"
MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


def generate(username: str) -> Credentials:
    return Credentials(username, secrets.token_urlsafe(24))


def directory(home: Path) -> Path:
    return home / "credentials"


def save(home: Path, credentials: Credentials) -> Path:
    folder = directory(home)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    path = folder / f"{credentials.username}.json"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump({"username": credentials.username, "password": credentials.password, "mechanism": MECHANISM}, file)
    path.chmod(0o600)
    return path


def load(home: Path, username: str) -> Credentials:
    path = directory(home) / f"{username}.json"
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        raise GovbusError(f"no credentials for principal {username!r} in {path.parent}; create them with "
                          f"`govbus departments add {username}` (or set GOVBUS_SASL_PASSWORD)") from None
    return Credentials(stored["username"], stored["password"])


def known(home: Path) -> list[str]:
    return sorted(path.stem for path in directory(home).glob("*.json"))
