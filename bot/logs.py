"""Logs: one structured line per record, identifiers only as opaque ids.

The rule is in the code that logs: it names records by id (``inbound 12``, ``check-in
7``, ``patient 3``) and failures by exception type, never by a name, number, chat id or
anything a patient wrote; tests/conftest.py holds every test to it. This module adds
the format (logfmt: ``ts=... level=error logger=bot.app.conversations.inbox msg="..."`` plus any
``extra`` fields) and two safety nets for what other libraries log:

* :class:`Redact` replaces phone numbers (``+`` and 7-15 digits) and long digit runs
  (9 or more, the size of a Telegram chat id; our row ids stay shorter) in the message;
* an exception is logged as its type and the place it was raised (file:line), never its
  message or the traceback's text, which can quote the data being handled;
* ``httpx`` and ``twilio.http_client`` are held at WARNING: at INFO they log each request
  URL, and a Telegram request URL carries the bot token;
* :func:`withhold_library_data`: a record written by python-telegram-bot, httpx, httpcore,
  aiohttp or twilio keeps its wording but not its arguments (each becomes ``[withheld]``), and an
  exception becomes its type and place. python-telegram-bot logs a whole update it cannot
  parse (names, message text) at CRITICAL, and its debug lines quote every request and
  answer. This is done where records are made (a record factory), not by a logger's
  filter: a filter sees only the records of its own logger, not of the library's many
  child loggers, and every handler (a test's too) must get the cleaned record.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

_PHONE = re.compile(r"\+\d[\d ().-]{5,18}\d")
_LONG_DIGITS = re.compile(r"(?<![\w.])\d{9,}(?![\w.])")
_QUIET = ("httpx", "httpcore", "twilio.http_client")
_LIBRARIES = frozenset({"telegram", "httpx", "httpcore", "aiohttp", "twilio"})
_CONVERSION = re.compile(r"%(\([^)]*\))?[#0 +-]*(\*|\d+)?(\.(\*|\d+))?[diouxXeEfFgGcrsa%]")
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}


def redact(text: str) -> str:
    """`text` with phone numbers and chat-id-sized digit runs replaced."""
    return _LONG_DIGITS.sub("[id]", _PHONE.sub("[phone]", text))


class Redact(logging.Filter):
    """Format the record's message now, redacted, so no handler sees the raw arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


def withhold_library_data() -> None:
    """Make every record of the libraries above carry no data (once per process)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "withholds", False):
        return

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if str(record.name).partition(".")[0] in _LIBRARIES:
            _withhold(record)
        return record

    factory.withholds = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _withhold(record: logging.LogRecord) -> None:
    def placeholder(found: re.Match[str]) -> str:
        return "%" if found.group(0) == "%%" else "[withheld]"

    text = str(record.msg)
    record.msg = redact(_CONVERSION.sub(placeholder, text) if record.args else text)
    record.args = None
    if record.exc_info and record.exc_info[1] is not None:
        where = _exception_fields(record.exc_info[1])
        record.msg += f" ({where['exc_type']} at {where['exc_at']})"
    record.exc_info, record.exc_text, record.stack_info = None, None, None


class Structured(logging.Formatter):
    """logfmt lines: ts, level, logger, msg, then extra fields and the exception's type."""

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        fields = {
            "ts": at,
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields |= {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if record.exc_info and record.exc_info[1] is not None:
            fields |= _exception_fields(record.exc_info[1])
        return " ".join(f"{key}={_value(value)}" for key, value in fields.items())


def _exception_fields(exc: BaseException) -> dict[str, str]:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return {"exc_type": type(exc).__name__, "exc_at": where}


def _value(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' ="\n\t'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def configure(level: int = logging.INFO, stream: TextIO | None = None) -> logging.Handler:
    """Send every record through one redacting, structured handler (replacing others)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(Redact())
    handler.setFormatter(Structured())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    withhold_library_data()
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    return handler
