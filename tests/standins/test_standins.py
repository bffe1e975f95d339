"""The real python-telegram-bot and twilio clients work against the local stand-ins."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import requests
import telegram
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Conflict, Forbidden, NetworkError, RetryAfter, TimedOut
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.rest.api.v2010.account.message import MessageInstance

from bot.channels.twilio_http import (
    AsyncBaseUrlHttpClient,
    BaseUrlHttpClient,
    last_response,
    rebase_url,
    request_url,
    retry_after_s,
)
from tests.standins import telegram as tg
from tests.standins import twilio as tw
from tests.standins import whatsapp as wa
from tests.standins.server import Fault, FaultScript, serve, serve_in_thread

PATIENT = 4242
PHONE = "+15005550006"
SENDER = "+15005550001"
SERVICE = "MG" + "a" * 32
KEYBOARD = InlineKeyboardMarkup(
    [[InlineKeyboardButton(str(n), callback_data=f"a:{n}")] for n in range(3)]
)


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    """PTB 22 warns (an error here) on every RetryAfter unless time periods are timedeltas."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
def telegram_standin() -> tg.TelegramStandIn:
    return tg.TelegramStandIn(max_long_poll_s=0.3)


@pytest.fixture
async def bot(telegram_standin: tg.TelegramStandIn) -> AsyncIterator[telegram.Bot]:
    async with (
        serve(telegram_standin.app) as url,
        telegram.Bot(telegram_standin.token, base_url=f"{url}/bot") as bot,
    ):
        yield bot


@pytest.fixture
def twilio_standin() -> tw.TwilioStandIn:
    return tw.TwilioStandIn()


@pytest.fixture
async def twilio_url(twilio_standin: tw.TwilioStandIn) -> AsyncIterator[str]:
    async with serve(twilio_standin.app) as url:
        yield url


@pytest.fixture
def sms_client(twilio_standin: tw.TwilioStandIn, twilio_url: str) -> Iterator[Client]:
    with BaseUrlHttpClient(twilio_url, timeout_s=2.0) as http_client:
        yield Client(twilio_standin.account_sid, twilio_standin.auth_token, http_client=http_client)


async def send_sms(client: Client, **fields: str) -> MessageInstance:
    """Create a message with the synchronous twilio client, off the event loop."""
    return await asyncio.to_thread(client.messages.create, **({"to": PHONE, "body": "Hi"} | fields))


# -- Telegram ----------------------------------------------------------------------------------


async def test_bot_initialises_with_get_me(
    bot: telegram.Bot, telegram_standin: tg.TelegramStandIn
) -> None:
    """Bot.initialize() calls getMe and learns the stand-in bot's identity."""
    assert bot.username == "checkin_test_bot"
    assert bot.id == 123456
    assert [call.method for call in telegram_standin.calls] == ["getMe"]


async def test_send_message_returns_a_real_message(
    bot: telegram.Bot, telegram_standin: tg.TelegramStandIn
) -> None:
    """sendMessage with an inline keyboard returns a telegram.Message echoing text and keyboard."""
    message = await bot.send_message(PATIENT, "Question 1 of 9", reply_markup=KEYBOARD)

    assert isinstance(message, telegram.Message)
    assert (message.message_id, message.chat.id, message.text) == (1, PATIENT, "Question 1 of 9")
    assert message.from_user is not None and message.from_user.id == bot.id
    assert message.reply_markup == KEYBOARD
    assert message.date.tzinfo is not None
    params = telegram_standin.calls_to("sendMessage")[0].params
    assert params["chat_id"] == PATIENT
    assert params["reply_markup"] == KEYBOARD.to_dict()


async def test_json_body_is_accepted(telegram_standin: tg.TelegramStandIn) -> None:
    """sendMessage also takes a JSON body with a reply_markup object, as the Bot API does."""
    body = {"chat_id": PATIENT, "text": "Hi", "reply_markup": KEYBOARD.to_dict()}
    async with serve(telegram_standin.app) as url, httpx.AsyncClient() as client:
        response = await client.post(f"{url}/bot{telegram_standin.token}/sendMessage", json=body)
    result = response.json()["result"]
    assert (result["chat"]["id"], result["reply_markup"]) == (PATIENT, KEYBOARD.to_dict())


async def test_message_ids_increase_per_chat(bot: telegram.Bot) -> None:
    """Message ids count up within each chat, independently of other chats."""
    ids = [(await bot.send_message(chat, "x")).message_id for chat in (1, 1, 2, 1)]
    assert ids == [1, 2, 1, 3]


async def test_html_is_stripped_from_the_echoed_text(
    bot: telegram.Bot, telegram_standin: tg.TelegramStandIn
) -> None:
    """With parse_mode HTML the Message shows the text without tags, the call keeps the HTML."""
    message = await bot.send_message(
        PATIENT, "<b>Over</b> the last 2 weeks &amp; more", parse_mode="HTML"
    )
    assert message.text == "Over the last 2 weeks & more"
    assert telegram_standin.calls_to("sendMessage")[0].params["text"].startswith("<b>Over</b>")


async def test_a_broken_entity_in_html_is_a_bad_request(bot: telegram.Bot) -> None:
    """Telegram wants every "&" of an HTML message to begin an entity: a bare one, or one
    cut short ("&am"), is refused for good; "&amp;", "&#39;" and "&#x27;" pass."""
    for text in ("Smith & Co", "Smith&amCo", "Smith&amp"):
        with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
            await bot.send_message(PATIENT, text, parse_mode="HTML")
    message = await bot.send_message(PATIENT, "Smith&amp;Co&#39;s &#x27;", parse_mode="HTML")
    assert message.text == "Smith&Co's '"
    assert (await bot.send_message(PATIENT, "Smith & Co")).text == "Smith & Co"  # plain


async def test_edits_change_the_stored_message(
    bot: telegram.Bot, telegram_standin: tg.TelegramStandIn
) -> None:
    """editMessageText and editMessageReplyMarkup return the edited Message and keep it stored."""
    sent = await bot.send_message(PATIENT, "Question 1", reply_markup=KEYBOARD)

    edited = await bot.edit_message_text("Question 1: answered 2", PATIENT, sent.message_id)
    assert isinstance(edited, telegram.Message)
    assert (edited.text, edited.reply_markup, edited.edit_date is not None) == (
        "Question 1: answered 2",
        None,
        True,
    )
    again = await bot.edit_message_reply_markup(PATIENT, sent.message_id, reply_markup=KEYBOARD)
    assert isinstance(again, telegram.Message) and again.reply_markup == KEYBOARD
    assert telegram_standin.sent_texts(PATIENT) == ["Question 1: answered 2"]


async def test_unchanged_edit_and_unknown_message_are_bad_requests(bot: telegram.Bot) -> None:
    """Editing to identical content, or a message that does not exist, fails like Telegram."""
    sent = await bot.send_message(PATIENT, "Same")
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text("Same", PATIENT, sent.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("Other", PATIENT, 999)


async def test_injected_429_raises_retry_after(
    bot: telegram.Bot, telegram_standin: tg.TelegramStandIn
) -> None:
    """A scripted 429 with parameters.retry_after becomes telegram.error.RetryAfter."""
    telegram_standin.fail(tg.flood(retry_after_s=7), method="sendMessage")

    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(PATIENT, "Hi")

    assert caught.value.retry_after == timedelta(seconds=7)
    assert (await bot.send_message(PATIENT, "Hi")).message_id == 1  # the fault was used up


async def test_injected_403_raises_forbidden(
    bot: telegram.Bot, telegram_standin: tg.TelegramStandIn
) -> None:
    """A patient who blocked the bot gives Forbidden on every send, other chats are unaffected."""
    telegram_standin.block(PATIENT)

    for _ in range(2):
        with pytest.raises(Forbidden, match=r"(?i)bot was blocked by the user"):
            await bot.send_message(PATIENT, "Hi")
    assert (await bot.send_message(PATIENT + 1, "Hi")).chat.id == PATIENT + 1


async def test_faults_are_scoped_by_chat_and_counted(
    bot: telegram.Bot, telegram_standin: tg.TelegramStandIn
) -> None:
    """A fault scripted for one chat, twice, hits that chat twice and no other chat."""
    telegram_standin.fail(tg.chat_not_found(), chat_id=PATIENT, times=2)

    assert (await bot.send_message(PATIENT + 1, "Hi")).message_id == 1
    for _ in range(2):
        with pytest.raises(BadRequest, match=r"(?i)chat not found"):
            await bot.send_message(PATIENT, "Hi")
    assert (await bot.send_message(PATIENT, "Hi")).message_id == 1
    assert [call.fault is not None for call in telegram_standin.calls_to("sendMessage")] == [
        False,
        True,
        True,
        False,
    ]


@pytest.mark.parametrize("status", [500, 502])
async def test_server_errors_raise_network_error(
    bot: telegram.Bot, telegram_standin: tg.TelegramStandIn, status: int
) -> None:
    """A scripted 5xx becomes telegram.error.NetworkError."""
    telegram_standin.fail(tg.server_error(status))
    with pytest.raises(NetworkError):
        await bot.send_message(PATIENT, "Hi")


async def test_slow_answer_raises_timed_out_yet_the_message_was_sent(
    bot: telegram.Bot, telegram_standin: tg.TelegramStandIn
) -> None:
    """A delay beyond the read timeout raises TimedOut, although Telegram still sends the message."""
    telegram_standin.fail(Fault.slow(0.5))

    with pytest.raises(TimedOut):
        await bot.send_message(PATIENT, "Hi", read_timeout=0.1)

    await asyncio.sleep(0.6)
    assert telegram_standin.sent_texts(PATIENT) == ["Hi"]


async def test_dropped_connection_raises_network_error(
    bot: telegram.Bot, telegram_standin: tg.TelegramStandIn
) -> None:
    """A connection closed mid-response becomes NetworkError, and nothing was sent."""
    telegram_standin.fail(Fault.dropped())
    with pytest.raises(NetworkError, match="RemoteProtocolError"):
        await bot.send_message(PATIENT, "Hi")
    assert telegram_standin.sent_texts(PATIENT) == []


async def test_wrong_token_is_rejected(telegram_standin: tg.TelegramStandIn) -> None:
    """A bot with another token fails to initialise with InvalidToken."""
    async with serve(telegram_standin.app) as url:
        with pytest.raises(telegram.error.InvalidToken):
            async with telegram.Bot("999:WRONG", base_url=f"{url}/bot"):
                pass


async def test_get_updates_honours_offset_and_long_poll(
    bot: telegram.Bot, telegram_standin: tg.TelegramStandIn
) -> None:
    """Queued updates come back as telegram.Update; a higher offset confirms them; the wait is bounded."""
    sent = await bot.send_message(PATIENT, "Question 1", reply_markup=KEYBOARD)
    telegram_standin.queue_update(telegram_standin.text_update(PATIENT, "/start abc"))
    telegram_standin.queue_update(telegram_standin.callback_update(PATIENT, sent.message_id, "a:2"))

    updates = await bot.get_updates(timeout=5)
    assert updates[0].message is not None and updates[0].message.text == "/start abc"
    assert updates[0].message.message_id == 2  # shares the chat's sequence with the bot's messages
    query = updates[1].callback_query
    assert query is not None and query.data == "a:2" and query.message == sent

    started = asyncio.get_running_loop().time()
    assert await bot.get_updates(offset=updates[-1].update_id + 1, timeout=5) == ()
    assert asyncio.get_running_loop().time() - started < 1.0
    assert (await bot.get_webhook_info()).pending_update_count == 0


async def test_negative_offset_keeps_only_the_latest_updates(
    bot: telegram.Bot, telegram_standin: tg.TelegramStandIn
) -> None:
    """getUpdates with offset -1 returns the last update and confirms the ones before it."""
    for text in ("1", "2", "3"):
        telegram_standin.queue_update(telegram_standin.text_update(PATIENT, text))
    assert [u.message.text for u in await bot.get_updates(offset=-1) if u.message] == ["3"]
    assert (await bot.get_webhook_info()).pending_update_count == 1


async def test_long_poll_wakes_for_a_new_update(
    bot: telegram.Bot, telegram_standin: tg.TelegramStandIn
) -> None:
    """An update queued while getUpdates is waiting is returned by that same call."""
    asyncio.get_running_loop().call_later(
        0.05, telegram_standin.queue_update, telegram_standin.text_update(PATIENT, "3")
    )
    updates = await bot.get_updates(timeout=5)
    assert [u.message.text for u in updates if u.message] == ["3"]


async def test_webhook_methods_and_conflict(
    bot: telegram.Bot, telegram_standin: tg.TelegramStandIn
) -> None:
    """setWebhook is reflected in getWebhookInfo, blocks getUpdates with Conflict, and deleteWebhook undoes it."""
    assert await bot.set_webhook("https://checkin.example/telegram", secret_token="s3cret")
    info = await bot.get_webhook_info()
    assert (info.url, telegram_standin.webhook_secret) == (
        "https://checkin.example/telegram",
        "s3cret",
    )
    with pytest.raises(Conflict):
        await bot.get_updates()
    assert await bot.delete_webhook()
    assert (await bot.get_webhook_info()).url == ""


async def test_answer_callback_query_is_recorded(
    bot: telegram.Bot, telegram_standin: tg.TelegramStandIn
) -> None:
    """answerCallbackQuery for a query built by the helper succeeds and is recorded."""
    sent = await bot.send_message(PATIENT, "Q", reply_markup=KEYBOARD)
    update = telegram.Update.de_json(
        telegram_standin.callback_update(PATIENT, sent.message_id, "a:1"), bot
    )
    assert update.callback_query is not None

    assert await update.callback_query.answer()
    assert telegram_standin.answered_queries == [update.callback_query.id]


def test_text_update_builder_parses_as_a_private_message() -> None:
    """build_text_update gives JSON that PTB reads as a private-chat command from the patient."""
    date = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    update = telegram.Update.de_json(
        tg.build_text_update(
            update_id=1, chat_id=PATIENT, message_id=5, text="/start tok", date=date
        ),
        None,
    )
    message = update.effective_message
    assert message is not None and message.chat.type == "private" and message.date == date
    assert update.effective_user is not None and update.effective_user.id == PATIENT
    assert message.entities[0].type == "bot_command"


# -- Twilio ------------------------------------------------------------------------------------


async def test_client_creates_a_message(
    sms_client: Client, twilio_standin: tw.TwilioStandIn
) -> None:
    """messages.create reaches the stand-in with Twilio's form fields and Basic auth, and gets a Message."""
    message = await send_sms(
        sms_client,
        messaging_service_sid=SERVICE,
        body="Time for your check-in",
        status_callback="https://checkin.example/sms/status",
    )

    assert message.sid is not None and message.sid.startswith("SM") and len(message.sid) == 34
    assert (message.status, message.to, message.num_segments) == ("accepted", PHONE, "1")
    assert message.date_created is not None and message.date_created.tzinfo is not None
    call = twilio_standin.calls[0]
    assert call.auth == (twilio_standin.account_sid, twilio_standin.auth_token)
    assert call.params == {
        "To": PHONE,
        "MessagingServiceSid": SERVICE,
        "Body": "Time for your check-in",
        "StatusCallback": "https://checkin.example/sms/status",
    }


async def test_message_from_a_number_is_queued_with_segments(sms_client: Client) -> None:
    """With From, the message is queued and num_segments counts UCS-2 parts of 67."""
    message = await send_sms(sms_client, from_=SENDER, body="Danke 🙂 " * 10)
    assert (message.status, message.num_segments, message.from_) == ("queued", "2", SENDER)


async def test_wrong_credentials_get_401(twilio_standin: tw.TwilioStandIn, twilio_url: str) -> None:
    """A client with the wrong auth token gets TwilioRestException 401, code 20003."""
    with BaseUrlHttpClient(twilio_url) as http_client:
        client = Client(twilio_standin.account_sid, "wrong", http_client=http_client)
        with pytest.raises(TwilioRestException) as caught:
            await send_sms(client, from_=SENDER)
    assert (caught.value.status, caught.value.code) == (401, 20003)


async def test_injected_21610_raises_with_its_code(
    sms_client: Client, twilio_standin: tw.TwilioStandIn
) -> None:
    """A scripted 21610 becomes TwilioRestException(status=400, code=21610)."""
    twilio_standin.fail(tw.unsubscribed(), to=PHONE)
    with pytest.raises(TwilioRestException) as caught:
        await send_sms(sms_client, from_=SENDER)
    assert (caught.value.status, caught.value.code) == (400, 21610)
    assert "unsubscribed recipient" in caught.value.msg


async def test_opted_out_number_is_refused_every_time(
    sms_client: Client, twilio_standin: tw.TwilioStandIn
) -> None:
    """After opt_out, every message to that number fails with 21610."""
    twilio_standin.opt_out(PHONE)
    for _ in range(2):
        with pytest.raises(TwilioRestException) as caught:
            await send_sms(sms_client, from_=SENDER)
        assert caught.value.code == 21610


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"to": "12345"}, 21211),
        ({"to": ""}, 21604),
        ({}, 21603),
        ({"body": ""}, 21602),
        ({"body": "x" * 1601}, 21617),
    ],
)
async def test_validation_errors_carry_twilio_codes(
    sms_client: Client, fields: dict[str, str], code: int
) -> None:
    """Invalid parameters are refused with Twilio's error code, like the real API."""
    with pytest.raises(TwilioRestException) as caught:
        await send_sms(sms_client, **({"from_": SENDER} if code != 21603 else {}) | fields)
    assert (caught.value.status, caught.value.code) == (400, code)


async def test_a_body_over_1600_characters_is_refused_in_twilios_error_shape(
    twilio_standin: tw.TwilioStandIn, twilio_url: str
) -> None:
    """1,600 characters go; 1,601 get HTTP 400 with Twilio's error body, code 21617."""
    path = f"{twilio_url}/2010-04-01/Accounts/{twilio_standin.account_sid}/Messages.json"
    auth = (twilio_standin.account_sid, twilio_standin.auth_token)
    async with httpx.AsyncClient(auth=auth) as client:
        form = {"To": PHONE, "From": SENDER}
        fits = await client.post(path, data=form | {"Body": "x" * tw.MAX_BODY_CHARS})
        over = await client.post(path, data=form | {"Body": "x" * (tw.MAX_BODY_CHARS + 1)})
    assert (fits.status_code, over.status_code) == (201, 400)
    assert over.json() == {
        "code": 21617,
        "message": "The concatenated message body exceeds the 1600 character limit.",
        "more_info": "https://www.twilio.com/docs/errors/21617",
        "status": 400,
    }


@pytest.mark.parametrize(
    ("variable", "code"),
    [(1024 - len("Alert: "), None), (1024 - len("Alert: ") + 1, 21658), (1601, 21658)],
    ids=["body at 1,024", "body over 1,024", "variable over 1,600"],
)
async def test_whatsapp_refuses_a_template_too_long_once_filled_in(
    variable: int, code: int | None
) -> None:
    """A template whose body passes WhatsApp's 1,024 characters once its variables are
    filled in, or a variable over 1,600, is refused as Twilio does (400, 21658)."""
    stand_in = wa.WhatsAppStandIn()
    body = {"twilio/text": {"body": "Alert: {{1}}"}}
    stand_in.add_content("HX" + "0" * 32, {"types": body}, approved=True)
    async with serve(stand_in.app) as url:
        with BaseUrlHttpClient(url, timeout_s=2.0) as http:
            client = Client(stand_in.account_sid, stand_in.auth_token, http_client=http)
            params = {"to": f"whatsapp:{PHONE}", "from_": f"whatsapp:{SENDER}",
                      "content_sid": "HX" + "0" * 32,
                      "content_variables": json.dumps({"1": "x" * variable})}  # fmt: skip
            answer = await asyncio.to_thread(create_or_error, client, params)
    assert answer == ((400, code) if code else (201, None))


@pytest.mark.parametrize(("chars", "answer"), [(1600, (201, None)), (1601, (400, 21617))])
async def test_whatsapp_refuses_a_free_form_body_over_1600_characters(
    chars: int, answer: tuple[int, int | None]
) -> None:
    """A WhatsApp session message's body is held to SMS's 1,600 characters (21617)."""
    stand_in = wa.WhatsAppStandIn()
    async with serve(stand_in.app) as url:
        with BaseUrlHttpClient(url, timeout_s=2.0) as http:
            client = Client(stand_in.account_sid, stand_in.auth_token, http_client=http)
            params = {"to": f"whatsapp:{PHONE}", "from_": f"whatsapp:{SENDER}", "body": "x" * chars}
            assert await asyncio.to_thread(create_or_error, client, params) == answer


def create_or_error(client: Client, params: dict[str, str]) -> tuple[int, int | None]:
    """(201, None) if the message was created, else Twilio's (status, code)."""
    try:
        client.messages.create(**params)
    except TwilioRestException as exc:
        return exc.status, exc.code
    return 201, None


async def test_injected_429_exposes_retry_after(
    sms_client: Client, twilio_standin: tw.TwilioStandIn
) -> None:
    """A 429 raises TwilioRestException(429); its Retry-After is read from last_response() in the same thread."""
    twilio_standin.fail(tw.too_many_requests(retry_after_s=5))

    def create() -> tuple[TwilioRestException, float | None]:
        try:
            sms_client.messages.create(to=PHONE, from_=SENDER, body="Hi")
        except TwilioRestException as exc:
            return exc, retry_after_s(last_response())
        raise AssertionError("expected a 429")

    exc, retry_after = await asyncio.to_thread(create)
    assert (exc.status, exc.code, retry_after) == (429, 20429, 5.0)


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_raise_twilio_rest_exception(
    sms_client: Client, twilio_standin: tw.TwilioStandIn, status: int
) -> None:
    """A scripted 5xx becomes TwilioRestException with that status."""
    twilio_standin.fail(tw.server_error(status))
    with pytest.raises(TwilioRestException) as caught:
        await send_sms(sms_client, from_=SENDER)
    assert caught.value.status == status


async def test_slow_answer_times_out(twilio_standin: tw.TwilioStandIn, twilio_url: str) -> None:
    """A delay beyond the client timeout raises requests' ReadTimeout (twilio does not wrap it)."""
    twilio_standin.fail(Fault.slow(0.5))
    with BaseUrlHttpClient(twilio_url, timeout_s=0.1) as http_client:
        client = Client(
            twilio_standin.account_sid, twilio_standin.auth_token, http_client=http_client
        )
        with pytest.raises(requests.exceptions.ReadTimeout):
            await send_sms(client, from_=SENDER)
    await asyncio.sleep(0.5)
    assert len(twilio_standin.messages) == 1  # Twilio accepted it after all


async def test_dropped_connection_raises_a_requests_error(
    sms_client: Client, twilio_standin: tw.TwilioStandIn
) -> None:
    """A connection closed mid-response raises a requests exception, and no message exists."""
    twilio_standin.fail(Fault.dropped())
    with pytest.raises(requests.exceptions.RequestException):
        await send_sms(sms_client, from_=SENDER)
    assert twilio_standin.messages == {}


async def test_async_client_creates_a_message(
    twilio_standin: tw.TwilioStandIn, twilio_url: str
) -> None:
    """The aiohttp-based client reaches the stand-in too, without aiohttp deprecation warnings."""
    async with AsyncBaseUrlHttpClient(twilio_url, timeout_s=2.0) as http_client:
        client = Client(
            twilio_standin.account_sid, twilio_standin.auth_token, http_client=http_client
        )
        message = await client.messages.create_async(to=PHONE, from_=SENDER, body="Hi")
        twilio_standin.fail(tw.too_many_requests(retry_after_s=2))
        with pytest.raises(TwilioRestException):
            await client.messages.create_async(to=PHONE, from_=SENDER, body="Hi")
        assert retry_after_s(last_response()) == 2.0
    assert message.sid in twilio_standin.messages
    assert twilio_standin.calls[0].auth == (twilio_standin.account_sid, twilio_standin.auth_token)


def test_threaded_server_serves_a_synchronous_client(twilio_standin: tw.TwilioStandIn) -> None:
    """serve_in_thread lets the synchronous twilio client be called directly."""
    with serve_in_thread(twilio_standin.app) as url, BaseUrlHttpClient(url) as http_client:
        client = Client(
            twilio_standin.account_sid, twilio_standin.auth_token, http_client=http_client
        )
        sid = client.messages.create(to=PHONE, from_=SENDER, body="Hi").sid
        twilio_standin.set_status(sid, "delivered")
        assert client.messages(sid).fetch().status == "delivered"


def test_inbound_signature_validates_and_breaks_when_altered() -> None:
    """The signed inbound SMS passes RequestValidator.validate, and fails once one field changes."""
    standin = tw.TwilioStandIn()
    request = standin.inbound_request(
        "https://checkin.example/sms/inbound?x=1", from_=PHONE, to=SENDER, body="2"
    )
    validator = RequestValidator(standin.auth_token)
    signature = request.headers["X-Twilio-Signature"]

    assert validator.validate(request.url, request.form, signature)
    assert not validator.validate(request.url, request.form | {"Body": "3"}, signature)
    assert not validator.validate("https://checkin.example/sms/inbound", request.form, signature)


async def test_status_callback_is_signed_for_its_url(
    sms_client: Client, twilio_standin: tw.TwilioStandIn
) -> None:
    """status_request signs a callback to the StatusCallback URL the message was created with."""
    message = await send_sms(
        sms_client, from_=SENDER, status_callback="https://checkin.example/sms/status"
    )
    request = twilio_standin.status_request(message.sid, "undelivered", error_code=30003)

    assert request.url == "https://checkin.example/sms/status"
    assert request.form["MessageStatus"] == "undelivered" and request.form["ErrorCode"] == "30003"
    assert RequestValidator(twilio_standin.auth_token).validate(
        request.url, request.form, request.headers["X-Twilio-Signature"]
    )


async def test_signed_request_posts_to_an_asgi_app() -> None:
    """A SignedRequest posts with httpx as form data our Starlette app can validate."""

    async def inbound(request: Request) -> PlainTextResponse:
        form = await request.form()
        ok = RequestValidator("tok").validate(
            str(request.url), form, request.headers["X-Twilio-Signature"]
        )
        return PlainTextResponse("ok" if ok else "forged", status_code=200 if ok else 403)

    app = Starlette(routes=[Route("/sms", inbound, methods=["POST"])])
    params = tw.inbound_sms_params(
        account_sid="AC" + "1" * 32, from_=PHONE, to=SENDER, body="Stop please"
    )
    signed = tw.signed_request("http://testserver/sms", params, "tok")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        response = await client.post(signed.url, data=signed.form, headers=signed.headers)
    assert response.text == "ok"


@pytest.mark.parametrize(
    ("body", "encoding", "segments"),
    [
        ("", "GSM-7", 1),
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),
        ("€" * 81, "GSM-7", 2),
        ("a" + "€" * 76, "GSM-7", 1),
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 3),  # 306 septets, but the escape is not split
        ("é" * 161, "GSM-7", 2),
        ("ç" * 70, "UCS-2", 1),
        ("ç" * 71, "UCS-2", 2),
        ("ç" * 134, "UCS-2", 2),
        ("ç" * 135, "UCS-2", 3),
        ("’" + "a" * 69, "UCS-2", 1),
        ("🙂" * 35, "UCS-2", 1),
        ("🙂" * 36, "UCS-2", 2),
        ("a" * 66 + "🙂" + "a" * 66, "UCS-2", 3),  # 134 units, but the surrogate pair is not split
    ],
)
def test_segments(body: str, encoding: str, segments: int) -> None:
    """Segment counts follow GSM-7 160/153 and UCS-2 70/67, never splitting escapes or surrogates."""
    assert (tw.sms_encoding(body), tw.sms_segments(body)) == (encoding, segments)


def test_gsm7_table_has_127_basic_characters() -> None:
    """The GSM 03.38 basic table (less ESC) has 127 distinct characters."""
    assert len(set(tw.GSM7_BASIC)) == len(tw.GSM7_BASIC) == 127


# -- the base-URL HTTP client and the shared plumbing -----------------------------------------


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        (
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json",
            "http://127.0.0.1:8765",
            "http://127.0.0.1:8765/2010-04-01/Accounts/AC1/Messages.json",
        ),
        (
            "https://messaging.twilio.com/v1/Services?PageSize=5",
            "https://proxy.example/twilio/",
            "https://proxy.example/twilio/v1/Services?PageSize=5",
        ),
        (
            "https://api.sydney.au1.twilio.com/2010-04-01/x.json",
            "http://127.0.0.1:1",
            "http://127.0.0.1:1/2010-04-01/x.json",
        ),
    ],
)
def test_rebase_url_keeps_path_and_query(url: str, base: str, expected: str) -> None:
    """rebase_url swaps scheme and host (and adds the base path) and keeps path and query."""
    assert rebase_url(url, base) == expected


def test_default_base_url_rewrites_nothing() -> None:
    """With the default base URL every twilio product keeps its own host."""
    url = "https://messaging.twilio.com/v1/Services"
    assert request_url(url, "https://api.twilio.com/") == url
    assert request_url(url, "http://127.0.0.1:1") == "http://127.0.0.1:1/v1/Services"


async def test_rebased_request_keeps_path_query_and_original_host() -> None:
    """A request for another twilio product arrives with its path, query and X-Forwarded-Host."""

    async def echo(request: Request) -> JSONResponse:
        seen = {"path": request.url.path, "query": request.url.query}
        return JSONResponse(seen | {"host": request.headers["x-forwarded-host"]})

    app = Starlette(routes=[Route("/{path:path}", echo)])
    async with serve(app) as url:
        with BaseUrlHttpClient(f"{url}/prefix") as client:
            response = await asyncio.to_thread(
                client.request, "GET", "https://messaging.twilio.com/v1/Services", {"PageSize": 5}
            )
    assert json.loads(response.text) == {
        "path": "/prefix/v1/Services",
        "query": "PageSize=5",
        "host": "messaging.twilio.com",
    }


@pytest.mark.parametrize("base", ["127.0.0.1:8000", "ftp://x", "http://x?y=1", ""])
def test_bad_base_url_is_refused(base: str) -> None:
    """A base URL that is not http(s)://host is refused at construction."""
    with pytest.raises(ValueError, match="api_base_url"):
        BaseUrlHttpClient(base)


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    """retry_after_s reads delta seconds, HTTP dates relative to now, and absence."""
    from twilio.http.response import Response

    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert retry_after_s(Response(429, "", {"Retry-After": "12"})) == 12.0
    assert (
        retry_after_s(Response(429, "", {"Retry-After": "Sun, 01 Mar 2026 12:00:30 GMT"}), now=now)
        == 30.0
    )
    assert retry_after_s(Response(429, "", {})) is None
    assert retry_after_s(None) is None


def test_fault_script_matches_first_in_first_out() -> None:
    """Faults are consumed in order by the first request matching method and key."""
    script = FaultScript()
    first, second = Fault(status=500), Fault(status=502)
    script.add(first, method="sendMessage", key="1", times=1)
    script.add(second, method=None, key=None, times=2)

    taken = [
        script.take("getMe", None),
        script.take("sendMessage", "1"),
        script.take("sendMessage", "1"),
    ]
    assert taken == [second, first, second]
    assert (script.take("sendMessage", "1"), script.pending()) == (None, 0)
