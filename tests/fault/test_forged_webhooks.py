"""10,000 forged or replayed webhooks against the Starlette app (in-process, httpx ASGI
transport), after a canary patient on each channel has sent real answers: the forged ones
get 403, the replays get the same 200 as the first delivery, and not one row in any table
changes, nor does anything reach a provider."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import httpx
import pytest

from bot.storage.database import Database
from scheduler.loop import tick
from tests.fault.conftest import (
    CANARY_CHAT,
    CANARY_PHONE,
    CANARY_TEXT,
    CLINIC_NUMBER,
    PUBLIC,
    Rig,
    canary_patients,
    snapshot,
)
from tests.standins.twilio import signed_request

pytestmark = pytest.mark.fault

# Forgeries never reach the database, so dialect matters only for replays: SQLite takes the
# full 10,000 and PostgreSQL 2,000 (with the same mix), to keep the suite within minutes.
TOTAL = {"sqlite": 10_000, "postgresql": 2_000}
BATCH = 100  # requests in flight at once


async def _genuine_traffic(rig: Rig) -> tuple[list[dict[str, object]], list[object]]:
    """Both canary patients start a PHQ-9 and answer by webhook; the requests, for replay."""
    telegram_id, sms_id = await canary_patients(rig.app.db)
    for patient_id in (telegram_id, sms_id):
        await rig.app.services.asking.ask(patient_id, ["phq9"])
    await tick(rig.app)
    updates, sms = [], []
    for text in ("2", CANARY_TEXT, "1"):
        update = rig.telegram.text_update(CANARY_CHAT, text)
        assert (await rig.telegram_post(update)).status_code == 200
        updates.append(update)
        request = rig.twilio.inbound_request(
            f"{PUBLIC}/sms", from_=CANARY_PHONE, to=CLINIC_NUMBER, body=text
        )
        assert (await rig.sms_post(request)).status_code == 200
        sms.append(request)
    await tick(rig.app)
    return updates, sms


def _forgeries(
    rig: Rig, updates: list[dict[str, object]], sms: list
) -> list[Callable[[], Awaitable[httpx.Response]]]:  # type: ignore[type-arg]
    """Each kind of forgery and replay, as a request factory with the status it must get."""
    token = rig.twilio.auth_token
    valid = sms[0]
    tampered = dict(valid.form, Body="3")  # the signature covers the body
    unsigned = {k: v for k, v in valid.headers.items() if k != "X-Twilio-Signature"}
    wrong_url = signed_request(f"{PUBLIC}/elsewhere", valid.form, token)
    wrong_key = signed_request(valid.url, valid.form, "not-the-auth-token")
    fresh = rig.twilio.inbound_request(  # a new message, but signed with the wrong token
        f"{PUBLIC}/sms", from_=CANARY_PHONE, to=CLINIC_NUMBER, body="0"
    )
    fresh_forged = signed_request(fresh.url, fresh.form, "guess")
    new_update = rig.telegram.text_update(CANARY_CHAT, "0")
    web = rig.web
    return [
        lambda: rig.telegram_post(new_update, secret=None),
        lambda: rig.telegram_post(new_update, secret="wrong-secret"),
        lambda: rig.telegram_post(new_update, secret=""),
        lambda: web.post("/sms", data=valid.form, headers=unsigned),
        lambda: web.post("/sms", data=tampered, headers=valid.headers),
        lambda: web.post("/sms", data=valid.form, headers=wrong_url.headers),
        lambda: web.post("/sms", data=valid.form, headers=wrong_key.headers),
        lambda: web.post("/sms", data=fresh.form, headers=fresh_forged.headers),
        lambda: web.post("/sms/status", data=valid.form, headers=unsigned),
        *(lambda u=u: rig.telegram_post(u) for u in updates),  # replays: same update_id
        *(lambda r=r: rig.sms_post(r) for r in sms),  # replays: same MessageSid
    ]


FORGED_KINDS = 9  # the first nine factories above are forgeries (403); the rest replays (200)


async def test_ten_thousand_forged_or_replayed_webhooks_write_nothing(
    rig: Rig, db: Database
) -> None:
    """After real answers, 10,000 forged (403) or replayed (200) webhooks change no row."""
    total = TOTAL[db.dialect]
    updates, sms = await _genuine_traffic(rig)
    before = await snapshot(db)
    assert len(before["answer"]) == 4  # two answers on each channel; the canary text re-asked
    sent_before = (len(rig.telegram.calls), len(rig.twilio.calls))
    factories = _forgeries(rig, updates, sms)
    # Forgeries are the cheap flood an attacker can send; replays each cost a transaction,
    # so they are one request in ten (1,000 of 10,000), every kind many times over.
    weighted = [k for k in range(len(factories)) for _ in range(1 if k >= FORGED_KINDS else 6)]
    plan = list(itertools.islice(itertools.cycle(weighted), total))
    statuses: dict[int, set[int]] = {}
    for start in range(0, total, BATCH):
        kinds = plan[start : start + BATCH]
        responses = await asyncio.gather(*(factories[k]() for k in kinds))
        for kind, response in zip(kinds, responses, strict=True):
            statuses.setdefault(kind, set()).add(response.status_code)
    await tick(rig.app)  # the scheduler finds nothing new to process or send
    expected = {k: {403 if k < FORGED_KINDS else 200} for k in range(len(factories))}
    assert statuses == expected
    assert await snapshot(db) == before
    assert (len(rig.telegram.calls), len(rig.twilio.calls)) == sent_before
