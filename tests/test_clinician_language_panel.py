"""The web panel's clinician page sets the language a new clinician is told in, shows it
in the list, and refuses one the renderer lacks, naming it. On SQLite and PostgreSQL."""

from __future__ import annotations

import html

from sqlmodel import select

from bot.storage.tables import Clinician
from tests.test_panel_clinic import Rig, rig, token  # noqa: F401  (rig: a fixture)


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
