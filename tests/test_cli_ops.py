"""Operator commands for the course of care, run as an operator runs them (real processes on
a SQLite file, the real scheduler services in between): patient pause / resume / list
--status, clinician backup / link / deactivate, checkins list / cancel."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlmodel import select

from bot.app.conversations.enrollment import redeem
from bot.app.conversations.inbox import INBOUND_ATTEMPTS
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import AuditEvent, Checkin, InboundMessage
from tests.standins.server import serve_in_thread
from tests.standins.telegram import TelegramStandIn
from tests.test_cli_service import checkin, ok_json
from tests.test_services import SimClock, said, wire

T = TypeVar("T")


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    assert checkin(url, "db", "upgrade").returncode == 0
    return url


def one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith(f"error: {message}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def add_patient(url: str, *extra: str) -> int:
    args = ("patient", "add", "--name", "P-1", "--channel", "console", *extra, "--json")
    patient_id: int = ok_json(checkin(url, *args))["id"]
    return patient_id


def add_clinician(url: str, channel: str = "console", config: Path | None = None) -> int:
    args = ("clinician", "add", "--name", "Dr", "--channel", channel, "--json")
    clinician_id: int = ok_json(checkin(url, *args, config=config))["id"]
    return clinician_id


def services(url: str) -> Any:
    """Run one coroutine against the scheduler services on this clinic's database."""

    def run(work: Any) -> Any:
        async def go() -> Any:
            async with Database(url) as db:
                return await work(wire(db, SimClock(datetime.now(UTC) + timedelta(minutes=1))))

        return asyncio.run(go())

    return run


async def _actions(url: str) -> list[str]:
    async with Database(url) as db, db.transaction() as session:
        rows = (await session.exec(select(AuditEvent).order_by(AuditEvent.id))).all()  # type: ignore[arg-type]
        return [r.action for r in rows]


async def _row(url: str, table: type[T], row_id: int) -> T:
    async with Database(url) as db, db.transaction() as session:
        found = await session.get(table, row_id)
        assert found is not None
        return found


async def _checkin(url: str, checkin_id: int) -> Checkin:
    return await _row(url, Checkin, checkin_id)


def test_a_paused_patient_gets_nothing_until_resumed(url: str) -> None:
    """Pausing holds a due check-in (kept pending, not sent); resuming sends it at the next
    start; the wrong transitions are refused and both changes are audited."""
    patient = add_patient(url)
    asked = ok_json(checkin(url, "ask", str(patient), "phq9", "--now", "--json"))
    paused = ok_json(checkin(url, "patient", "pause", str(patient), "--json"))
    assert paused == {"id": patient, "status": "paused"}
    one_line_error(checkin(url, "patient", "pause", str(patient)), f"patient {patient} is paused")
    listed = ok_json(checkin(url, "patient", "list", "--status", "paused", "--json"))
    assert [p["id"] for p in listed] == [patient]  # type: ignore[index]
    assert ok_json(checkin(url, "patient", "list", "--status", "active", "--json")) == []
    run = services(url)
    assert run(lambda w: w.services.starting.start_due()) == 0
    assert asyncio.run(_checkin(url, asked["id"])).status == "pending"
    assert checkin(url, "patient", "resume", str(patient)).stdout.strip() == (
        f"patient {patient} resumed"
    )
    assert run(lambda w: w.services.starting.start_due()) == 1  # not held by the lease of the pause
    assert asyncio.run(_checkin(url, asked["id"])).status in ("sent", "in_progress")
    one_line_error(checkin(url, "patient", "resume", str(patient)), f"patient {patient} is active")
    one_line_error(checkin(url, "patient", "pause", "99"), "no patient with id 99")
    one_line_error(checkin(url, "patient", "list", "--status", "asleep"), "--status 'asleep'")
    actions = asyncio.run(_actions(url))
    assert actions.count("patient_paused") == 1 and actions.count("patient_resumed") == 1


def test_backups_and_deactivation(url: str) -> None:
    """A backup is set and cleared (never oneself, never an unknown id); leaving needs a
    successor, who then takes the patients and the backup duty."""
    first, second, third = (add_clinician(url) for _ in range(3))
    shown = ok_json(
        checkin(url, "clinician", "backup", str(first), "--backup", str(second), "--json")
    )
    assert shown == {"id": first, "backup_clinician_id": second}
    one_line_error(checkin(url, "clinician", "backup", str(first), "--backup", str(first)),
                   f"--backup {first}: a clinician cannot be their own backup")  # fmt: skip
    one_line_error(checkin(url, "clinician", "backup", str(first), "--backup", "99"),
                   "--backup: no clinician with id 99")  # fmt: skip
    one_line_error(checkin(url, "clinician", "backup", str(first)), "give either --backup")
    patient = add_patient(url, "--clinician", str(second))
    one_line_error(checkin(url, "clinician", "deactivate", str(second)),
                   f"clinician {second} is responsible for 1 patients and backup for 1")  # fmt: skip
    done = ok_json(checkin(url, "clinician", "deactivate", str(second), "--reassign-to",
                           str(third), "--json"))  # fmt: skip
    assert (done["patients_moved"], done["backups_moved"]) == (1, 1)
    rows = {c["id"]: c for c in ok_json(checkin(url, "clinician", "list", "--json"))}  # type: ignore[attr-defined]
    assert rows[second]["active"] is False and rows[first]["backup_clinician_id"] == third
    assert ok_json(checkin(url, "patient", "show", str(patient), "--json"))["clinician_id"] == third
    one_line_error(checkin(url, "clinician", "backup", str(first), "--backup", str(second)),
                   f"--backup {second}: clinician {second} is deactivated")  # fmt: skip
    cleared = ok_json(checkin(url, "clinician", "backup", str(first), "--clear", "--json"))
    assert cleared["backup_clinician_id"] is None
    actions = asyncio.run(_actions(url))
    assert actions.count("clinician_backup_set") == 2 and "clinician_deactivated" in actions


@pytest.fixture
def telegram_config(tmp_path: Path) -> Iterator[Path]:
    fake = TelegramStandIn()
    with serve_in_thread(fake.app) as base:
        config = tmp_path / "clinic.toml"
        config.write_text(f'[telegram]\ntoken = "{fake.token}"\napi_base_url = "{base}/bot"\n')
        yield config


async def _redeem(url: str, code: str, chat: str) -> bool:
    async with Database(url) as db, db.transaction() as session:
        return await redeem(session, code, "telegram", chat, datetime.now(UTC)) is not None


def test_a_new_telegram_link_replaces_the_old_one(url: str, telegram_config: Path) -> None:
    """`clinician link` asks the Bot API for the bot's name; the new code links the clinician
    once, and the code issued before it no longer works."""
    doctor = add_clinician(url, "telegram", telegram_config)
    old = ok_json(checkin(url, "clinician", "link", str(doctor), "--json", config=telegram_config))
    new = ok_json(checkin(url, "clinician", "link", str(doctor), "--json", config=telegram_config))
    assert new["enroll_link"] == f"https://t.me/checkin_test_bot?start={new['enroll_code']}"
    assert asyncio.run(_redeem(url, old["enroll_code"], "501")) is False
    assert asyncio.run(_redeem(url, new["enroll_code"], "501")) is True
    assert asyncio.run(_redeem(url, new["enroll_code"], "502")) is False  # single use
    console = add_clinician(url)
    one_line_error(checkin(url, "clinician", "link", str(console), config=telegram_config),
                   f"clinician {console} uses console; links are for Telegram")  # fmt: skip


def test_list_and_cancel_check_ins(url: str) -> None:
    """A planned check-in and an open one are cancelled (answers kept, nothing more sent to
    the patient); a finished one cannot be; the list filters by patient and status."""
    patient = add_patient(url)
    other = add_patient(url)
    first = ok_json(checkin(url, "ask", str(patient), "phq9", "--now", "--json"))
    ok_json(checkin(url, "ask", str(other), "gad7", "--now", "--json"))
    listed = ok_json(checkin(url, "checkins", "list", "--patient", str(patient), "--json"))
    assert [(c["id"], c["status"]) for c in listed] == [(first["id"], "pending")]  # type: ignore[index]
    run = services(url)
    assert run(lambda w: w.services.starting.start_due()) == 2
    address = f"patient-{patient}"
    assert run(lambda w: w.services.inbox.handle_inbound(said(address, "2", 1, w.clock.now)))
    done = ok_json(checkin(url, "checkins", "cancel", str(first["id"]), "--json"))
    assert done == {"id": first["id"], "status": "cancelled", "was": "in_progress"}
    cancelled = asyncio.run(_checkin(url, first["id"]))
    assert cancelled.status == "cancelled" and cancelled.next_reminder_at is None
    one_line_error(checkin(url, "checkins", "cancel", str(first["id"])),
                   f"check-in {first['id']} is cancelled")  # fmt: skip
    second = ok_json(checkin(url, "ask", str(patient), "gad7", "--now", "--json"))
    assert run(lambda w: w.services.starting.start_due()) == 1  # the patient is free again
    text = checkin(url, "checkins", "cancel", str(second["id"]))
    assert text.returncode == 0 and "cancelled (it was" in text.stdout
    by_status = ok_json(checkin(url, "checkins", "list", "--status", "cancelled", "--json"))
    assert sorted(c["id"] for c in by_status) == sorted([first["id"], second["id"]])  # type: ignore[index]
    one_line_error(checkin(url, "checkins", "cancel", "999"), "no check-in with id 999")
    one_line_error(checkin(url, "checkins", "list", "--status", "done"), "--status 'done'")
    assert asyncio.run(_actions(url)).count("checkin_cancelled") == 2


def test_cancelling_an_open_check_in_lets_the_one_held_behind_it_start(url: str) -> None:
    """Two check-ins due together: the second waits behind the first, and starts at the
    next tick once the first is cancelled, not when its five-minute hold runs out."""
    patient = add_patient(url)
    first = ok_json(checkin(url, "ask", str(patient), "phq2", "--now", "--json"))
    second = ok_json(checkin(url, "ask", str(patient), "gad7", "--now", "--json"))
    run = services(url)
    assert run(lambda w: w.services.starting.start_due()) == 1
    assert asyncio.run(_checkin(url, second["id"])).lease_until is not None  # held
    assert checkin(url, "checkins", "cancel", str(first["id"])).returncode == 0
    assert run(lambda w: w.services.starting.start_due()) == 1
    assert asyncio.run(_checkin(url, second["id"])).status == "sent"


async def _set_aside(url: str, address: str, text: str) -> int:
    """A message from `address` given up on as the recovery pass gives up on one."""
    async with Database(url) as db:
        w = wire(db)
        inbound_id = await w.services.inbox.receive(said(address, text, 0, w.clock.now))
        assert inbound_id is not None
        for _ in range(INBOUND_ATTEMPTS):
            async with db.transaction() as session:
                await Repository(session).count_failure(
                    inbound_id, w.clock.now, "KeyError", INBOUND_ATTEMPTS
                )
        return inbound_id


def test_set_aside_messages_are_listed_without_their_text_and_retried(url: str) -> None:
    """`inbound list` names the patient and the problem, never the text; `inbound retry`
    puts a message back and the next recovery pass processes it; mistakes are one line."""
    patient = add_patient(url)
    aside = asyncio.run(_set_aside(url, f"patient-{patient}", "canary-8080"))
    listed = checkin(url, "inbound", "list")
    assert listed.returncode == 0 and "canary-8080" not in listed.stdout
    assert f"patient {patient}" in listed.stdout and "5 attempts  KeyError" in listed.stdout
    (row,) = ok_json(checkin(url, "inbound", "list", "--json"))
    assert (row["id"], row["patient_id"], row["problem"]) == (aside, patient, "KeyError")
    assert ok_json(checkin(url, "inbound", "list", "--waiting", "--json")) == []
    one_line_error(checkin(url, "inbound", "retry", "999"), "no inbound message with id 999")
    done = checkin(url, "inbound", "retry", str(aside))
    assert done.returncode == 0 and "1 message put back" in done.stdout
    back = asyncio.run(_row(url, InboundMessage, aside))
    assert (back.processed_at, back.error, back.attempts) == (None, None, 0)
    one_line_error(checkin(url, "inbound", "retry", str(aside)), f"inbound message {aside} is not")
    run = services(url)
    assert run(lambda w: w.services.inbox.process_pending()) == 1  # no check-in open: a reply
    assert asyncio.run(_row(url, InboundMessage, aside)).processed_at is not None
    assert checkin(url, "inbound", "list").stdout.strip() == "no messages set aside"
    assert asyncio.run(_actions(url)).count("inbound_retried") == 1


def test_patient_invite_issues_a_fresh_single_use_link(url: str, telegram_config: Path) -> None:
    """`patient invite` gives an invited Telegram patient a new link that works once."""
    added = ok_json(
        checkin(
            url,
            "patient",
            "add",
            "--name",
            "T-1",
            "--channel",
            "telegram",
            "--json",
            config=telegram_config,
        )
    )
    again = ok_json(
        checkin(url, "patient", "invite", str(added["id"]), "--json", config=telegram_config)
    )
    assert again["enroll_code"] != added["enroll_code"]
    assert again["enroll_link"].endswith(f"?start={again['enroll_code']}")
    assert asyncio.run(_redeem(url, again["enroll_code"], "601")) is True
    assert asyncio.run(_redeem(url, again["enroll_code"], "602")) is False  # single use
    one_line_error(checkin(url, "patient", "invite", "999", config=telegram_config),
                   "no patient with id 999")  # fmt: skip


def test_patient_invite_relink_moves_an_active_patient(url: str, telegram_config: Path) -> None:
    """From the command line, a plain `patient invite` link cannot move an active patient
    to another chat, and the earlier link is revoked; one issued with --relink can."""
    added = ok_json(
        checkin(url, "patient", "add", "--name", "T-2", "--channel", "telegram", "--json",
                config=telegram_config)
    )  # fmt: skip
    patient = str(added["id"])
    assert asyncio.run(_redeem(url, added["enroll_code"], "611")) is True  # active in 611
    plain = ok_json(checkin(url, "patient", "invite", patient, "--json", config=telegram_config))
    relink = ok_json(
        checkin(url, "patient", "invite", patient, "--relink", "--json", config=telegram_config)
    )
    assert asyncio.run(_redeem(url, plain["enroll_code"], "612")) is False  # revoked anyway
    assert asyncio.run(_redeem(url, relink["enroll_code"], "612")) is True
    assert asyncio.run(_actions(url)).count("patient_relinked") == 1
