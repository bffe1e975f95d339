"""The panel's clinic pages: Clinicians (admins: add, backup, language, deactivate, new
sign-in details) and Account (everyone: their password and time zone). Thin: each route reads
its form, calls :mod:`bot.app.panel.clinic`, and renders or redirects (303).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bot.app.operator.refusals import Refused
from bot.app.panel import clinic
from bot.app.panel.clinic import FirstSignIn, Problem
from bot.app.panel.signin import Viewer
from bot.domain.languages import LANGUAGES
from bot.rendering.qr import qr_data_uri
from bot.web.panel import security

if TYPE_CHECKING:
    from bot.web.panel.routes import Panel

DONE = ("backup_set", "language_set", "deactivated", "password_changed", "timezone_set")
CLINICIAN_CHANNELS = ("console", "telegram", "sms", "whatsapp")


def routes(panel: Panel) -> list[Route]:
    pages = ClinicPages(panel)
    return [
        Route("/clinicians", panel.page(pages.clinicians), methods=["GET"]),
        Route("/clinicians", panel.action(pages.add), methods=["POST"]),
        Route("/clinicians/{cid:int}/backup", panel.action(pages.backup), methods=["POST"]),
        Route("/clinicians/{cid:int}/language", panel.action(pages.language), methods=["POST"]),
        Route("/clinicians/{cid:int}/deactivate", panel.action(pages.deactivate), methods=["POST"]),
        Route("/clinicians/{cid:int}/sign-in", panel.action(pages.sign_in), methods=["POST"]),
        Route("/account", panel.page(pages.account), methods=["GET"]),
        Route("/account/password", panel.action(pages.password), methods=["POST"]),
        Route("/account/timezone", panel.action(pages.timezone), methods=["POST"]),
    ]


class ClinicPages:
    def __init__(self, panel: Panel) -> None:
        self.panel, self.app = panel, panel.app

    def channels(self) -> list[str]:
        return [c for c in CLINICIAN_CHANNELS if c in self.app.channels or c == "console"]

    async def clinicians(
        self, request: Request, viewer: Viewer, problem: Problem | None = None,
        entered: dict[str, str] | None = None,
    ) -> Response:  # fmt: skip
        rows = await clinic.clinician_rows(self.app.db, self.app.clock, viewer)
        done = request.query_params.get("done")
        return self.panel.render(
            "clinicians", viewer, 400 if problem else 200, rows=rows,
            channels=self.channels(), languages=LANGUAGES, done=done if done in DONE else None,
            problem=problem, entered=entered or {},
        )  # fmt: skip

    async def add(self, request: Request, viewer: Viewer) -> Response:
        form = await request.form()
        entered = {
            k: str(form.get(k, "")).strip()
            for k in ("name", "channel", "phone", "email", "role", "language")
        }
        try:
            phone = self.phone(entered["channel"], entered["phone"])
            first = await clinic.add_clinician(
                self.app.db, self.app.clock, viewer, self.app.invitations(),
                name=entered["name"], channel=entered["channel"], phone=phone,
                email=entered["email"], role=entered["role"] or "clinician",
                issuer=self.app.settings.clinic.name,
                totp=self.app.settings.panel.require_totp,
                language=entered["language"] or "en",
            )  # fmt: skip
        except Problem as exc:
            return await self.clinicians(request, viewer, exc, entered)
        return self.first_sign_in(viewer, first, added=True)

    def phone(self, channel: str, phone: str) -> str | None:
        if channel not in self.channels():
            raise Problem("channel", f"{channel!r} is not one of {', '.join(self.channels())}")
        if channel not in ("sms", "whatsapp"):
            return None
        from bot.channels.sms import InvalidNumber, e164  # twilio: loaded for numbers only

        try:
            number = e164(phone.removeprefix("whatsapp:"), self.app.settings.sms.default_region)
        except InvalidNumber as exc:
            raise Problem("phone", str(exc)) from None
        return f"whatsapp:{number}" if channel == "whatsapp" else number

    def first_sign_in(self, viewer: Viewer, first: FirstSignIn, added: bool) -> Response:
        qr = qr_data_uri(first.totp_uri) if first.totp_uri else None
        link = first.telegram.link if first.telegram else None
        return self.panel.render("first_sign_in", viewer, first=first, added=added,
                                 totp_qr=qr, telegram_link=link)  # fmt: skip

    async def sign_in(self, request: Request, viewer: Viewer) -> Response:
        cid = int(request.path_params["cid"])
        try:
            first = await clinic.new_sign_in(self.app.db, self.app.clock, viewer, cid,
                                             self.app.settings.clinic.name,
                                             self.app.settings.panel.require_totp)  # fmt: skip
        except Refused as exc:
            return await self.clinicians(request, viewer, Problem("sign_in", str(exc)))
        return self.first_sign_in(viewer, first, added=False)

    async def backup(self, request: Request, viewer: Viewer) -> Response:
        cid = int(request.path_params["cid"])
        chosen = str((await request.form()).get("backup", "")).strip()
        try:
            backup = int(chosen) if chosen else None
            await clinic.set_backup(self.app.db, self.app.clock, viewer, cid, backup)
        except ValueError:
            return await self.clinicians(request, viewer, Problem("backup", "choose a clinician"))
        except Refused as exc:
            return await self.clinicians(request, viewer, Problem("backup", str(exc)))
        return RedirectResponse("/clinicians?done=backup_set", status_code=303)

    async def language(self, request: Request, viewer: Viewer) -> Response:
        cid = int(request.path_params["cid"])
        language = str((await request.form()).get("language", "")).strip()
        try:
            await clinic.set_language(self.app.db, self.app.clock, viewer, cid, language)
        except Refused as exc:
            return await self.clinicians(request, viewer, Problem("set_language", str(exc)))
        return RedirectResponse("/clinicians?done=language_set", status_code=303)

    async def deactivate(self, request: Request, viewer: Viewer) -> Response:
        cid = int(request.path_params["cid"])
        form = await request.form()
        chosen = str(form.get("reassign_to", "")).strip()
        try:
            if form.get("confirm") != "yes":
                raise Problem("deactivate", "tick the box to confirm that this clinician left")
            to = int(chosen) if chosen else None
            await clinic.deactivate(self.app.db, self.app.clock, viewer, cid, to)
        except ValueError:
            return await self.clinicians(
                request, viewer, Problem("deactivate", "choose a clinician")
            )
        except Refused as exc:
            return await self.clinicians(request, viewer, Problem("deactivate", str(exc)))
        return RedirectResponse("/clinicians?done=deactivated", status_code=303)

    # ---- the viewer's own account ----------------------------------------------------

    async def account(
        self, request: Request, viewer: Viewer, problem: Problem | None = None
    ) -> Response:
        mine = await clinic.own_account(self.app.db, viewer)
        done = request.query_params.get("done")
        return self.panel.render(
            "account", viewer, 400 if problem else 200, account=mine, problem=problem,
            default_zone=self.app.settings.panel.timezone, done=done if done in DONE else None,
        )  # fmt: skip

    async def password(self, request: Request, viewer: Viewer) -> Response:
        form = await request.form()
        given = [str(form.get(k, "")) for k in ("current", "new", "again")]
        try:
            await clinic.change_password(self.app.db, self.app.clock, viewer, *given)
        except Problem as exc:
            return await self.account(request, viewer, exc)
        response = RedirectResponse("/login?done=password_changed", status_code=303)
        security.clear_cookie(response, security.SESSION_COOKIE)  # its sessions ended
        return response

    async def timezone(self, request: Request, viewer: Viewer) -> Response:
        zone = str((await request.form()).get("timezone", ""))
        try:
            await clinic.set_timezone(self.app.db, self.app.clock, viewer, zone)
        except Problem as exc:
            return await self.account(request, viewer, exc)
        return RedirectResponse("/account?done=timezone_set", status_code=303)
