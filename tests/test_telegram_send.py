"""The channel's sendMessage and editMessageText, which it posts itself (reading only the
answer's message_id): the same bytes on the wire as the library's `send_message` and
`edit_message_text`, and each Bot API error turned into the same `DeliveryFailed`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import aiohttp
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import BadRequest

from bot.channels.telegram import TelegramChannel
from bot.domain.errors import DeliveryFailed
from bot.rendering.renderer import Button, Rendered
from tests.standins import telegram as tg
from tests.standins.server import Fault, serve

CHAT = 5501
OPTIONS = ("Not at all", "Several days", "More than half the days", "Nearly every day")
QUESTION = Rendered(
    "<b>3/9</b> Trouble falling asleep &amp; staying asleep? «ß»",
    buttons=tuple(Button(label, f"phq9.q3={n}") for n, label in enumerate(OPTIONS)),
    html=True,
)
PLAIN = Rendered("Thank you, your check-in is complete.")
EDIT = {"edit": True}


@dataclass
class Bodies:
    """The stand-in behind a recorder of each request's method and raw form body."""

    app: ASGIApp
    seen: list[tuple[str, bytes]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        self.seen.append((scope["path"].rsplit("/", 1)[1], body))
        headers = dict(scope["headers"])
        self.content_types.append(headers.get(b"content-type", b"").decode())

        replay = [{"type": "http.request", "body": body, "more_body": False}]

        async def replayed() -> Message:  # the body once, then the client's (a disconnect)
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)


@dataclass
class Rig:
    api: tg.TelegramStandIn
    bodies: Bodies
    channel: TelegramChannel


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    api = tg.TelegramStandIn()
    bodies = Bodies(api.app)
    async with serve(bodies) as url:
        channel = TelegramChannel(api.token, f"{url}/bot", timeout_s=5)
        await channel.start()
        try:
            yield Rig(api, bodies, channel)
        finally:
            await channel.close()


def keyboard(message: Rendered) -> InlineKeyboardMarkup | None:
    """The buttons as the library's objects, one a row, as the channel builds them for a photo."""
    rows = [[InlineKeyboardButton(b.label, callback_data=b.data)] for b in message.buttons]
    return InlineKeyboardMarkup(rows) if rows else None


EVERY_CHARACTER = Rendered("".join(map(chr, range(1, 0x250))) + " \u2028€ 😀 \ufffd")


@pytest.mark.parametrize("message", [QUESTION, EVERY_CHARACTER], ids=["question", "every"])
async def test_a_form_goes_as_aiohttps_form_data_would_send_it(rig: Rig, message: Rendered) -> None:
    """The body and content type of a URL-encoded form are those aiohttp's `FormData` gives
    the same fields (the channel's requests encode the form themselves), whatever the
    characters."""
    await rig.channel.send(str(CHAT), message, {})
    body = rig.bodies.seen[-1][1]
    fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
    expected = aiohttp.FormData(fields)()
    assert fields["text"] == message.text
    assert body == expected.decode().encode()
    assert rig.bodies.content_types[-1] == expected.content_type


@pytest.mark.parametrize("message", [QUESTION, PLAIN], ids=["html-buttons", "plain"])
async def test_a_send_puts_the_librarys_form_on_the_wire(rig: Rig, message: Rendered) -> None:
    """The channel's sendMessage body is byte for byte the library's, and the id is read back."""
    sent = await rig.channel.send(str(CHAT), message, {})
    ours = rig.bodies.seen[-1]
    library = await rig.channel.bot.send_message(
        chat_id=CHAT,
        text=message.text,
        parse_mode=ParseMode.HTML if message.html else None,
        reply_markup=keyboard(message),
    )
    assert ours == rig.bodies.seen[-1] and ours[0] == "sendMessage"
    assert sent == "1" and library.message_id == 2


async def test_a_question_arrives_with_its_html_and_buttons(rig: Rig) -> None:
    """What the Bot API reads from the form: chat, HTML text, parse mode, inline keyboard."""
    await rig.channel.send(str(CHAT), QUESTION, {})
    (call,) = rig.api.calls_to("sendMessage")
    rows = [[{"callback_data": f"phq9.q3={n}", "text": label}] for n, label in enumerate(OPTIONS)]
    assert dict(call.params) == {
        "chat_id": CHAT,
        "text": QUESTION.text,
        "parse_mode": "HTML",
        "reply_markup": {"inline_keyboard": rows},
    }


@pytest.mark.parametrize("html", [True, False])
async def test_an_edit_puts_the_librarys_form_on_the_wire(rig: Rig, html: bool) -> None:
    """editMessageText: the same body as the library's, the text changed, the id returned."""
    first = await rig.channel.send(str(CHAT), QUESTION, {})
    assert first is not None
    answered = Rendered("<b>3/9</b> ✓ Several days", html=html)
    edited = await rig.channel.send(str(CHAT), answered, EDIT | {"edit_message_id": first})
    ours = rig.bodies.seen[-1]
    assert rig.api.message(CHAT, int(first))["text"].endswith("✓ Several days")
    with pytest.raises(BadRequest, match="not modified"):  # the same text again: its form counts
        await rig.channel.bot.edit_message_text(
            chat_id=CHAT,
            message_id=int(first),
            text=answered.text,
            parse_mode=ParseMode.HTML if html else None,
        )
    assert ours == rig.bodies.seen[-1] and ours[0] == "editMessageText"
    assert edited == first


FAILURES = {
    "429": (tg.flood(7), DeliveryFailed("telegram: flood limit", retry_after_s=7.0)),
    "403": (tg.blocked(), DeliveryFailed("telegram: forbidden", recipient_gone=True)),
    "400-chat": (tg.chat_not_found(), DeliveryFailed("telegram: bad request (chat not found)", permanent=True)),
    "400-other": (Fault(400, "Bad Request: new rule"), DeliveryFailed("telegram: bad request (rejected)", permanent=True)),
    "502": (tg.server_error(502), DeliveryFailed("telegram: NetworkError")),
}  # fmt: skip
# an edit's "not found" (chat or message) is done: test_an_edit_with_nothing_left_to_do_succeeds
CASES = [("sendMessage", kind) for kind in FAILURES] + [
    ("editMessageText", kind) for kind in FAILURES if kind != "400-chat"
]


@pytest.mark.parametrize(("method", "kind"), CASES)
async def test_each_error_becomes_the_same_delivery_failure(
    rig: Rig, method: str, kind: str
) -> None:
    """429 waits Telegram's retry_after, 403 is the recipient gone, a 400 is permanent (its
    kind named, nothing echoed), a 5xx is retried: for a send and an edit alike."""
    fault, expected = FAILURES[kind]
    first = await rig.channel.send(str(CHAT), QUESTION, {})
    payload = EDIT | {"edit_message_id": first} if method == "editMessageText" else {}
    rig.api.fail(fault, method=method)
    with pytest.raises(DeliveryFailed) as raised:
        await rig.channel.send(str(CHAT), Rendered("✓ Several days"), payload)
    failure = raised.value
    assert failure.reason.startswith(expected.reason), failure.reason
    assert (failure.permanent, failure.recipient_gone, failure.retry_after_s, failure.maybe_sent) == (
        expected.permanent, expected.recipient_gone, expected.retry_after_s, False
    )  # fmt: skip


@pytest.mark.parametrize(
    "fault",
    [
        Fault(400, tg.NOT_MODIFIED),
        Fault(400, "Bad Request: message to edit not found"),
        tg.chat_not_found(),
    ],
    ids=["not-modified", "message-not-found", "chat-not-found"],
)
async def test_an_edit_with_nothing_left_to_do_succeeds(rig: Rig, fault: Fault) -> None:
    """A 400 "not modified" (shown already) or "not found" (message or chat gone) on an
    edit is done: the edit is not retried and the message's id is returned."""
    first = await rig.channel.send(str(CHAT), QUESTION, {})
    rig.api.fail(fault, method="editMessageText")
    edited = await rig.channel.send(str(CHAT), PLAIN, EDIT | {"edit_message_id": first})
    assert edited == first
    assert len(rig.api.calls_to("editMessageText")) == 1
