"""The web panel's clinician page sets the language a new clinician is told in, shows it
in the list, changes it later (admins only, with the CSRF token, audited with the admin
as actor), and refuses one the renderer lacks, naming it. On SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re

from sqlmodel import select

from bot.storage.database import Database
from bot.storage.tables import AuditEvent, Clinician
from tests.panel_rig import hidden
from tests.test_panel_clinic import Rig, audit_actors, rig, token  # noqa: F401  (rig: a fixture)


async def test_an_admin_adds_a_spanish_speaking_clinician(rig: Rig) -> None:  # noqa: F811
    """Spanish is stored and listed; "fr" is shown again as a problem, nobody added."""
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["boss"])
        form = {"csrf_token": await token(web, "/clinicians"), "name": "Dra Eva",
                "role": "clinician", "channel": "console"}  # fmt: skip
        bad = await web.post("/clinicians", data=form | {"email": "fr@x.example", "language": "fr"})
        assert bad.status_code == 400 and "'fr' is not one of en, es" in html.unescape(bad.text)
        added = await web.post(
            "/clinicians", data=form | {"email": "eva@x.example", "language": "es"}
        )
        assert added.status_code == 200 and "Dra Eva was added" in added.text
        listing = (await web.get("/clinicians")).text
    assert "console, Spanish" in listing and "console, English" in listing
    async with rig.db.transaction() as session:
        staff = (await session.exec(select(Clinician))).all()
    assert [c.language for c in staff if c.display_name == "Dra Eva"] == ["es"]


def row(page: str, name: str) -> str:
    """The clinicians table's row of `name`, from its first cell to its end."""
    found = re.search(rf"<td>{name} <span.*?</tr>", page, re.DOTALL)
    assert found, f"no row for {name}"
    return found.group(0)


async def languages(db: Database) -> dict[int, str]:
    async with db.transaction() as session:
        return {c.id or 0: c.language for c in (await session.exec(select(Clinician))).all()}


async def test_an_admin_changes_a_clinicians_language(rig: Rig) -> None:  # noqa: F811
    """Ana is told in Spanish from the row's own form: stored, shown in her row (and chosen
    in its list), audited with the admin as actor; then back to English."""
    boss, ana = rig.accounts["boss"], rig.accounts["ana"].clinician_id
    async with rig.browser() as web:
        await rig.signed_in(web, boss)
        listing = (await web.get("/clinicians")).text
        assert f'action="/clinicians/{ana}/language"' in listing
        assert "console, English" in row(listing, "Dr ana")
        saved = await web.post(f"/clinicians/{ana}/language",
                               data={"csrf_token": hidden(listing, "csrf_token"), "language": "es"})  # fmt: skip
        assert saved.status_code == 303
        assert saved.headers["location"] == "/clinicians?done=language_set"
        page = (await web.get(saved.headers["location"])).text
        assert "Language saved" in page
        assert "console, Spanish" in row(page, "Dr ana") and '"es" selected' in row(page, "Dr ana")
        assert "console, English" in row(page, "Dr ben")  # nobody else changed
    assert (await languages(rig.db))[ana] == "es"
    actors = await audit_actors(rig.db, "clinician_language_set")
    assert actors == [f"clinician:{boss.clinician_id}"]
    async with rig.db.transaction() as session:
        [event] = (
            await session.exec(
                select(AuditEvent).where(AuditEvent.action == "clinician_language_set")
            )
        ).all()
    assert (event.subject, event.detail) == (f"clinician:{ana}", {"language": "es"})


async def test_a_language_change_is_refused_to_non_admins_and_without_a_token(
    rig: Rig,  # noqa: F811
) -> None:
    """A clinician (not an admin) gets 404; an admin without the CSRF token, or with another
    one, 403; a clinician who is not there, 404. Nothing changes and nothing is audited."""
    ben = rig.accounts["ben"].clinician_id
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["ana"])
        csrf = await token(web)
        refused = await web.post(
            f"/clinicians/{ben}/language", data={"csrf_token": csrf, "language": "es"}
        )
        assert refused.status_code == 404
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["boss"])
        csrf = await token(web, "/clinicians")
        for data in ({"language": "es"}, {"csrf_token": csrf[::-1], "language": "es"}):
            forged = await web.post(f"/clinicians/{ben}/language", data=data)
            assert forged.status_code == 403, data
        nobody = await web.post(
            "/clinicians/9999/language", data={"csrf_token": csrf, "language": "es"}
        )
        assert nobody.status_code == 404
    assert set((await languages(rig.db)).values()) == {"en"}
    assert await audit_actors(rig.db, "clinician_language_set") == []


async def test_an_unknown_language_is_refused_naming_it(rig: Rig) -> None:  # noqa: F811
    """A language of "fr" (or none chosen) is shown on the page as a problem naming the
    value and the languages there are, status 400; the clinician keeps English."""
    ana = rig.accounts["ana"].clinician_id
    async with rig.browser() as web:
        await rig.signed_in(web, rig.accounts["boss"])
        csrf = await token(web, "/clinicians")
        for language in ("fr", ""):
            bad = await web.post(
                f"/clinicians/{ana}/language", data={"csrf_token": csrf, "language": language}
            )
            text = html.unescape(bad.text)
            assert bad.status_code == 400, text
            assert f"language {language!r} is not one of en, es" in text
            assert 'id="set_language-problem"' in bad.text and "Traceback" not in text
    assert (await languages(rig.db))[ana] == "en"
    assert await audit_actors(rig.db, "clinician_language_set") == []
