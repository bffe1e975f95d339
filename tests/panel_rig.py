"""What the panel's HTTP tests share: the app built by bootstrap on a real database,
served to httpx over ASGI at an https origin (the session cookie is Secure), a clinic of
clinicians with panel accounts, and signing in with a real TOTP code."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx

from bot.app.operator import clinicians
from bot.app.panel import accounts
from bot.app.panel.passwords import totp_code
from bot.bootstrap import App, build
from bot.config import Clinic, Panel, Settings
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, Patient
from bot.web.app import create_app
from tests.test_services import SimClock

PASSWORD = "a long enough passphrase"
ADDRESS = "203.0.113.7"


@dataclass
class Account:
    clinician_id: int
    email: str
    secret: str


@dataclass
class Rig:
    app: App
    db: Database
    clock: SimClock
    accounts: dict[str, Account] = field(default_factory=dict)

    @asynccontextmanager
    async def browser(self, address: str = ADDRESS) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=create_app(self.app), client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as web:
            yield web

    async def add(self, name: str, role: str = "clinician", backup: int | None = None) -> Account:
        view = await clinicians.add(self.db, self.clock, f"Dr {name}", "console")
        email = f"{name}@clinic.example"
        await accounts.add_account(self.db, self.clock, view.id, email, role)
        await accounts.set_password(self.db, self.clock, view.id, PASSWORD)
        issued = await accounts.issue_totp(self.db, self.clock, view.id, "Test Clinic")
        if backup is not None:
            await clinicians.set_backup(self.db, self.clock, view.id, backup)
        self.accounts[name] = Account(view.id, email, issued.secret)
        return self.accounts[name]

    def code(self, account: Account, at: datetime | None = None) -> str:
        return totp_code(account.secret, at or self.clock.now)

    async def sign_in(
        self, web: httpx.AsyncClient, account: Account, password: str = PASSWORD, code: str = ""
    ) -> httpx.Response:
        form = await web.get("/login")
        token = hidden(form.text, "csrf_token")
        data = {"email": account.email, "password": password, "csrf_token": token,
                "code": code or self.code(account)}  # fmt: skip
        return await web.post("/login", data=data)

    async def signed_in(self, web: httpx.AsyncClient, account: Account) -> None:
        response = await self.sign_in(web, account)
        assert response.status_code == 303 and response.headers["location"] == "/"
        self.clock.now += timedelta(seconds=31)  # the next code is a later step

    async def patient(self, name: str, clinician_id: int | None) -> int:
        async with self.db.transaction() as session:
            row = Patient(display_name=name, timezone="UTC", channel="console",
                          address=f"addr-{name}", status="active", clinician_id=clinician_id)  # fmt: skip
            await Repository(session).add(row)
        assert row.id is not None
        return row.id

    async def alert(self, patient_id: int, level: str = "urgent", rule: str = "severe_score",
                    deadline_min: float | None = 30, code: str = "") -> int:  # fmt: skip
        deadline = self.clock.now + timedelta(minutes=deadline_min) if deadline_min else None
        async with self.db.transaction() as session:
            row = Alert(patient_id=patient_id, rule=rule, level=level, code=code or f"C{patient_id}{level}",
                        created_at=self.clock.now, ack_deadline=deadline)  # fmt: skip
            await Repository(session).add(row)
        assert row.id is not None
        return row.id


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no hidden {name} in the page"
    return found.group(1)


@asynccontextmanager
async def panel_rig(db: Database, panel: Panel | None = None) -> AsyncIterator[Rig]:
    clock = SimClock()
    url = db.url.render_as_string(hide_password=False)
    settings = Settings(database_url=url, clinic=Clinic(name="Test Clinic"), panel=panel or Panel())
    app = build(settings, clock=clock, console=io.StringIO())
    try:
        yield Rig(app, db, clock)
    finally:
        await app.close()
