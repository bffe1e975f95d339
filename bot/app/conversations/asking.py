"""Asking a patient: queue a check-in of some instruments, due now or later. The scheduler
tick's start stage (``bot.app.conversations.starting``) sends its first question once it is due."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.app.context import Context
from bot.domain import conversation as core
from bot.domain.errors import ConfigError, NotFound
from bot.storage.repository import Repository
from bot.storage.tables import Checkin

EXPIRE_AFTER = timedelta(hours=24)  # a check-in asked by hand closes this long after it is due


@dataclass(frozen=True)
class Asking:
    ctx: Context
    expire_after: timedelta = EXPIRE_AFTER

    async def ask(
        self,
        patient_id: int,
        instruments: Sequence[str],
        due_at: datetime | None = None,
        key: str | None = None,
        *,
        ignore_quiet_hours: bool = False,
    ) -> Checkin:
        """Queue a check-in (sent by the next scheduler tick once it is due)."""
        catalog = self.ctx.catalog
        if len(set(instruments)) != len(instruments):
            raise ConfigError("checkin ask", "instruments", "an instrument is listed twice")
        for instrument in instruments:
            catalog.get(instrument)  # unknown or unavailable instruments fail here
        due = due_at or self.ctx.clock()
        async with self.ctx.db.transaction() as session:
            repo = Repository(session)
            patient = await repo.get_patient(patient_id)
            if patient is None:
                raise NotFound("patient", patient_id)
            missing = catalog.no_wording(instruments, patient.language)
            if missing:
                raise ConfigError(
                    "checkin ask",
                    missing[0],
                    f"has no {patient.language!r} wording, and an instrument is never shown "
                    "in a translation that is not official; a clinic adds its official one "
                    f"with {missing[0]}.wording.toml (docs/INSTRUMENTS.md, Languages)",
                )
            checkin = Checkin(
                patient_id=patient_id,
                idempotency_key=key or f"ask:{patient_id}:{uuid.uuid4().hex}",
                instruments=list(instruments),
                status="pending",
                due_at=due,
                expires_at=due + self.expire_after,
                expire_after_s=int(self.expire_after.total_seconds()),
                state=core.to_json(core.Conversation(tuple(instruments))),
                ignore_quiet_hours=ignore_quiet_hours,
            )
            created = await repo.create_checkin(checkin)
            if created is None:
                raise ValueError(f"a check-in with key {key!r} already exists")
            return created
