"""Malformed Telegram updates at the webhook (in-process, the real python-telegram-bot, a
real database): an update that can never be used is answered 200 (a 5xx would have
Telegram resend it for a day), counted, and known only by its id; a text with a lone
surrogate is stored without it; the canary's name and text reach no log record."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from bot.storage.tables import InboundMessage
from tests.fault.conftest import CANARY_CHAT, CANARY_NAME, CANARY_TEXT, SECRET, Rig
from tests.fault.test_bad_updates import nested
from tests.standins.telegram import SECRET_TOKEN_HEADER

pytestmark = pytest.mark.fault
TOO_DEEP_TO_READ = 100_000  # beyond json's own recursion limit


async def texts(rig: Rig) -> list[str]:
    async with rig.app.db.transaction() as session:
        return [row.text for row in (await session.exec(select(InboundMessage))).all()]


async def post_text(rig: Rig, body: str) -> int:
    headers = {SECRET_TOKEN_HEADER: SECRET, "content-type": "application/json"}
    return (await rig.web.post("/telegram", content=body.encode(), headers=headers)).status_code


def canary_update(rig: Rig, **message: object) -> dict[str, object]:
    update = rig.telegram.text_update(CANARY_CHAT, CANARY_TEXT, first_name=CANARY_NAME)
    return {"update_id": update["update_id"], "message": update["message"] | message}


async def test_unusable_updates_are_acknowledged_counted_and_not_stored(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """Unreadable, too deep, unparseable and non-update bodies each get 200 and one count,
    logged by update id (even one json cannot read); nothing is stored, and the next real
    message is recorded."""
    deep = '{"update_id":5,"message":' + "[" * TOO_DEEP_TO_READ + "]" * TOO_DEEP_TO_READ + "}"
    bodies = [
        deep,  # json itself gives up: RecursionError
        json.dumps(canary_update(rig, reply_to_message=nested(900))),  # the library gives up
        json.dumps(canary_update(rig, chat="not a chat")),  # the library cannot parse it
        json.dumps(canary_update(rig, text={"a": CANARY_TEXT})),  # parsed; text not a string
        json.dumps([CANARY_TEXT]),  # not an update at all
        '{"update_id": 7, "message": ',  # cut short
    ]
    for body in bodies:
        assert await post_text(rig, body) == 200
    assert await texts(rig) == []
    logged = [getattr(r, "update_id", None) for r in caplog.records if "skipped" in r.getMessage()]
    assert logged[0] == 5 and logged[-1] == 7 and len(logged) == len(bodies)
    skipped = rig.app.telegram_intake.skipped
    assert sum(skipped.values()) == len(bodies)
    assert skipped[("message", "too_deep")] == 1
    assert skipped[("message", "unparseable")] == 2
    metrics = (await rig.web.get("/metrics")).text
    line = 'checkin_telegram_updates_skipped_total{kind="message",reason="unparseable"} 2'
    assert line in metrics
    assert (await rig.telegram_post(rig.telegram.text_update(CANARY_CHAT, "ok"))).status_code == 200
    assert await texts(rig) == ["ok"]


async def test_a_lone_surrogate_is_dropped_and_the_message_recorded(rig: Rig) -> None:
    """A text with a lone surrogate and a non-character is answered 200 and stored without
    them (it was 503 for ever, the database refusing to encode it)."""
    update = json.dumps(canary_update(rig, text="PLACEHOLDER"))
    body = update.replace("PLACEHOLDER", "so \\udc00tired\\uffff")
    assert await post_text(rig, body) == 200
    assert await texts(rig) == ["so tired"]
    assert not rig.app.telegram_intake.skipped
