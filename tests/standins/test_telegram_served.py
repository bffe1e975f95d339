"""The Telegram stand-in served for the benches, in a thread or a process of its own."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime

import httpx
import pytest
import telegram
from telegram.error import RetryAfter

from tests.standins.telegram_served import InProcess, InThread, Options, in_process, in_thread

Served = Callable[[Options], AbstractAsyncContextManager[InProcess | InThread]]
PLACES = pytest.mark.parametrize("serve", [in_process, in_thread], ids=["process", "thread"])


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    """PTB 22 warns (an error here) on every RetryAfter unless time periods are timedeltas."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


async def test_the_process_reports_each_send_with_its_chat_text_and_arrival() -> None:
    """A send and an edit made by python-telegram-bot come back over HTTP, stamped with a
    wall-clock arrival the test's own clock brackets, each once however often it asks."""
    async with in_process(Options()) as stand_in:
        async with telegram.Bot(stand_in.token, base_url=f"{stand_in.url}/bot") as bot:
            before = datetime.now(UTC)
            sent = await bot.send_message(42, "<b>Question</b> 1 of 9", parse_mode="HTML")
            await bot.edit_message_text("Thanks", chat_id=42, message_id=sent.message_id)
            after = datetime.now(UTC)
        first = list(await stand_in.seen())
        seen = await stand_in.seen()

    assert first == seen
    assert [(s.method, s.chat_id, s.text, s.status) for s in seen] == [
        ("getMe", None, "", None),
        ("sendMessage", 42, "<b>Question</b> 1 of 9", None),
        ("editMessageText", 42, "Thanks", None),
    ]
    assert before <= seen[1].at <= seen[2].at <= after


@PLACES
async def test_the_limits_are_enforced_alike_in_a_thread_and_a_process(serve: Served) -> None:
    """With a burst of one per chat, a second send to the same chat at once is a 429, and
    a send to another chat is not, wherever the stand-in runs."""
    async with serve(Options(limits=(30, 1, 1.0))) as stand_in:
        async with telegram.Bot(stand_in.token, base_url=f"{stand_in.url}/bot") as bot:
            await bot.send_message(1, "first")
            with pytest.raises(RetryAfter):
                await bot.send_message(1, "too soon")
            await bot.send_message(2, "another chat")
        seen = await stand_in.seen()

    assert [(s.chat_id, s.status) for s in seen[1:]] == [(1, None), (1, 429), (2, None)]


@PLACES
async def test_the_broadcast_limit_is_enforced_alike(serve: Served) -> None:
    """With limit_per_s=2, the third sendMessage within a second is a 429."""
    async with serve(Options(limit_per_s=2)) as stand_in:
        async with telegram.Bot(stand_in.token, base_url=f"{stand_in.url}/bot") as bot:
            for chat in (1, 2):
                await bot.send_message(chat, "hi")
            with pytest.raises(RetryAfter):
                await bot.send_message(3, "hi")
        statuses = [s.status for s in await stand_in.seen() if s.method == "sendMessage"]

    assert statuses == [None, None, 429]


async def test_the_process_is_gone_after_the_block() -> None:
    """Leaving the block stops the child: its port answers no more."""
    async with in_process(Options()) as stand_in:
        url = stand_in.url
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{url}/standin/calls")
