"""Alert messages to a WhatsApp clinician, end to end through the real twilio client and
the WhatsApp stand-in: a notice and a digest alike go as the approved alert template, in
the window or out of it, their words on one line in {{2}}; a digest too long for the
template's 1,024 characters goes as several, and one notice too long loses words, never
its code."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.app.alerts.alerting import Alerting
from bot.app.alerts.notices import ALERT_INTENTS
from bot.channels.whatsapp import (
    BODY_CHARS,
    TEMPLATE_OF,
    TEMPLATE_WORDS_CHARS,
    fitted,
    variable_chars,
)
from bot.domain import events as ev
from bot.rendering.renderer import TEMPLATES_DIR
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Clinician, OutboundMessage, Patient
from scheduler.loop import tick
from tests.test_alert_digests import raise_alert
from tests.test_whatsapp import CLINICIAN, PUBLIC, SENDER, Rig, rig, rows  # noqa: F401

SECOND = timedelta(seconds=1)
CODE = re.compile(r"ACK (\S+)")


def digesting(rig: Rig, window: timedelta) -> Alerting:  # noqa: F811
    """The app's alerting with a digest window (the rig's clock stands still otherwise)."""
    rig.app.deliverer.pacers = {}  # pacing has its own tests
    alerting = rig.app.services.alerting
    assert alerting is not None
    alerting.rules = replace(alerting.rules, digest_window=window)
    return alerting


async def patients_of_one_clinician(rig: Rig, count: int, name: str = "P-{n}") -> list[Patient]:  # noqa: F811
    """A WhatsApp clinician (who has never written: their window is shut) and `count` patients."""
    async with rig.app.db.transaction() as session:
        repo = Repository(session)
        clinician = Clinician(display_name="Dr C", channel="whatsapp", address=CLINICIAN)
        await repo.add(clinician)
        patients = [
            Patient(display_name=name.format(n=n), timezone="UTC", channel="whatsapp",
                    address=f"whatsapp:+1555555{n:04d}", status="active",
                    clinician_id=clinician.id)
            for n in range(1, count + 1)
        ]  # fmt: skip
        for patient in patients:
            await repo.add(patient)
    return patients


async def codes_of(db: Database) -> dict[int, str]:
    return {a.patient_id: a.code for a in await rows(db, Alert)}


def variable(created: dict[str, str]) -> str:
    return str(json.loads(created["ContentVariables"])["2"])


async def clinician_writes(rig: Rig) -> None:  # noqa: F811
    """The clinician writes to the bot (their window opens); the help answer goes back."""
    request = rig.twilio.whatsapp_request(
        f"{PUBLIC}/whatsapp", from_=CLINICIAN, to=SENDER, body="hi"
    )
    assert (await rig.post(request)).status_code == 200
    await tick(rig.app)


@pytest.mark.parametrize("window", ["shut", "open"])
async def test_a_digest_goes_as_the_alert_template_in_or_out_of_the_window(
    rig: Rig,  # noqa: F811
    db: Database,
    window: str,
) -> None:
    """The first alert goes alone; the urgent and the crisis alert raised within the digest
    window after it leave as one alert template, crisis code first in {{2}}, on one line;
    nothing fails or goes to anyone else. Before, with the window shut the digest failed
    ("not an alert") and its alerts went to the backup instead."""
    alerting = digesting(rig, 2 * SECOND)
    first, second, third = await patients_of_one_clinician(rig, 3)
    if window == "open":
        await clinician_writes(rig)
    replies = len(rig.created(CLINICIAN))
    await raise_alert(rig, alerting, first, crisis=False)
    await tick(rig.app)
    rig.clock.now += SECOND / 2
    await raise_alert(rig, alerting, second, crisis=False)
    await raise_alert(rig, alerting, third, crisis=True)
    rig.clock.now += 2 * SECOND
    await tick(rig.app)

    notice, digest = rig.created(CLINICIAN)[replies:]
    assert notice["ContentSid"] == digest["ContentSid"] == rig.sids["alert_en"]
    assert "Body" not in digest
    assert json.loads(digest["ContentVariables"])["1"] == "Lakeside"
    codes, text = await codes_of(db), variable(digest)
    assert text.startswith("2 alerts, most urgent first: 1. CRISIS: P-3,")
    assert CODE.findall(text) == [codes[third.id or 0], codes[second.id or 0]]
    assert codes[first.id or 0] in variable(notice) and "\n" not in text
    assert rig.to(CLINICIAN)[-1]["error_code"] is None  # an approved template: it went
    sent = await rows(db, OutboundMessage, OutboundMessage.recipient_kind == "clinician")
    assert {m.status for m in sent} == {"sent"}
    assert {m.recipient_id for m in sent} == {sent[0].recipient_id}  # nobody else told


async def test_a_long_digest_goes_as_several_templates_with_every_code(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """Fifteen urgent alerts and then a crisis one within the window: the digest of sixteen
    would be some 2,000 characters on one line; it goes as several alert templates, each
    variable inside its share of the 1,024 characters and accepted, numbered on across
    them, the crisis first, every code whole and told once. Before, the one template was
    cut to fit, and the eleven alerts left out reached the clinician only if they asked."""
    alerting = digesting(rig, 2 * SECOND)
    first, *urgent, crisis = await patients_of_one_clinician(rig, 17)
    await raise_alert(rig, alerting, first, crisis=False)
    await tick(rig.app)
    for patient in urgent:
        await raise_alert(rig, alerting, patient, crisis=False)
    await raise_alert(rig, alerting, crisis, crisis=True)
    rig.clock.now += 2 * SECOND
    await tick(rig.app)

    _, *digests = rig.created(CLINICIAN)
    texts = [variable(d) for d in digests]
    assert len(digests) >= 2 and {d["ContentSid"] for d in digests} == {rig.sids["alert_en"]}
    assert all(len(t) <= variable_chars("Lakeside") and "…" not in t for t in texts)
    assert all(len(m["body"]) <= BODY_CHARS for m in rig.to(CLINICIAN))
    assert texts[0].startswith(
        f"16 alerts, most urgent first (message 1 of {len(texts)}): 1. CRISIS: P-17,"
    )
    assert texts[-1].startswith(
        f"16 alerts, most urgent first (message {len(texts)} of {len(texts)}):"
    )
    codes = await codes_of(db)
    told = [c for t in texts for c in CODE.findall(t)]
    assert told[0] == codes[crisis.id or 0]
    assert sorted(told) == sorted(c for p, c in codes.items() if p != first.id)
    sent = await rows(db, OutboundMessage, OutboundMessage.recipient_kind == "clinician")
    assert {m.status for m in sent} == {"sent"}


async def test_a_notice_too_long_for_the_template_loses_words_not_its_code(
    rig: Rig,  # noqa: F811
    db: Database,
) -> None:
    """A patient whose display name runs to 1,200 characters: the lone notice would break
    the template's limit (WhatsApp refuses it, and so every clinician in line); its words
    are cut at a space, its code line kept whole."""
    alerting = digesting(rig, timedelta(0))
    (patient,) = await patients_of_one_clinician(rig, 1, name="P " * 600)
    await raise_alert(rig, alerting, patient, crisis=True)
    await tick(rig.app)

    (notice,) = rig.created(CLINICIAN)
    (code,) = (await codes_of(db)).values()
    text = variable(notice)
    assert text.startswith("CRISIS: P P P") and text.endswith(f"P… Reply ACK {code}")
    assert len(text) <= variable_chars("Lakeside")
    assert len(rig.to(CLINICIAN)[-1]["body"]) <= BODY_CHARS


def notice(code: str, level: str, at: datetime) -> ev.AlertNotice:
    return ev.AlertNotice(code, "suicidality" if level == "crisis" else "message_unprocessed",
                          level, f"P-{code}", {}, 0, at)  # fmt: skip


@pytest.mark.parametrize("intent", ["AlertNotice", "AlertDigest"])
async def test_spanish_alert_messages_use_the_spanish_template(rig: Rig, intent: str) -> None:  # noqa: F811
    """A notice and a digest whose payload names Spanish go by the Spanish alert template
    (the window shut), a cut digest ending in Spanish words. (The payload names the
    clinician's language: tests/test_clinician_language_whatsapp.py.)"""
    at = datetime(2026, 5, 4, 16, tzinfo=UTC)
    notices = [notice("CRIS01", "crisis", at)] + [
        notice(f"URG{n:03d}", "urgent", at) for n in range(15)
    ]
    told = notices[0] if intent == "AlertNotice" else ev.AlertDigest(tuple(notices))
    rendered = rig.app.renderer.render(told, "whatsapp", "es")
    assert rendered is not None
    payload: dict[str, Any] = {"intent": intent, "language": "es", "recipient": "clinician 1"}
    await rig.app.channels["whatsapp"].send(CLINICIAN, rendered, payload)

    (created,) = rig.created(CLINICIAN)
    assert created["ContentSid"] == rig.sids["alert_es"]
    text = variable(created)
    assert "CRIS01" in text and len(rig.to(CLINICIAN)[-1]["body"]) <= BODY_CHARS
    if intent == "AlertDigest":
        assert text.startswith("16 alertas, las más urgentes primero: 1. CRISIS: P-CRIS01,")
        assert re.search(r"…y \d+ alertas más: responda ALERTS para ver la lista$", text)


LONG = "2 alerts, most urgent first:\n1. CRISIS: P-1, suicidal thoughts.\nReply ACK AAA111\n\n2. URGENT: P-2, a message.\nReply ACK BBB222"


def more(hidden: int) -> str:
    return f"+{hidden}"


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (200, "2 alerts, most urgent first: 1. CRISIS: P-1, suicidal thoughts. Reply ACK AAA111 2. URGENT: P-2, a message. Reply ACK BBB222"),
        (90, "2 alerts, most urgent first: 1. CRISIS: P-1, suicidal thoughts. Reply ACK AAA111 +1"),
        (60, "2 alerts, most urgent first: 1. CRISIS:… Reply ACK AAA111 +1"),
        (22, "2… Reply ACK AAA111 +1"),
        (21, "… Reply ACK AAA111 +1"),
    ],
    ids=["whole", "cut between alerts", "cut in words", "one word left", "no word left"],
)  # fmt: skip
def test_fitted_cuts_between_alerts_then_words_never_a_code(limit: int, expected: str) -> None:
    """Whole alerts while they fit, the rest counted; then the first alert's words, at a
    space, its code line whole."""
    assert fitted(LONG, limit, more) == expected


def test_every_alert_message_is_a_template_and_ours_leave_room() -> None:
    """Every alert intent a clinician is sent goes by the alert template, and the alert
    templates we ship use less than the room kept for their own words."""
    assert {TEMPLATE_OF.get(name) for name in ALERT_INTENTS} == {"alert"}
    for path in sorted((TEMPLATES_DIR / "whatsapp").glob("alert_*.json")):
        body = json.loads(path.read_text())["types"]["twilio/text"]["body"]
        assert len(re.sub(r"\{\{\d+\}\}", "", body)) <= TEMPLATE_WORDS_CHARS, path.name
