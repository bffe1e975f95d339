"""Outbox rows for a patient: each intent rendered in the patient's channel and language,
keyed ``<source>:<n>`` so that doing the same work twice enqueues nothing twice.

Every use case that messages a patient builds its rows here and enqueues them in its own
transaction (the transactional outbox); delivery happens after, in ``bot.app.outbox.delivery``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from bot.config import Clinic
from bot.domain import events as ev
from bot.rendering.renderer import Rendered, Renderer
from bot.storage import outbox
from bot.storage.queued import QueuedMessage
from bot.storage.tables import Patient


def outbox_rows(
    renderer: Renderer,
    patient: Patient,
    intents: Sequence[ev.Intent],
    source: str,
    now: datetime,
    address: str | None = None,
) -> list[QueuedMessage]:
    """The rows for `intents`; an intent with nothing to say in this channel adds none.
    A `source` starting ``in`` (an inbound message) makes them replies. `address`: another
    of the patient's addresses than their current one (the chat they just left).

    An introduction followed by a question is one message, the introduction above the
    question, wherever the channel lets a message be written freely (:data:`ONE_OPENING`):
    a check-in opens with one message, not two, and a wave of them takes half the
    provider's sends (and half the outbox rows). WhatsApp keeps them apart: a message
    that opens a conversation there is an approved template, not free text. On Telegram
    the introduction stays when the question is edited to show the choice
    (``payload["above"]``, read by ``bot.app.outbox.edits``).

    Edits (Telegram's answered question shown with its choice) come after the new messages:
    rows are sent in id order, and what the patient waits for is the next question (or the
    crisis message), not the old question's check mark. When many patients answer at once
    and the provider's 30 a second binds, each edit then queues behind the others' next
    questions instead of ahead of them."""
    address = address or patient.address
    assert patient.id is not None and address is not None
    answering = source.startswith("in")  # a reply to what the patient just sent
    country = country_of(renderer.clinic, patient)
    rows: list[QueuedMessage] = []
    edits: list[QueuedMessage] = []
    above: str | None = None  # an introduction waiting for its question
    said = [renderer.render(i, patient.channel, patient.language, country) for i in intents]
    for n, (intent, rendered) in enumerate(zip(intents, said, strict=True)):
        if rendered is None:
            continue
        if _opens_with(intents, said, n, patient.channel):
            above = rendered.text
            continue
        intro, above = above, None
        if intro is not None:
            rendered = replace(rendered, text=f"{intro}\n\n{rendered.text}")
        payload: dict[str, object] = {"intent": type(intent).__name__, "html": rendered.html}
        payload["language"] = patient.language  # WhatsApp picks its template by it
        if isinstance(intent, ev.Ask | ev.Answered):
            payload["item"] = intent.item
        if isinstance(intent, ev.Answered):
            payload["edit"] = True  # Telegram edits the question to show the choice
        if rendered.buttons:
            payload["buttons"] = [[b.label, b.data] for b in rendered.buttons]
        if intro is not None and patient.channel == "telegram":
            payload["above"] = intro  # kept above the choice when the question is edited
        (edits if isinstance(intent, ev.Answered) else rows).append(
            QueuedMessage(
                channel=patient.channel,
                recipient_kind="patient",
                recipient_id=patient.id,
                address=address,
                body=rendered.text,
                payload=payload,
                idempotency_key=f"{source}:{n}",
                next_attempt_at=now,
                priority=priority(intent, answering),
            )
        )
    return rows + edits


ONE_OPENING = frozenset({"telegram", "sms", "console"})  # introduction and question together


def _opens_with(
    intents: Sequence[ev.Intent], said: Sequence[Rendered | None], n: int, channel: str
) -> bool:
    """Intent `n` is an introduction that goes above the question after it. A question
    that renders to nothing in this channel has nothing to go above: the introduction is
    then its own message, not carried onto whatever message comes next."""
    return (
        channel in ONE_OPENING
        and isinstance(intents[n], ev.Intro)
        and n + 1 < len(intents)
        and isinstance(intents[n + 1], ev.Ask)
        and said[n + 1] is not None
    )


def country_of(clinic: Clinic, patient: Patient) -> str:
    """The patient's country, for their crisis lines: an SMS patient's number says it
    (E.164), else their time zone, else it is the clinic's own."""
    phone = patient.address if patient.channel in ("sms", "whatsapp") else None
    phone = phone.removeprefix("whatsapp:") if phone else None
    return clinic.country_of(phone, patient.timezone)


def priority(intent: ev.Intent, answering: bool) -> int:
    """Crisis resources before everything; replies before scheduled outreach."""
    if isinstance(intent, ev.CrisisResources):
        return outbox.URGENT
    return outbox.REPLY if answering else outbox.ROUTINE
