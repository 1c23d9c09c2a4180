"""The faust application's settings come from the bus's settings, and bad settings are said clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from govbus.processors.runtime.app import make_app
from govbus.errors import GovbusError
from govbus.settings import Settings, get_settings


def test_the_session_timeout_setting_decides_how_soon_a_dead_workers_partitions_move(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, security_protocol="PLAINTEXT", processor_session_timeout=12)
    conf = make_app(settings, ["gate"]).conf
    assert conf.broker_session_timeout == 12.0
    assert conf.broker_heartbeat_interval == 3.0, "a heartbeat well within the session timeout"
    short = make_app(settings.model_copy(update={"processor_session_timeout": 6.0}), ["router"]).conf
    assert (short.broker_session_timeout, short.broker_heartbeat_interval) == (6.0, 2.0)


def test_a_bad_setting_is_one_error_naming_its_variable(monkeypatch) -> None:
    monkeypatch.setenv("GOVBUS_PROCESSOR_SESSION_TIMEOUT", "3")
    get_settings.cache_clear()
    try:
        with pytest.raises(GovbusError, match="GOVBUS_PROCESSOR_SESSION_TIMEOUT='3': Input should be greater than or equal to 6"):
            get_settings()
    finally:
        get_settings.cache_clear()
