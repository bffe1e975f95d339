"""The duplicate window: a provider answering after the client gave up, and the settings
that bound how soon (and how often) a message that may have arrived is sent again."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.app.outbox.delivery import Deliverer
from bot.app.outbox.sending import Report
from bot.bootstrap import build
from bot.channels.telegram import TelegramChannel
from bot.channels.telegram_request import AiohttpRequest
from bot.config.sections import settings_from_mapping
from bot.storage.database import Database
from bot.storage.tables import OutboundMessage
from tests.standins.server import Fault, serve
from tests.standins.telegram import TelegramStandIn
from tests.test_delivery import telegram_patients
from tests.test_services import rows, wire


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


async def test_a_timed_out_send_waits_twenty_seconds_before_it_goes_again(db: Database) -> None:
    """A send the provider answered after the client's timeout (it may have arrived) is
    not tried again for 20 s, not after the 2 s first backoff."""
    stand_in = TelegramStandIn()
    w = wire(db)
    patient_id = (await telegram_patients(db))[0]
    await w.services.asking.ask(patient_id, ["phq2"])
    await w.services.starting.start_due()
    stand_in.fail(Fault.slow(1.0), method="sendMessage")
    async with serve(stand_in.app) as url:
        channel = TelegramChannel(stand_in.token, api_base_url=f"{url}/bot", timeout_s=0.3)
        deliverer = Deliverer(db, {"telegram": channel}, w.clock)
        try:
            assert await deliverer.run_once() == Report(retried=1)
            first = (await rows(db, OutboundMessage))[0]
            assert first.last_error == "telegram: TimedOut"
            w.clock.now += timedelta(seconds=19)
            assert await deliverer.run_once() == Report()
            w.clock.now += timedelta(seconds=2)
            assert (await deliverer.run_once()).sent == 1
        finally:
            await channel.close()


def test_the_read_timeout_and_the_send_lease_come_from_the_config(tmp_path: Path) -> None:
    """`[telegram] timeout_s` (default 30 s) is the client's read timeout and
    `[scheduler] send_lease_s` the outbox lease, apart from the 60 s `lease_s`."""
    data = {
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"},
        "telegram": {"token": "1:x", "timeout_s": 45},
        "scheduler": {"send_lease_s": 12},
    }
    app = build(settings_from_mapping(data, tmp_path / "config.toml"))
    channel = app.channels["telegram"]
    assert isinstance(channel, TelegramChannel)
    request = channel.bot.request
    assert isinstance(request, AiohttpRequest)
    assert request.read_timeout == 45
    assert app.deliverer.lease == timedelta(seconds=12)
    default = settings_from_mapping({}, tmp_path / "config.toml")
    assert default.telegram.timeout_s == 30 and default.scheduler.send_lease_s == 30
