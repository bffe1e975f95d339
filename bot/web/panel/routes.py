"""The panel's routes: sign-in and sign-out, the Today page, acknowledging and resolving
an alert, the stylesheet. Routes check the session and the CSRF token, call a use case
of :mod:`bot.app.panel`, and render a page or redirect (303, so a reload never posts
twice). Without a session every page redirects to ``/login``; a patient or alert the
viewer may not see is 404; a form without its CSRF token is 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from bot.app.operator.refusals import Refused
from bot.app.panel import today
from bot.app.panel.signin import NotRecognised, SignIn, SlowDown, Viewer
from bot.bootstrap import App
from bot.domain.errors import NotFound
from bot.rendering.pages import Pages
from bot.web.panel import clinic_routes, patient_routes, patients_routes, security
from bot.web.panel.patient_actions import action_routes
from bot.web.panel.security import LOGIN_COOKIE, SESSION_COOKIE, secured

Handler = Callable[[Request], Awaitable[Response]]
Action = Callable[[Request, Viewer], Awaitable[Response]]


class Panel:
    def __init__(self, app: App) -> None:
        self.app = app
        self.sign_in = SignIn(app.db, app.clock, app.settings.panel)
        self.pages = Pages(locale=app.settings.panel.locale)
        self.stylesheet = resources.files(__package__).joinpath("static/panel.css").read_bytes()

    def routes(self) -> list[Route]:
        return [
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.action(self.logout), methods=["POST"]),
            Route("/", self.page(self.today), methods=["GET"]),
            Route("/alerts/{alert_id:int}/ack", self.action(self.ack), methods=["POST"]),
            Route("/alerts/{alert_id:int}/resolve", self.action(self.resolve), methods=["POST"]),
            Route("/panel.css", self.css, methods=["GET"]),
            *patients_routes.routes(self),  # Patients list, Enrol, the enrolment link
            *clinic_routes.routes(self),  # Clinicians (admins) and Account
            *patient_routes.routes(self),  # a patient's page, report, FHIR
            *action_routes(self),  # forms that act on a patient
        ]

    # ---- the wrappers: a session for every page, and a CSRF token for every action ----

    def page(self, handler: Action) -> Handler:
        async def wrapped(request: Request) -> Response:
            viewer = await self.sign_in.viewer(request.cookies.get(SESSION_COOKIE))
            if viewer is None:
                return secured(RedirectResponse("/login", status_code=303))
            try:
                return secured(await handler(request, viewer))
            except NotFound:
                return self.problem(404, viewer)

        return wrapped

    def action(self, handler: Action) -> Handler:
        async def checked(request: Request, viewer: Viewer) -> Response:
            form = await request.form()
            if not security.same(form.get("csrf_token"), viewer.csrf_token):
                return self.problem(403, viewer)
            return await handler(request, viewer)

        return self.page(checked)

    def render(self, name: str, viewer: Viewer | None, code: int = 200, **data: object) -> Response:
        body = self.pages.render(name, viewer=viewer, clinic=self.app.settings.clinic.name, **data)
        return secured(HTMLResponse(body, status_code=code))

    def problem(self, status: int, viewer: Viewer | None) -> Response:
        return self.render("problem", viewer, status, status=status)

    # ---- sign-in and sign-out ---------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        if await self.sign_in.viewer(request.cookies.get(SESSION_COOKIE)) is not None:
            return secured(RedirectResponse("/", status_code=303))
        changed = request.query_params.get("done") == "password_changed"
        return self.login_form(request, problem="", email="", notice=changed)

    def login_form(
        self, request: Request, problem: str, email: str, status: int = 200, notice: bool = False
    ) -> Response:
        token = security.login_token(request)
        totp = self.app.settings.panel.require_totp
        response = self.render("login", None, status, csrf_token=token, problem=problem,
                               email=email, require_totp=totp, password_changed=notice)  # fmt: skip
        security.set_cookie(response, LOGIN_COOKIE, token)
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form()
        if not security.same(form.get("csrf_token"), request.cookies.get(LOGIN_COOKIE, "")):
            return self.problem(403, None)
        email, password, code = (str(form.get(k, "")) for k in ("email", "password", "code"))
        address = request.client.host if request.client else ""
        try:
            token = await self.sign_in.sign_in(email, password, code, address)
        except SlowDown:
            return self.login_form(request, "slow_down", email, status=429)
        except NotRecognised:
            return self.login_form(request, "not_recognised", email, status=401)
        response = secured(RedirectResponse("/", status_code=303))
        max_age = int(self.app.settings.panel.absolute_timeout_h * 3600)
        security.set_cookie(response, SESSION_COOKIE, token, max_age)
        security.clear_cookie(response, LOGIN_COOKIE)
        return response

    async def logout(self, _: Request, viewer: Viewer) -> Response:
        await self.sign_in.sign_out(viewer)
        response = RedirectResponse("/login", status_code=303)
        security.clear_cookie(response, SESSION_COOKIE)
        return response

    # ---- Today ------------------------------------------------------------------------

    async def today(self, request: Request, viewer: Viewer) -> Response:
        seen = await today.today(self.app.db, self.app.clock, viewer)
        done = request.query_params.get("done")
        done = done if done in ("acknowledged", "resolved", "unchanged") else None
        return self.render("today", viewer, today=seen, done=done, resolutions=today.RESOLUTIONS)

    async def ack(self, request: Request, viewer: Viewer) -> Response:
        alert_id = int(request.path_params["alert_id"])
        changed = await today.acknowledge(self.app.db, self.app.clock, viewer, alert_id)
        return _back("acknowledged" if changed else "unchanged")

    async def resolve(self, request: Request, viewer: Viewer) -> Response:
        alert_id = int(request.path_params["alert_id"])
        reason = str((await request.form()).get("reason", ""))
        try:
            changed = await today.resolve(self.app.db, self.app.clock, viewer, alert_id, reason)
        except Refused:
            return self.problem(400, viewer)
        return _back("resolved" if changed else "unchanged")

    async def css(self, _: Request) -> Response:
        response = Response(self.stylesheet, media_type="text/css")
        response.headers["Cache-Control"] = "max-age=3600"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _back(done: str) -> Response:
    return RedirectResponse(f"/?done={done}", status_code=303)
