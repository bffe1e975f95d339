"""Single-use Telegram enrolment links an operator issues: for a patient to start, for a
clinician to get alerts in Telegram.

The code itself (192 random bits, stored hashed, expiring, redeemed once) is
:mod:`bot.app.conversations.enrollment`. The bot's @username comes from a function the
composition root hands in (``[telegram] bot_username``, else asked of the Bot API); it
raises ``Refused`` when Telegram is not configured or cannot be reached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.conversations.enrollment import enrollment_link, issue_code
from bot.app.ports import Clock

BotUsername = Callable[[], Awaitable[str]]


@dataclass(frozen=True)
class Invitation:
    code: str
    link: str
    expires_at: datetime


@dataclass(frozen=True)
class Invitations:
    clock: Clock
    ttl: timedelta
    bot_username: BotUsername

    async def issue(
        self,
        session: AsyncSession,
        *,
        patient_id: int | None = None,
        clinician_id: int | None = None,
    ) -> Invitation:
        """A fresh code for one patient or clinician, in the caller's transaction."""
        username = await self.bot_username()
        code, expires_at = await issue_code(
            session, self.clock(), self.ttl, patient_id=patient_id, clinician_id=clinician_id
        )
        return Invitation(code, enrollment_link(username, code), expires_at)
