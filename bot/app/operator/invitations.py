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

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app.conversations.enrollment import enrollment_link, issue_code
from bot.app.ports import Clock
from bot.storage.tables import EnrollmentCode

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
        relink: bool = False,
    ) -> Invitation:
        """A fresh code for one patient or clinician, in the caller's transaction; the
        earlier codes of the same person not yet used stop working."""
        username = await self.bot_username()
        now = self.clock()
        await session.exec(
            update(EnrollmentCode)
            .where(
                col(EnrollmentCode.patient_id) == patient_id
                if patient_id is not None
                else col(EnrollmentCode.clinician_id) == clinician_id,
                col(EnrollmentCode.used_at).is_(None),
                col(EnrollmentCode.expires_at) > now,
            )
            .values(expires_at=now)
        )
        code, expires_at = await issue_code(
            session,
            now,
            self.ttl,
            patient_id=patient_id,
            clinician_id=clinician_id,
            relink=relink,
        )
        return Invitation(code, enrollment_link(username, code), expires_at)
