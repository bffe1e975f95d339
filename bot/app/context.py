"""What every use case is handed: the database, the instrument catalog, the renderer, the
clinic's settings, the clock, and the alerting use case (None in tests that leave alerts
out). Built once by ``bot.bootstrap`` and shared by every use case, so what a test changes
here (the clinic's quiet hours, say) every use case sees.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from bot.app.alerts.alerting import Alerting
from bot.app.histogram import Histogram
from bot.app.ports import Clock, HandOff
from bot.config import Clinic
from bot.domain import conversation as core
from bot.instruments import Catalog
from bot.rendering.renderer import Renderer
from bot.storage.database import Database
from bot.storage.tables import Patient


@dataclass
class Underway:
    """How many inbound messages this process is handling right now (turns begun and not
    ended). Telegram's pacer reads it: a crisis message sent while several turns are under
    way may be the first of a storm of them (`bot.app.outbox.pacing.Pacer`, `coming`), and
    so do alert digests (`bot.app.alerts.digests.Digests.crowded`). `took`: how long each
    turn took, for ``/metrics`` (``checkin_turn_seconds``)."""

    count: int = 0
    took: Histogram = field(default_factory=Histogram)  # how long each took (/metrics)

    @contextlib.contextmanager
    def one(self) -> Iterator[None]:
        self.count += 1
        began = time.perf_counter()
        try:
            yield
        finally:
            self.count -= 1
            self.took.observe(time.perf_counter() - began)


@dataclass
class Context:
    db: Database
    catalog: Catalog
    renderer: Renderer
    clinic: Clinic
    clock: Clock
    alerting: Alerting | None = None
    handoff: HandOff | None = None  # this process's deliverer, while its courier runs
    underway: Underway = field(default_factory=Underway)  # turns being handled now

    def setting(self, patient: Patient) -> core.Setting:
        """What the conversation needs to know beyond its state: the instruments, the
        patient's language, whether scores are shown."""
        return self.setting_for(patient.language)

    def setting_for(self, language: str) -> core.Setting:
        instruments = {i.key: i for i in self.catalog}
        return core.Setting(instruments, language, self.clinic.show_scores)
