"""A message from someone not linked to a patient: a clinician (handed to alerting, which
answers their commands), an enrolment code (which links the chat to a patient or a
clinician), or a stranger, who is told nothing about anyone.

Fairness: a stranger gets at most one generic reply per chat per ``STRANGER_REPLY_EVERY``
(the count is of their answered inbound messages in the database, so it holds across
workers), at routine priority. Every reply to an unlinked chat is its own outbox line
(``recipient_id`` is the inbound message's id), so nothing a stranger sends can queue in
front of a patient's or a clinician's messages, or another stranger's reply.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import col, func, select

from bot.app.context import Context
from bot.app.conversations.enrollment import (
    ATTEMPTS_LIMITED,
    CODE_REFUSED,
    redeem,
    start_parameter,
    too_many_attempts,
)
from bot.app.conversations.messages import outbox_rows
from bot.domain import events as ev
from bot.storage import checkins as q
from bot.storage import outbox
from bot.storage.crypto import lookup_hashes
from bot.storage.queued import QueuedMessage
from bot.storage.repository import Repository
from bot.storage.tables import Clinician, InboundMessage

UNKNOWN_SENDER = "unknown sender"  # the note kept on a message nobody could be found for
NOT_ANSWERED = "unknown sender, not answered"  # within an hour of the reply they were sent
STRANGER_REPLY_EVERY = timedelta(hours=1)


async def from_stranger(
    ctx: Context, repo: Repository, message: InboundMessage, now: datetime
) -> str | None:
    """Handle the message in the caller's transaction; the note kept on the inbound record
    (None when all went well)."""
    assert message.id is not None
    session = repo.session
    clinician = await q.clinician_by_address(session, message.channel, message.sender)
    if clinician is not None:
        if ctx.alerting is not None and message.kind in ("text", "button"):
            await ctx.alerting.clinician_says(
                repo, clinician, message.text, f"in{message.id}", now, kind=message.kind
            )
        return None
    code = start_parameter(message.text) if message.kind == "text" else None
    if code is None:
        if message.kind != "text" or message.channel != "telegram":
            return UNKNOWN_SENDER
        if await _answered_lately(repo, message, now):
            return NOT_ANSWERED
        await _reply(ctx, repo, message, ev.Stranger(), None, now, outbox.ROUTINE)
        return UNKNOWN_SENDER
    limited = await too_many_attempts(session, message.channel, message.sender, now)
    linked = None if limited else await redeem(session, code, message.channel, message.sender, now)
    if linked is not None and linked.patient is not None:
        source, patient = f"in{message.id}", linked.patient
        if linked.moved_from is not None:  # the chat they left is told first, no details
            notice = (ev.Relinked(),)
            left = outbox_rows(
                ctx.renderer, patient, notice, f"{source}:left", now, linked.moved_from
            )
            await repo.enqueue(left)
        await repo.enqueue(outbox_rows(ctx.renderer, patient, (ev.Enrolled(),), source, now))
        return None
    if linked is not None:
        await _reply(ctx, repo, message, ev.Enrolled("clinician"), linked.clinician, now)
        return None
    await _reply(ctx, repo, message, ev.EnrollRefused(), None, now)
    return ATTEMPTS_LIMITED if limited else CODE_REFUSED


async def _reply(
    ctx: Context,
    repo: Repository,
    message: InboundMessage,
    intent: ev.Intent,
    clinician: Clinician | None,
    now: datetime,
    priority: int = outbox.REPLY,
) -> None:
    """Answer at the sender's own address: a clinician in their language, a stranger in
    English (nobody knows their language yet); an unlinked chat's reply in a line of its
    own."""
    language = clinician.language if clinician is not None else "en"
    rendered = ctx.renderer.render(intent, message.channel, language)
    assert rendered is not None
    await repo.enqueue([
        QueuedMessage(
            channel=message.channel,
            recipient_kind="clinician" if clinician is not None else "stranger",
            recipient_id=(clinician.id or 0) if clinician is not None else message.id or 0,
            address=message.sender,
            body=rendered.text,
            payload={"intent": type(intent).__name__, "html": rendered.html},
            idempotency_key=f"in{message.id}:0",
            next_attempt_at=now,
            priority=priority,
        )
    ])  # fmt: skip


async def _answered_lately(repo: Repository, message: InboundMessage, now: datetime) -> bool:
    """Whether this chat was sent the generic reply within the last STRANGER_REPLY_EVERY."""
    statement = select(func.count()).where(
        InboundMessage.channel == message.channel,
        col(InboundMessage.sender_hash).in_(lookup_hashes(message.sender)),
        InboundMessage.error == UNKNOWN_SENDER,
        col(InboundMessage.processed_at) > now - STRANGER_REPLY_EVERY,
        col(InboundMessage.id) != message.id,
    )
    answered: int = (await repo.session.exec(statement)).one()
    return answered > 0
