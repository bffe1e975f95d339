"""Which message a Telegram edit changes: the provider's id of the question it answers.

An answered question is edited in place to show the choice; the edit's row knows the item,
and the question's own row, sent earlier to the same recipient, holds the provider's id.
Read in the transaction that claims (or hands off) the edit, from as few columns as that
needs.
"""

from __future__ import annotations

from sqlalchemy import bindparam
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage.checkins import Asked
from bot.storage.outbox import ROUTINE, Outgoing
from bot.storage.tables import OutboundMessage


def pacing_priority(message: Outgoing) -> int:
    """The priority `message` waits for a send slot with. An edit only shows the choice on
    a question already answered: it yields the provider's window to every new message (the
    next questions and crisis messages of other patients' turns), as scheduled outreach
    does, and its row keeps its own priority for claims."""
    return ROUTINE if message.payload.get("edit") else message.priority


async def edit_targets(
    session: AsyncSession, claimed: list[Outgoing], asked: Asked | None = None
) -> dict[int, str | None]:
    """For each claimed edit, the provider's id of the question it edits (None: unknown).
    A question sent below its check-in's introduction keeps it: the edit's body is put
    below the same introduction here (the claimed copy only; its row keeps its own).
    `asked`: the last question sent to the turn's patient, read with the patient; an edit
    of that question needs no statement of its own (the usual case: the patient answered
    the question they were sent last)."""
    targets: dict[int, str | None] = {}
    for message in claimed:
        item = message.payload.get("item")
        if message.payload.get("edit") and isinstance(item, str) and message.id is not None:
            provider_id, above = _known(asked, message, item) or await last_question(
                session, message, item
            )
            targets[message.id] = provider_id
            if above:
                message.body = f"{above}\n\n{message.body}"
    return targets


def _known(
    asked: Asked | None, message: Outgoing, item: str
) -> tuple[str | None, str | None] | None:
    """What :func:`last_question` would find, when `asked` is that question: the last
    question sent to the edit's recipient (before the edit, which its turn queued), and
    about the edit's item."""
    if asked is None or message.recipient_kind != "patient":
        return None
    if asked.patient_id != message.recipient_id:
        return None
    if asked.payload.get("item") != item:
        return None
    above = asked.payload.get("above")
    return asked.provider_id, above if isinstance(above, str) else None


# Built once, run with parameters (see `bot.storage.prebuilt`).
_SENT_BEFORE = (
    select(OutboundMessage.provider_id, OutboundMessage.payload)
    .where(
        OutboundMessage.recipient_kind == bindparam("b_kind"),
        OutboundMessage.recipient_id == bindparam("b_recipient"),
        OutboundMessage.status == "sent",
        col(OutboundMessage.id) < bindparam("b_before"),
    )
    .order_by(col(OutboundMessage.id).desc())
    .limit(50)
)


async def last_question(
    session: AsyncSession, message: Outgoing, item: str
) -> tuple[str | None, str | None]:
    """The provider's id of the most recent question about `item` sent to the same
    recipient before `message`, and the introduction it was sent below (None: none).
    Only the columns needed are read: a whole row would decrypt its address and body for
    nothing."""
    params = {
        "b_kind": message.recipient_kind,
        "b_recipient": message.recipient_id,
        "b_before": message.id or 0,
    }
    for provider_id, payload in (await session.exec(_SENT_BEFORE, params=params)).all():
        if payload.get("intent") == "Ask" and payload.get("item") == item:
            above = payload.get("above")
            return provider_id, above if isinstance(above, str) else None
    return None, None
