"""A production deployment refuses the development key secret; development accepts it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from govbus.settings import Settings

DEVELOPMENT_KEY_SECRET = "govbus-development-key-secret"  # the public default


def test_development_is_the_default_and_accepts_the_development_key_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOVBUS_ENVIRONMENT", raising=False)
    monkeypatch.delenv("GOVBUS_KEY_SECRET", raising=False)
    settings = Settings()
    assert (settings.environment, settings.key_secret) == ("development", DEVELOPMENT_KEY_SECRET)


@pytest.mark.parametrize("given", [{}, {"key_secret": DEVELOPMENT_KEY_SECRET}])
def test_production_refuses_the_development_key_secret(given: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOVBUS_KEY_SECRET", raising=False)
    with pytest.raises(ValidationError, match="refuses the development key secret: set GOVBUS_KEY_SECRET"):
        Settings(environment="production", **given)


def test_production_refuses_a_short_key_secret_and_accepts_a_real_one() -> None:
    with pytest.raises(ValidationError, match="needs at least 16"):
        Settings(environment="production", key_secret="short")
    assert Settings(environment="production", key_secret="x" * 32).key_secret == "x" * 32


def test_the_command_line_refuses_to_start_in_production_with_the_development_secret(tmp_path) -> None:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("GOVBUS_")}
    environment |= {"GOVBUS_ENVIRONMENT": "production", "GOVBUS_HOME": str(tmp_path)}
    completed = subprocess.run([sys.executable, "-m", "govbus.cli", "topics", "list"], capture_output=True, text=True,
                               env=environment, cwd=tmp_path, timeout=120, check=False)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "GOVBUS_ENVIRONMENT=production refuses the development key secret" in completed.stderr
    assert "set GOVBUS_KEY_SECRET" in completed.stderr and "Traceback" not in completed.stderr
    assert DEVELOPMENT_KEY_SECRET not in completed.stderr, "the refused value is not echoed"
