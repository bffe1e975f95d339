"""Telegram's requests through aiohttp (bot/channels/telegram_request.py), against the Bot
API stand-in over real HTTP: answers, uploads, timeouts, dropped and refused connections,
a pool smaller than the sends at once, and errors that never carry the bot token."""

from __future__ import annotations

import asyncio
import base64
import socket

import pytest
import telegram
from telegram.error import NetworkError, TimedOut

from bot.channels.telegram import TelegramChannel
from bot.channels.telegram_request import AiohttpRequest
from bot.domain.errors import DeliveryFailed
from bot.rendering.renderer import Rendered
from tests.standins import telegram as tg
from tests.standins.server import Fault

CHAT = 5501
# the smallest PNG: a 1x1 transparent pixel
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def bot_for(api: tg.TelegramStandIn, url: str, **timeouts: float) -> telegram.Bot:
    request = AiohttpRequest(connection_pool_size=4, **timeouts)
    return telegram.Bot(api.token, base_url=f"{url}/bot", request=request)


async def test_a_message_is_sent_and_its_answer_read(
    stand_in: tuple[tg.TelegramStandIn, str],
) -> None:
    api, url = stand_in
    async with bot_for(api, url) as bot:
        sent = await bot.send_message(chat_id=CHAT, text="Hola, ¿cómo está?")
        edited = await bot.edit_message_text(
            chat_id=CHAT, message_id=sent.message_id, text="✓ Nada"
        )
    assert api.message(CHAT, sent.message_id)["text"] == "✓ Nada"
    assert isinstance(edited, telegram.Message) and edited.text == "✓ Nada"
    assert [c.method for c in api.calls] == ["getMe", "sendMessage", "editMessageText"]


async def test_the_channel_sends_a_photo_as_a_multipart_upload(
    stand_in: tuple[tg.TelegramStandIn, str],
) -> None:
    """A trend chart goes as a file with its caption; the channel sends through aiohttp."""
    api, url = stand_in
    channel = TelegramChannel(api.token, f"{url}/bot")
    assert isinstance(channel.bot.request, AiohttpRequest)
    try:
        message_id = await channel.send(
            str(CHAT), Rendered("Your PHQ-9 scores", html=False), {"photo": _b64(PIXEL)}
        )
    finally:
        await channel.close()
    assert message_id is not None
    assert api.photos[(CHAT, int(message_id))] == PIXEL
    assert api.message(CHAT, int(message_id))["caption"] == "Your PHQ-9 scores"


async def test_an_answer_slower_than_the_read_timeout_is_timed_out(
    stand_in: tuple[tg.TelegramStandIn, str],
) -> None:
    api, url = stand_in
    async with bot_for(api, url, read_timeout=0.3) as bot:
        api.fail(Fault.slow(1.5), method="sendMessage")
        with pytest.raises(TimedOut):
            await bot.send_message(chat_id=CHAT, text="first")
        sent = await bot.send_message(chat_id=CHAT, text="second")  # the pool still works
    assert sent.text == "second"


async def test_a_dropped_connection_is_a_network_error_without_the_token(
    stand_in: tuple[tg.TelegramStandIn, str],
) -> None:
    api, url = stand_in
    async with bot_for(api, url) as bot:
        api.fail(Fault.dropped(), method="sendMessage")
        with pytest.raises(NetworkError) as raised:
            await bot.send_message(chat_id=CHAT, text="hello")
    assert not isinstance(raised.value, TimedOut)
    assert api.token not in str(raised.value)
    assert raised.value.message.startswith("aiohttp.")


async def test_nothing_listening_is_a_network_error_without_the_token() -> None:
    with socket.socket() as unused:  # a port that was free a moment ago
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    token = "123456:never-in-an-error"
    request = AiohttpRequest(connect_timeout=2.0)
    bot = telegram.Bot(token, base_url=f"http://127.0.0.1:{port}/bot", request=request)
    await request.initialize()
    try:
        with pytest.raises(NetworkError) as raised:
            await bot.send_message(chat_id=CHAT, text="hello")
    finally:
        await request.shutdown()
    assert token not in str(raised.value) and "never-in-an-error" not in repr(raised.value)


async def test_more_sends_at_once_than_connections_all_arrive(
    stand_in: tuple[tg.TelegramStandIn, str],
) -> None:
    """Forty sends through a pool of four: the rest wait for a connection, none fails."""
    api, url = stand_in
    async with bot_for(api, url) as bot:
        sent = await asyncio.gather(
            *(bot.send_message(chat_id=CHAT + n, text=f"q{n}") for n in range(40))
        )
    assert sorted(m.text for m in sent) == sorted(f"q{n}" for n in range(40))
    assert len(api.calls_to("sendMessage")) == 40


async def test_the_channel_turns_a_timeout_into_a_send_that_may_have_arrived(
    stand_in: tuple[tg.TelegramStandIn, str],
) -> None:
    api, url = stand_in
    channel = TelegramChannel(api.token, f"{url}/bot", timeout_s=0.3)
    api.fail(Fault.slow(1.5), method="sendMessage")
    try:
        with pytest.raises(DeliveryFailed) as raised:
            await channel.send(str(CHAT), Rendered("hello", html=False), {})
    finally:
        await channel.close()
    assert raised.value.maybe_sent and not raised.value.permanent


async def test_a_request_before_initialize_says_so() -> None:
    request = AiohttpRequest()
    with pytest.raises(RuntimeError, match="not initialized"):
        await request.do_request("http://127.0.0.1:9/bot1:x/getMe", "POST")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
