"""The tick's escalation stage: alerts nobody acknowledged in time go to the next
clinician in line (the rules and the timing are ``bot.domain.alerts.lifecycle``'s)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.app.context import Context
from bot.storage.repository import Repository


@dataclass(frozen=True)
class Escalation:
    ctx: Context

    async def escalate_due(self) -> int:
        """Escalate every alert past its acknowledgement deadline; how many."""
        if self.ctx.alerting is None:
            return 0
        async with self.ctx.db.transaction() as session:
            return await self.ctx.alerting.escalate_due(Repository(session), self.ctx.clock())
