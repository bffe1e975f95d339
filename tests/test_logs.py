"""The log format: logfmt lines, phone numbers and chat ids redacted, exceptions by type and
place only, and the libraries that would log request URLs (with the bot token) held quiet."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from bot import logs
from tests.conftest import _leak


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """The structured handler on the root logger, writing here; the old handlers restored."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("httpx").level
    out = io.StringIO()
    logs.configure(logging.INFO, out)
    try:
        yield out
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.getLogger("httpx").setLevel(saved[2])


def test_a_line_is_logfmt_with_extra_fields(stream: io.StringIO) -> None:
    """One line: ts, level, logger, the message (quoted, as it has spaces), extra fields."""
    logging.getLogger("bot.app.conversations.inbox").error(
        "inbound %s failed", 12, extra={"stage": "process"}
    )
    line = stream.getvalue().strip()
    assert line.startswith("ts=") and "\n" not in line
    assert line.split(" ", 1)[1] == (
        'level=error logger=bot.app.conversations.inbox msg="inbound 12 failed" stage=process'
    )


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("sms from +447700900999 refused", "sms from [phone] refused"),
        ("number +1 (212) 555-0199 bad", "number [phone] bad"),
        ("chat 5566778899 blocked", "chat [id] blocked"),
        ("outbound 123456 sent at 2026-05-04T09:00:00", "outbound 123456 sent at 2026-05-04T09:00:00"),
        ("tick every 5.0s, version 3.11.2", "tick every 5.0s, version 3.11.2"),
    ],
)  # fmt: skip
def test_numbers_and_chat_ids_are_redacted(stream: io.StringIO, message: str, shown: str) -> None:
    """Phone numbers and chat-id-sized digit runs are replaced; row ids and times are not."""
    logging.getLogger("some.library").warning("%s", message)
    assert f'msg="{shown}"' in stream.getvalue()


def test_an_exception_is_logged_by_type_and_place_only(stream: io.StringIO) -> None:
    """The exception's message (which may quote a patient) and its traceback text are left out."""
    try:
        raise ValueError("invalid literal: 'so tired of everything'")
    except ValueError:
        logging.getLogger("bot.app.conversations.inbox").exception(
            "inbound 3 could not be processed"
        )
    line = stream.getvalue()
    assert "exc_type=ValueError exc_at=test_logs.py:" in line
    assert "tired" not in line and "Traceback" not in line


def test_request_urls_are_not_logged(stream: io.StringIO) -> None:
    """httpx's INFO request lines (Telegram URLs carry the bot token) are not emitted."""
    logging.getLogger("httpx").info(
        "HTTP Request: POST https://api.telegram.org/bot123:ABC/sendMessage"
    )
    logging.getLogger("httpx").warning("connection pool full")
    assert "bot123:ABC" not in stream.getvalue() and "connection pool full" in stream.getvalue()


@pytest.mark.parametrize(
    ("message", "leak"),
    [
        ("patient Ada replied", "Ada"),
        ("sms from +447700900001", "+447700900001"),
        ("chat 5501 blocked", "5501"),
        ("Adapter started; port 55010; pat-1-3 recorded", None),
        ("inbound 12 could not be processed (KeyError)", None),
    ],
)
def test_the_suite_wide_log_check_finds_canaries(message: str, leak: str | None) -> None:
    """The autouse check in conftest.py flags a known identifier, not a word containing one."""
    record = logging.LogRecord("bot.x", logging.INFO, __file__, 1, "%s", (message,), None)
    assert _leak(record) == leak


def test_library_records_keep_their_wording_but_not_their_data() -> None:
    """A python-telegram-bot or httpx record (a raw update at CRITICAL, with its exception)
    is made without its arguments or exception text; our own records keep their arguments."""
    logs.withhold_library_data()
    update = {"message": {"from": {"first_name": "Hester Prynne"}, "text": "better off dead"}}
    try:
        raise ValueError(f"cannot parse {update}")
    except ValueError as exc:
        made = logging.getLogger("telegram.Bot").makeRecord(
            "telegram.Bot", logging.CRITICAL, "_bot.py", 1, "Received data was %r (%d%%)",
            (update, 5), (type(exc), exc, exc.__traceback__),
        )  # fmt: skip
    assert made.getMessage().startswith(
        "Received data was [withheld] ([withheld]%) (ValueError at "
    )
    assert made.exc_info is None and _leak(made) is None
    sent = logging.getLogger("aiohttp.client").makeRecord(
        "aiohttp.client", logging.WARNING, "client.py", 1, "request to %s failed", (update,), None
    )  # (Telegram's requests go through aiohttp: a URL there carries the bot token)
    assert sent.getMessage() == "request to [withheld] failed"
    ours = logging.getLogger("bot.web").makeRecord(
        "bot.web", logging.INFO, "x.py", 1, "inbound %d", (12,), None
    )
    assert ours.getMessage() == "inbound 12"
