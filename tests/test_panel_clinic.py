"""The clinic pages over HTTP, on SQLite and PostgreSQL: an admin adds a clinician with a
panel account and hands over a first password and authenticator code that really sign
in; sets a backup; deactivates someone who left (their patients moved); issues new
sign-in details that end the old ones. Non-admins get 404 and change nothing. Everyone
changes their own password and time zone on the Account page. Audited with the actor."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from sqlmodel import select

from bot.app.panel.passwords import totp_code
from bot.config import Panel
from bot.storage.account_tables import PanelAccount
from bot.storage.database import Database
from bot.storage.tables import AuditEvent, Clinician, Patient
from tests.panel_rig import PASSWORD, Account, Rig, hidden, panel_rig


@pytest.fixture
async def rig(db: Database) -> AsyncIterator[Rig]:
    async with panel_rig(db, Panel(timezone="Europe/Madrid")) as rig:
        await rig.add("boss", role="admin")
        await rig.add("ana")
        await rig.add("ben")
        yield rig


async def token(web: httpx.AsyncClient, page: str = "/account") -> str:
    return hidden((await web.get(page)).text, "csrf_token")


def shown(page: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]* value="([^"]*)"', page)
    assert found, f"no {element_id} on the page"
    return html.unescape(found.group(1))


async def audit_actors(db: Database, action: str) -> list[str]:
    async with db.transaction() as session:
        rows = (await session.exec(select(AuditEvent).where(AuditEvent.action == action))).all()
    return [r.actor for r in rows]


async def test_an_admin_adds_a_clinician_who_then_signs_in(rig: Rig) -> None:
    boss = rig.accounts["boss"]
    async with rig.browser() as web:
        await rig.signed_in(web, boss)
        listing = await web.get("/clinicians")
        assert listing.status_code == 200 and "Dr ana" in listing.text
        form = {"csrf_token": hidden(listing.text, "csrf_token"), "name": "Dr Dee",
                "email": " Dee@Clinic.example ", "role": "clinician", "channel": "console"}  # fmt: skip
        page = await web.post("/clinicians", data=form)
        assert page.status_code == 200 and "Dr Dee was added" in page.text
        assert page.headers["cache-control"] == "no-store"
        password, uri = shown(page.text, "first-password"), shown(page.text, "totp-uri")
        assert 'src="data:image/svg+xml' in page.text  # the QR, drawn here
    secret = parse_qs(urlparse(uri).query)["secret"][0]
    async with rig.db.transaction() as session:
        staff = (await session.exec(select(Clinician))).all()  # names are sealed: not in SQL
        dee = next(c for c in staff if c.display_name == "Dr Dee")
        account = (
            await session.exec(select(PanelAccount).where(PanelAccount.clinician_id == dee.id))
        ).one()
    assert account.email == "dee@clinic.example" and password not in (account.password_hash or "")
    newcomer = Account(dee.id or 0, "dee@clinic.example", secret)
    async with rig.browser() as web:
        signed = await rig.sign_in(
            web, newcomer, password=password, code=totp_code(secret, rig.clock.now)
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/"
    actor = f"clinician:{boss.clinician_id}"
    for action in (
        "clinician_added",
        "panel_account_added",
        "panel_password_set",
        "panel_totp_issued",
    ):
        assert (await audit_actors(rig.db, action))[-1] == actor, (
            action
        )  # the rig's own: "operator"


async def test_a_bad_form_is_shown_again_naming_the_field(rig: Rig) -> None:
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["boss"])
        csrf = await token(web, "/clinicians")
        base = {"csrf_token": csrf, "name": "Dr Eve", "role": "clinician", "channel": "console"}
        taken = await web.post("/clinicians", data=base | {"email": "ana@clinic.example"})
        assert (
            taken.status_code == 400 and "that e-mail already belongs to an account" in taken.text
        )
        assert 'value="Dr Eve"' in taken.text  # what was typed stays
        bad = await web.post("/clinicians", data=base | {"email": "not-an-address"})
        assert bad.status_code == 400 and "is not an e-mail address" in bad.text
        no_sms = await web.post(
            "/clinicians", data=base | {"email": "eve@x.example", "channel": "sms"}
        )
        assert no_sms.status_code == 400 and "'sms' is not one of console" in html.unescape(
            no_sms.text
        )
        missing = await web.post(
            "/clinicians", data={k: v for k, v in base.items() if k != "csrf_token"}
        )
        assert missing.status_code == 403
    async with rig.db.transaction() as session:
        names = (await session.exec(select(Clinician.display_name))).all()
    assert "Dr Eve" not in names


async def test_clinicians_are_for_admins_only(rig: Rig) -> None:
    ben = rig.accounts["ben"].clinician_id
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["ana"])
        csrf = await token(web)
        assert (await web.get("/clinicians")).status_code == 404
        for path in ("/clinicians", f"/clinicians/{ben}/sign-in", f"/clinicians/{ben}/deactivate"):
            refused = await web.post(path, data={"csrf_token": csrf, "name": "X", "email": "x@y.example",
                                                 "channel": "console", "confirm": "yes"})  # fmt: skip
            assert refused.status_code == 404, path
        assert 'href="/clinicians"' not in (await web.get("/")).text
    async with rig.db.transaction() as session:
        assert (await session.get(Clinician, ben)).active  # type: ignore[union-attr]


async def test_backup_and_deactivation_move_the_duties(rig: Rig) -> None:
    ana, ben = rig.accounts["ana"].clinician_id, rig.accounts["ben"].clinician_id
    patient = await rig.patient("Ben's patient", ben)
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["boss"])
        csrf = await token(web, "/clinicians")
        saved = await web.post(
            f"/clinicians/{ana}/backup", data={"csrf_token": csrf, "backup": str(ben)}
        )
        assert saved.headers["location"] == "/clinicians?done=backup_set"
        unconfirmed = await web.post(f"/clinicians/{ben}/deactivate",
                                     data={"csrf_token": csrf, "reassign_to": str(ana)})  # fmt: skip
        assert unconfirmed.status_code == 400 and "tick the box" in unconfirmed.text
        alone = await web.post(
            f"/clinicians/{ben}/deactivate", data={"csrf_token": csrf, "confirm": "yes"}
        )
        assert alone.status_code == 400 and "patients" in alone.text  # still responsible
        gone = await web.post(f"/clinicians/{ben}/deactivate",
                              data={"csrf_token": csrf, "reassign_to": str(ana), "confirm": "yes"})  # fmt: skip
        assert gone.headers["location"] == "/clinicians?done=deactivated"
    async with rig.db.transaction() as session:
        moved = await session.get(Patient, patient)
        left, covered = await session.get(Clinician, ben), await session.get(Clinician, ana)
    assert moved is not None and moved.clinician_id == ana
    assert left is not None and not left.active
    assert (
        covered is not None and covered.backup_clinician_id is None
    )  # ben's backup duty went to ana herself
    async with rig.browser() as web:  # someone who left cannot sign in any more
        assert (await rig.sign_in(web, rig.accounts["ben"])).status_code == 303
        assert (await web.get("/")).headers.get("location") == "/login"


async def test_new_sign_in_details_end_the_old_ones(rig: Rig) -> None:
    ana = rig.accounts["ana"]
    async with rig.browser() as old:
        await rig.signed_in(old, ana)
        assert (await old.get("/")).status_code == 200
        async with rig.browser() as web:
            await rig.signed_in(web, rig.accounts["boss"])
            page = await web.post(f"/clinicians/{ana.clinician_id}/sign-in",
                                  data={"csrf_token": await token(web, "/clinicians")})  # fmt: skip
            assert page.status_code == 200 and "no longer work" in page.text
            password, uri = shown(page.text, "first-password"), shown(page.text, "totp-uri")
        assert (await old.get("/")).status_code == 303  # the old session ended
        rig.clock.now += timedelta(seconds=31)  # a TOTP code is good once: the next step
        async with rig.browser() as again:
            assert (await rig.sign_in(again, ana)).status_code == 401  # the old password
            secret = parse_qs(urlparse(uri).query)["secret"][0]
            fresh = Account(ana.clinician_id, ana.email, secret)
            assert (await rig.sign_in(again, fresh, password=password)).status_code == 303


async def test_the_account_page_changes_password_and_time_zone(rig: Rig) -> None:
    ana = rig.accounts["ana"]
    async with rig.browser() as web:
        await rig.signed_in(web, ana)
        csrf = await token(web)
        wrong = await web.post("/account/password", data={"csrf_token": csrf, "current": "nope",
                                                          "new": "x" * 14, "again": "x" * 14})  # fmt: skip
        assert wrong.status_code == 400 and "not your current password" in wrong.text
        weak = await web.post("/account/password", data={"csrf_token": csrf, "current": PASSWORD,
                                                         "new": "short", "again": "short"})  # fmt: skip
        assert weak.status_code == 400 and "at least 12 characters" in weak.text
        zone = await web.post(
            "/account/timezone", data={"csrf_token": csrf, "timezone": "Mars/Base"}
        )
        assert zone.status_code == 400 and "'Mars/Base' is not a time zone name" in html.unescape(
            zone.text
        )
        saved = await web.post(
            "/account/timezone", data={"csrf_token": csrf, "timezone": "America/Chicago"}
        )
        assert saved.headers["location"] == "/account?done=timezone_set"
        assert "CST" in (await web.get("/")).text or "CDT" in (await web.get("/")).text
        new = "a different long passphrase"
        changed = await web.post("/account/password", data={"csrf_token": csrf, "current": PASSWORD,
                                                           "new": new, "again": new})  # fmt: skip
        assert changed.headers["location"] == "/login?done=password_changed"
        assert "Sign in with the new one" in (await web.get("/login?done=password_changed")).text
        assert (await web.get("/")).headers.get("location") == "/login"
    rig.clock.now += timedelta(seconds=31)  # a TOTP code is good once: the next step
    async with rig.browser() as web:
        assert (await rig.sign_in(web, ana, password=new)).status_code == 303
    assert await audit_actors(rig.db, "panel_timezone_set") == [f"clinician:{ana.clinician_id}"]
