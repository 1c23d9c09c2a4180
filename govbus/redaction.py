"""No password reaches a log: every log record is redacted as it is made.

kafka-python's admin client logs its whole configuration at debug level, the SASL password
included, and ``govbus -v`` logs at debug level. Rather than trust every library to keep
secrets out of its messages, ``install()`` wraps the logging module's record factory, so
that every record of the process — whichever logger, handler or formatter, pytest's caplog
too — has its message redacted before anything sees it:

- every secret the bus's clients log in with (``remember``, called where a password is read)
  is replaced wherever it appears;
- as a second net, any ``password``-named value (``'sasl_plain_password': '…'``,
  ``sasl.password=…``, JAAS ``password="…"``) is replaced, whoever's it is.

Only records that are actually made pay for it: a debug call with debug logging off makes
no record.
"""

from __future__ import annotations

import logging
import re
import threading

REDACTED = "[redacted]"
_PASSWORD_VALUE = re.compile(r"""(?i)(password['"]?\s*[:=]\s*)(['"]?)(?!None\b)[^'"\s,;})\]]+""")
_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def remember(secret: str | None) -> None:
    """A secret to blank out of every log message from now on."""
    if secret and len(secret) >= 4:  # a shorter one would blank out ordinary words
        with _lock:
            _secrets.add(secret)


def redact(text: str) -> str:
    """``text`` with every remembered secret and every password-named value replaced."""
    for secret in tuple(_secrets):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _PASSWORD_VALUE.sub(lambda match: f"{match.group(1)}{match.group(2)}{REDACTED}", text)


def install() -> None:
    """Redact every log record of this process from now on (once; later calls do nothing)."""
    global _installed
    with _lock:
        if _installed:
            return
        make = logging.getLogRecordFactory()

        def redacted_record(*args: object, **kwargs: object) -> logging.LogRecord:
            record = make(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a malformed call; logging itself reports it later
                return record
            clean = redact(message)
            if clean != message:
                record.msg, record.args = clean, None
            return record

        logging.setLogRecordFactory(redacted_record)
        _installed = True
