"""The panel's Patients page and Enrol form (routes only; the use cases are
:mod:`bot.app.panel.patient_list` and :mod:`bot.app.panel.enrolment`).

``GET /patients`` lists; ``GET``/``POST /patients/new`` enrols, re-showing the form with
the entered values and a message per field when something is wrong (400), and on success
redirects (303) to ``GET /patients/{id}/link``. ``POST /patients/{id}/link`` issues a new
Telegram link and redirects there too. An enrolment code is stored only hashed, so the
code just issued travels to the link page in a short-lived ``__Host-`` cookie of its
own (``Secure``, ``HttpOnly``, ``SameSite=Strict``), read there only for that patient and
only while the database says the code is still good; the page is ``no-store``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bot.app.operator.enrolment_form import EnrolForm, EnrolRefused, EnrolRules
from bot.app.operator.invitations import Invitation
from bot.app.operator.refusals import Refused
from bot.app.operator.views import CHANNELS
from bot.app.panel import enrolment, patient_list
from bot.app.panel.signin import Viewer
from bot.domain.languages import LANGUAGES
from bot.rendering.qr import qr_svg, svg_data_uri
from bot.web.panel import security

if TYPE_CHECKING:  # the Panel imports this module for its routes
    from bot.web.panel.routes import Panel

LINK_COOKIE = "__Host-checkin-link"
LINK_COOKIE_S = 15 * 60  # long enough to hand the link over; the code's own expiry rules
FIELDS = ("name", "channel", "language", "timezone", "protocol", "clinician", "phone")


class PatientPages:
    def __init__(self, panel: Panel) -> None:
        self.panel, self.app = panel, panel.app

    def routes(self) -> list[Route]:
        page, action = self.panel.page, self.panel.action
        return [
            Route("/patients", page(self.patients), methods=["GET"]),
            Route("/patients/new", page(self.enrol_page), methods=["GET"]),
            Route("/patients/new", action(self.enrol), methods=["POST"]),
            Route("/patients/{patient_id:int}/link", page(self.link_page), methods=["GET"]),
            Route("/patients/{patient_id:int}/link", action(self.new_link), methods=["POST"]),
        ]

    async def patients(self, request: Request, viewer: Viewer) -> Response:
        filters = patient_list.filters_from(request.query_params, viewer)
        seen = await patient_list.patient_list(
            self.app.db, self.app.clock, self.app.catalog, viewer, filters
        )
        return self.panel.render("patients", viewer, listing=seen)

    # ---- enrolling --------------------------------------------------------------------

    def rules(self) -> EnrolRules:
        settings = self.app.settings
        region = settings.sms.default_region

        def phone(number: str) -> str:
            from bot.channels.sms import e164  # twilio's phonenumbers: loaded for numbers only

            return e164(number, region)

        channels = frozenset(c for c in CHANNELS if c in self.app.channels)
        return EnrolRules(channels, frozenset(settings.protocols), phone)

    async def enrol_page(self, _: Request, viewer: Viewer) -> Response:
        return await self.enrol_form(viewer, {"timezone": viewer.zone.key}, {})

    async def enrol_form(
        self, viewer: Viewer, values: dict[str, str], problems: dict[str, str], code: int = 200
    ) -> Response:
        offered = await enrolment.choices(self.app.db, viewer, self.rules())
        values = {f: values.get(f, "") for f in FIELDS}
        return self.panel.render("enrol", viewer, code, choices=offered, values=values,
                                 problems=problems, languages=LANGUAGES)  # fmt: skip

    async def enrol(self, request: Request, viewer: Viewer) -> Response:
        values = _values(await request.form())
        form = EnrolForm(values["name"], values["channel"], values["timezone"],
                         values["language"], values["protocol"], values["phone"])  # fmt: skip
        try:
            enrolled = await enrolment.enrol(
                self.app.db, self.app.clock, viewer, form, values["clinician"], self.rules(),
                self.app.invitations(), self.app.services, self.app.planner,
            )  # fmt: skip
        except enrolment.NotAllowed:
            return await self.enrol_form(viewer, values, {"clinician": "not_allowed"}, 403)
        except EnrolRefused as refused:
            codes = {f: p.code for f, p in refused.by_field().items()}
            return await self.enrol_form(viewer, values, codes, 400)
        except Refused:  # Telegram configured but its @username cannot be had
            return await self.enrol_form(viewer, values, {"channel": "unreachable"}, 400)
        return _to_link(enrolled.patient.id, enrolled.invitation)

    # ---- the link ---------------------------------------------------------------------

    async def link_page(self, request: Request, viewer: Viewer) -> Response:
        patient_id = int(request.path_params["patient_id"])
        held = request.cookies.get(LINK_COOKIE, "")
        pid, _, code = held.partition(".")
        page = await enrolment.link_page(
            self.app.db, self.app.clock, viewer, patient_id,
            code if pid == str(patient_id) else None, self.app.invitations(),
        )  # fmt: skip
        qr = svg_data_uri(qr_svg(page.invitation.link)) if page.invitation else None
        return self.panel.render("link", viewer, page=page, qr=qr,
                                 new=request.query_params.get("new") == "1")  # fmt: skip

    async def new_link(self, request: Request, viewer: Viewer) -> Response:
        patient_id = int(request.path_params["patient_id"])
        try:
            invitation = await enrolment.new_link(
                self.app.db, self.app.clock, viewer, patient_id, self.app.invitations()
            )
        except Refused:  # not a Telegram patient, or Telegram not reachable
            return self.panel.problem(400, viewer)
        return _to_link(patient_id, invitation, new=True)


def routes(panel: Panel) -> list[Route]:
    return PatientPages(panel).routes()


def _values(form: FormData) -> dict[str, str]:
    return {f: str(form.get(f, "")).strip() for f in FIELDS}


def _to_link(patient_id: int, invitation: Invitation | None, new: bool = False) -> Response:
    suffix = "?new=1" if new else ""
    response = RedirectResponse(f"/patients/{patient_id}/link{suffix}", status_code=303)
    if invitation is not None:
        value = f"{patient_id}.{invitation.code}"
        security.set_cookie(response, LINK_COOKIE, value, LINK_COOKIE_S)
    return response
