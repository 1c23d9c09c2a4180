"""No password ever reaches a log, even at debug level (`govbus -v`)."""

from __future__ import annotations

import io
import logging
import socket

import pytest
from kafka.errors import KafkaError

from govbus import clients, redaction
from govbus.cli import configure_logging
from govbus.settings import Settings

PASSWORD = "Zq8-unit-test-password-7Hk"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def cli_log():
    """What `govbus -v` writes to stderr: the CLI's own logging set-up, read into a buffer."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    # Other tests (and libraries) may have quietened kafka's loggers or disabled levels: undo it here.
    kafka_loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
                     if name == "kafka" or name.startswith("kafka.")]
    kept = [(logger, logger.level, logger.propagate, logger.disabled) for logger in kafka_loggers]
    disabled = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    for logger in kafka_loggers:
        logger.setLevel(logging.NOTSET)
        logger.propagate, logger.disabled = True, False
    root.handlers = []
    stream = io.StringIO()
    configure_logging(verbose=True)
    for handler in root.handlers:
        handler.setStream(stream)
    yield stream
    root.handlers, root.level = before, level
    logging.disable(disabled)
    for logger, logger_level, propagate, was_disabled in kept:
        logger.setLevel(logger_level)
        logger.propagate, logger.disabled = propagate, was_disabled


def test_govbus_v_logs_the_admin_clients_configuration_without_its_password(cli_log, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    settings = Settings(bootstrap_servers=f"127.0.0.1:{_closed_port()}", sasl_username="tax", sasl_password=PASSWORD)
    with pytest.raises(KafkaError):
        admin = clients.KafkaAdminClient(**clients.connection_config(settings), bootstrap_timeout_ms=300,
                                         request_timeout_ms=300)
        admin.close()
    written = cli_log.getvalue()
    assert "Starting KafkaAdminClient with configuration" in written, "the client did log its configuration"
    assert "sasl_plain_password" in written
    assert PASSWORD not in written and PASSWORD not in caplog.text
    assert redaction.REDACTED in written


@pytest.mark.parametrize("text", [
    "{'sasl_plain_password': 'an-unknown-secret'}", "sasl.password=an-unknown-secret",
    'PlainLoginModule required username="a" password="an-unknown-secret";', '{"password": "an-unknown-secret"}'])
def test_a_password_named_value_is_redacted_even_when_not_remembered(text: str) -> None:
    assert "an-unknown-secret" not in redaction.redact(text)


def test_a_remembered_secret_is_redacted_wherever_it_appears(caplog) -> None:
    redaction.install()
    redaction.remember("Remembered-Secret-42")
    caplog.set_level(logging.INFO)
    logging.getLogger("somewhere").info("connecting with %s", "Remembered-Secret-42")
    assert "Remembered-Secret-42" not in caplog.text and redaction.REDACTED in caplog.text
