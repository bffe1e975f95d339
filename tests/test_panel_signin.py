"""Signing in to the web panel over HTTP, on SQLite and PostgreSQL: the cookie's
attributes, the security headers, CSRF refusals, one message for every failure, the
account lockout, the per-address backoff, idle and absolute session expiry on an
injected clock, sign-out and revocation."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlmodel import select

from bot.app.panel import accounts
from bot.config import Panel
from bot.storage.crypto import KeyRing, new_key, use_keys
from bot.storage.database import Database
from bot.storage.rotation import rotate
from bot.storage.tables import AuditEvent, PanelAccount, PanelLoginFailure, PanelSession
from tests.conftest import TEST_RING
from tests.panel_rig import Rig, hidden, panel_rig

NOT_RECOGNISED = "E-mail, password or code not recognised."


@pytest.fixture
async def rig(db: Database) -> AsyncIterator[Rig]:
    async with panel_rig(db) as rig:
        await rig.add("ana")
        yield rig


async def audits(db: Database, action: str) -> list[AuditEvent]:
    async with db.transaction() as session:
        return list(
            (await session.exec(select(AuditEvent).where(AuditEvent.action == action))).all()
        )


def attributes(set_cookie: str) -> set[str]:
    return {part.strip().lower() for part in set_cookie.split(";")[1:]}


async def test_login_page_carries_the_security_headers_and_no_script(rig: Rig) -> None:
    """The sign-in page: strict CSP without inline script, no framing, no referrer, not
    stored; its CSRF cookie is __Host-, Secure, HttpOnly, SameSite=Strict."""
    async with rig.browser() as web:
        page = await web.get("/login")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "script-src" not in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert "<script" not in page.text and 'for="email"' in page.text and 'for="code"' in page.text
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("__Host-checkin-login=")
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= attributes(cookie)
    assert not any(a.startswith("domain") for a in attributes(cookie))


async def test_signing_in_opens_a_session_whose_token_is_stored_hashed(rig: Rig) -> None:
    """Right e-mail, password and code: a __Host- session cookie (Secure, HttpOnly,
    Strict, 12 h), Today opens with the clinician's name; only the token's hash is stored."""
    ana = rig.accounts["ana"]
    async with rig.browser() as web:
        response = await rig.sign_in(web, ana)
        assert response.status_code == 303 and response.headers["location"] == "/"
        cookie = next(
            c for c in response.headers.get_list("set-cookie") if c.startswith("__Host-checkin=")
        )
        assert {"secure", "httponly", "samesite=strict", "path=/", "max-age=43200"} <= attributes(
            cookie
        )
        token = cookie.split(";")[0].split("=", 1)[1]
        today = await web.get("/")
        assert today.status_code == 200 and "Dr ana" in today.text
        assert today.headers["cache-control"] == "no-store"
    async with rig.db.transaction() as session:
        stored = (await session.exec(select(PanelSession))).all()
    assert [s.token_hash for s in stored] == [hashlib.sha256(token.encode()).hexdigest()]
    assert [e.actor for e in await audits(rig.db, "panel_signed_in")] == [
        f"clinician:{ana.clinician_id}"
    ]


@pytest.mark.parametrize("wrong", ["password", "code", "email"])
async def test_every_failure_says_the_same_thing(rig: Rig, wrong: str) -> None:
    """A wrong password, a wrong code and an unknown e-mail get the same answer."""
    ana = rig.accounts["ana"]
    async with rig.browser() as web:
        form = await web.get("/login")
        data = {"email": ana.email, "password": "a long enough passphrase",
                "code": rig.code(ana), "csrf_token": hidden(form.text, "csrf_token")}  # fmt: skip
        data[wrong] = {"password": "not the passphrase", "code": "000000",
                       "email": "nobody@clinic.example"}[wrong]  # fmt: skip
        if wrong == "code" and data["code"] == rig.code(ana):
            data["code"] = "111111"
        response = await web.post("/login", data=data)
        assert response.status_code == 401 and NOT_RECOGNISED in response.text
        assert (await web.get("/")).status_code == 303


async def test_a_totp_code_is_used_once(rig: Rig) -> None:
    """The code that opened a session does not open a second one."""
    ana = rig.accounts["ana"]
    code = rig.code(ana)
    async with rig.browser() as web:
        assert (await rig.sign_in(web, ana, code=code)).status_code == 303
    async with rig.browser("198.51.100.1") as other:
        assert (await rig.sign_in(other, ana, code=code)).status_code == 401


async def test_five_failures_lock_the_account_even_against_the_right_password(rig: Rig) -> None:
    """5 failures within 15 minutes lock the account for 15 minutes (audited once); the
    right password and code are refused meanwhile and accepted after."""
    ana = rig.accounts["ana"]
    async with rig.browser() as web:
        for _ in range(5):
            assert (await rig.sign_in(web, ana, password="not the passphrase")).status_code == 401
            rig.clock.now += timedelta(minutes=2)
        locked = await rig.sign_in(web, ana)
        assert locked.status_code == 401 and NOT_RECOGNISED in locked.text
        assert [e.subject for e in await audits(rig.db, "panel_account_locked")] == [
            f"clinician:{ana.clinician_id}"
        ]
        rig.clock.now += timedelta(minutes=15)
        assert (await rig.sign_in(web, ana)).status_code == 303
    assert len(await audits(rig.db, "panel_account_locked")) == 1


async def test_four_failures_do_not_lock(rig: Rig) -> None:
    """Below the threshold the right credentials still work; failures a day old are dropped."""
    ana = rig.accounts["ana"]
    async with rig.browser() as web:
        for _ in range(4):
            await rig.sign_in(web, ana, password="not the passphrase")
            rig.clock.now += timedelta(minutes=1)
        assert (await rig.sign_in(web, ana)).status_code == 303
        async with rig.db.transaction() as session:
            account = (await session.exec(select(PanelAccount))).one()
            assert len((await session.exec(select(PanelLoginFailure))).all()) == 4
        assert account.locked_until is None
        rig.clock.now += timedelta(days=2)  # a sign-in a day later drops the old failures
        assert (await rig.sign_in(web, ana)).status_code == 303
    async with rig.db.transaction() as session:
        assert (await session.exec(select(PanelLoginFailure))).all() == []


async def test_an_address_that_keeps_failing_must_wait(rig: Rig) -> None:
    """After 3 failures an address waits (1 s, then doubling) before anything is checked,
    even right credentials; another address is not held back."""
    ana = rig.accounts["ana"]
    async with rig.browser() as web:
        for n in range(3):
            form = await web.get("/login")
            data = {"email": f"guess{n}@clinic.example", "password": "whatever it is",
                    "code": "123456", "csrf_token": hidden(form.text, "csrf_token")}  # fmt: skip
            assert (await web.post("/login", data=data)).status_code == 401
        held = await rig.sign_in(web, ana)
        assert held.status_code == 429 and NOT_RECOGNISED in held.text
        async with rig.browser("198.51.100.9") as elsewhere:
            assert (await rig.sign_in(elsewhere, ana)).status_code == 303
        rig.clock.now += timedelta(seconds=31)
        assert (await rig.sign_in(web, ana)).status_code == 303


async def test_login_without_its_csrf_token_is_refused(rig: Rig) -> None:
    """A sign-in post without the form's token, or with another one, is 403."""
    ana = rig.accounts["ana"]
    async with rig.browser() as web:
        await web.get("/login")
        data = {"email": ana.email, "password": "a long enough passphrase", "code": rig.code(ana)}
        assert (await web.post("/login", data=data)).status_code == 403
        forged = await web.post("/login", data=data | {"csrf_token": "x" * 43})
        assert forged.status_code == 403
        assert "__Host-checkin=" not in forged.headers.get("set-cookie", "")


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/"), ("POST", "/logout"), ("POST", "/alerts/1/ack"),
                         ("POST", "/alerts/1/resolve")],
)  # fmt: skip
async def test_without_a_session_every_page_goes_to_login(rig: Rig, method: str, path: str) -> None:
    async with rig.browser() as web:
        response = await web.request(method, path)
    assert response.status_code == 303 and response.headers["location"] == "/login"


async def test_sessions_end_after_idle_and_absolute_limits(db: Database) -> None:
    """[panel] idle_timeout_min and absolute_timeout_h, on the injected clock: requests
    keep a session alive until the absolute limit; an idle one ends sooner."""
    async with panel_rig(db, Panel(idle_timeout_min=15, absolute_timeout_h=1)) as rig:
        ana = await rig.add("ana")
        async with rig.browser() as web:
            await rig.signed_in(web, ana)
            for _ in range(5):
                rig.clock.now += timedelta(minutes=11)
                assert (await web.get("/")).status_code == 200
            rig.clock.now += timedelta(minutes=5)  # 60.5 minutes after sign-in
            assert (await web.get("/")).status_code == 303
        async with rig.browser() as web:
            await rig.signed_in(web, ana)
            rig.clock.now += timedelta(minutes=14)
            assert (await web.get("/")).status_code == 200
            rig.clock.now += timedelta(minutes=15, seconds=1)
            assert (await web.get("/")).status_code == 303


async def test_sign_out_and_revocation_end_sessions(rig: Rig) -> None:
    """POST /logout (with its CSRF token) revokes the session: its cookie opens nothing
    after; without the token it is 403. `clinician sessions --revoke` ends the others."""
    ana = rig.accounts["ana"]
    async with rig.browser() as web:
        await rig.signed_in(web, ana)
        token = web.cookies["__Host-checkin"]
        assert (await web.post("/logout", data={"csrf_token": "nope"})).status_code == 403
        page = await web.get("/")
        out = await web.post("/logout", data={"csrf_token": hidden(page.text, "csrf_token")})
        assert out.status_code == 303 and out.headers["location"] == "/login"
    async with rig.browser() as replay:
        replay.cookies.set("__Host-checkin", token, domain="testserver")
        assert (await replay.get("/")).status_code == 303
    async with rig.browser() as web:
        await rig.signed_in(web, ana)
        assert await accounts.revoke_sessions(rig.db, rig.clock, ana.clinician_id) == 1
        assert (await web.get("/")).status_code == 303
    assert len(await audits(rig.db, "panel_signed_out")) == 1


async def test_totp_is_required_unless_the_clinic_switches_it_off(db: Database) -> None:
    """An account without a TOTP secret cannot sign in while require_totp is on."""
    for required, status in ((True, 401), (False, 303)):
        async with panel_rig(db, Panel(require_totp=required)) as rig:
            ana = await rig.add(f"ana{int(required)}")
            async with rig.db.transaction() as session:
                account = (await session.exec(select(PanelAccount).where(
                    PanelAccount.clinician_id == ana.clinician_id))).one()  # fmt: skip
                account.totp_secret = None
                session.add(account)
            async with rig.browser() as web:
                assert (await rig.sign_in(web, ana, code="")).status_code == status


async def test_an_account_signs_in_after_the_key_is_rotated_and_the_old_one_retired(
    rig: Rig,
) -> None:
    """The e-mail, its lookup hash and the TOTP secret move to the new key with the rest."""
    newer = KeyRing((*TEST_RING.keys, new_key()))
    use_keys(newer)
    report = await rotate(rig.db, newer)
    assert report.rotated.get("panel_account") == 1
    use_keys(KeyRing(newer.keys[-1:]))
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["ana"])
