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

from bot.storage.outbox import ROUTINE, Outgoing
from bot.storage.tables import OutboundMessage


def pacing_priority(message: Outgoing) -> int:
    """The priority `message` waits for a send slot with. An edit only shows the choice on
    a question already answered: it yields the provider's window to every new message (the
    next questions and crisis messages of other patients' turns), as scheduled outreach
    does, and its row keeps its own priority for claims."""
    return ROUTINE if message.payload.get("edit") else message.priority


async def edit_targets(session: AsyncSession, claimed: list[Outgoing]) -> dict[int, str | None]:
    """For each claimed edit, the provider's id of the question it edits (None: unknown).
    A question sent below its check-in's introduction keeps it: the edit's body is put
    below the same introduction here (the claimed copy only; its row keeps its own)."""
    targets: dict[int, str | None] = {}
    for message in claimed:
        item = message.payload.get("item")
        if message.payload.get("edit") and isinstance(item, str) and message.id is not None:
            provider_id, above = await last_question(session, message, item)
            targets[message.id] = provider_id
            if above:
                message.body = f"{above}\n\n{message.body}"
    return targets


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
