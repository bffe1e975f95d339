"""The panel's forms that act on one patient (routes only; the use cases are
:mod:`bot.app.panel.patient_actions`): add, move and cancel a treatment session, record
its dose, record a MADRS total or a blood-pressure reading, pause, resume or discharge.

Every ``GET`` shows a form (the cancellation's is a confirmation naming the session);
every ``POST`` carries the session's CSRF token (403 without it) and, done, redirects
(303) to the patient's page with ``?done=<key>`` (``unchanged`` when the change no longer
applied). A form the use case refuses is shown again, answered 400, with the values as
typed and the field it is about named. A patient or session the viewer may not see, or a
session of another patient, is 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bot.app.panel import patient_actions as acts
from bot.app.panel.patient_actions import FormProblem, SessionForm, Subject
from bot.app.panel.signin import Viewer
from bot.domain.dosing import OTHER_UNITS, ROUTES
from bot.domain.measures import BP_POINTS

if TYPE_CHECKING:  # the Panel imports this module for its routes
    from bot.web.panel.routes import Panel

LOCAL = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends and shows
SESSION_FIELDS = ("at", "route", "dose", "unit", "kind")
Values = dict[str, str]
Work = Callable[[Values], Awaitable[str]]  # does the change; the `done` key


def action_routes(panel: Panel) -> list[Route]:
    return PatientActions(panel).routes()


class PatientActions:
    def __init__(self, panel: Panel) -> None:
        self.panel, self.app = panel, panel.app

    def routes(self) -> list[Route]:
        page, action = self.panel.page, self.panel.action
        one = "/patients/{patient_id:int}"
        session = one + "/sessions/{session_id:int}"
        pairs = [
            (one + "/sessions/new", self.new_session_page, self.add_session),
            (session + "/move", self.move_page, self.move),
            (session + "/dose", self.dose_page, self.dose),
            (session + "/cancel", self.cancel_page, self.cancel),
            (one + "/measures/madrs", self.madrs_page, self.madrs),
            (one + "/measures/bp", self.bp_page, self.bp),
            (one + "/status", self.status_page, self.status),
        ]
        return [
            route
            for path, show, act in pairs
            for route in (
                Route(path, page(show), methods=["GET"]),
                Route(path, action(act), methods=["POST"]),
            )
        ]

    # ---- treatment sessions ---------------------------------------------------------------

    async def new_session_page(self, request: Request, viewer: Viewer) -> Response:
        seen = await self.subject(request, viewer)
        return self.form("action_session_new", viewer, seen, {"route": ROUTES[0]})

    async def add_session(self, request: Request, viewer: Viewer) -> Response:
        async def work(v: Values) -> str:
            form = SessionForm(**{k: v[k] for k in SESSION_FIELDS})
            await acts.add_session(self.app.planner, viewer, _patient(request), form)
            return "session_added"

        return await self.attempt(request, viewer, "action_session_new", SESSION_FIELDS, work)

    async def move_page(self, request: Request, viewer: Viewer) -> Response:
        seen = await self.subject(request, viewer)
        at = seen.session.at_local.strftime(LOCAL) if seen.session else ""
        return self.form("action_session_move", viewer, seen, {"at": at})

    async def move(self, request: Request, viewer: Viewer) -> Response:
        async def work(v: Values) -> str:
            planner, patient_id, session_id = self.app.planner, *_ids(request)
            moved = await acts.move_session(planner, viewer, patient_id, session_id, v["at"])
            return "session_moved" if moved is not None else "unchanged"

        return await self.attempt(request, viewer, "action_session_move", ("at",), work)

    async def dose_page(self, request: Request, viewer: Viewer) -> Response:
        seen = await self.subject(request, viewer)
        given = seen.session
        values = {"route": (given.route if given else None) or ROUTES[0],
                  "dose": f"{given.dose:g}" if given and given.dose is not None else "",
                  "unit": (given.dose_unit if given else None) or ""}  # fmt: skip
        return self.form("action_session_dose", viewer, seen, values)

    async def dose(self, request: Request, viewer: Viewer) -> Response:
        async def work(v: Values) -> str:
            db, clock, (patient_id, session_id) = self.app.db, self.app.clock, _ids(request)
            await acts.set_dose(db, clock, viewer, patient_id, session_id,
                                v["route"], v["dose"], v["unit"])  # fmt: skip
            return "dose_recorded"

        fields = ("route", "dose", "unit")
        return await self.attempt(request, viewer, "action_session_dose", fields, work)

    async def cancel_page(self, request: Request, viewer: Viewer) -> Response:
        return self.form("action_session_cancel", viewer, await self.subject(request, viewer), {})

    async def cancel(self, request: Request, viewer: Viewer) -> Response:
        patient_id, session_id = _ids(request)
        done = await acts.cancel_session(self.app.planner, viewer, patient_id, session_id)
        return _done(patient_id, "session_cancelled" if done else "unchanged")

    # ---- clinician-rated measures ---------------------------------------------------------

    async def madrs_page(self, request: Request, viewer: Viewer) -> Response:
        seen = await self.subject(request, viewer)
        return self.form("action_madrs", viewer, seen, {"at": seen.now_local.strftime(LOCAL)})

    async def madrs(self, request: Request, viewer: Viewer) -> Response:
        async def work(v: Values) -> str:
            db, clock, patient_id = self.app.db, self.app.clock, _patient(request)
            await acts.record_madrs(db, clock, viewer, patient_id, v["total"], v["at"])
            return "madrs_recorded"

        return await self.attempt(request, viewer, "action_madrs", ("total", "at"), work)

    async def bp_page(self, request: Request, viewer: Viewer) -> Response:
        seen = await self.subject(request, viewer)
        values = {"point": BP_POINTS[0], "at": seen.now_local.strftime(LOCAL)}
        return self.form("action_bp", viewer, seen, values)

    async def bp(self, request: Request, viewer: Viewer) -> Response:
        async def work(v: Values) -> str:
            db, clock, patient_id = self.app.db, self.app.clock, _patient(request)
            await acts.record_blood_pressure(db, clock, viewer, patient_id, v["systolic"],
                                             v["diastolic"], v["point"], v["at"])  # fmt: skip
            return "bp_recorded"

        fields = ("systolic", "diastolic", "point", "at")
        return await self.attempt(request, viewer, "action_bp", fields, work)

    # ---- the patient's status -------------------------------------------------------------

    async def status_page(self, request: Request, viewer: Viewer) -> Response:
        return self.form("action_status", viewer, await self.subject(request, viewer), {})

    async def status(self, request: Request, viewer: Viewer) -> Response:
        async def work(v: Values) -> str:
            db, clock, patient_id = self.app.db, self.app.clock, _patient(request)
            changed = await acts.change_status(db, clock, viewer, patient_id, v["action"],
                                               confirm=v["confirm"] == "yes")  # fmt: skip
            done = {"pause": "paused", "resume": "resumed", "discharge": "discharged"}
            return done[v["action"]] if changed else "unchanged"

        return await self.attempt(request, viewer, "action_status", ("action", "confirm"), work)

    # ---- shared steps ---------------------------------------------------------------------

    async def subject(self, request: Request, viewer: Viewer) -> Subject:
        session_id = request.path_params.get("session_id")
        return await acts.subject(self.app.db, self.app.clock, viewer, _patient(request),
                                  int(session_id) if session_id is not None else None)  # fmt: skip

    async def attempt(
        self, request: Request, viewer: Viewer, name: str, fields: tuple[str, ...], work: Work
    ) -> Response:
        """Do `work` with the form's `fields`; on a :class:`FormProblem`, the form again."""
        form = await request.form()
        values = {k: str(form.get(k, "")) for k in fields}
        try:
            done = await work(values)
        except FormProblem as problem:
            seen = await self.subject(request, viewer)
            return self.form(name, viewer, seen, values, problem)
        return _done(_patient(request), done)

    def form(
        self, name: str, viewer: Viewer, seen: Subject, values: Values,
        problem: FormProblem | None = None,
    ) -> Response:  # fmt: skip
        return self.panel.render(
            name, viewer, 400 if problem else 200, subject=seen, values=values,
            problem=problem, routes=ROUTES, units=OTHER_UNITS, points=BP_POINTS,
        )  # fmt: skip


def _patient(request: Request) -> int:
    return int(request.path_params["patient_id"])


def _ids(request: Request) -> tuple[int, int]:
    return _patient(request), int(request.path_params["session_id"])


def _done(patient_id: int, key: str) -> Response:
    return RedirectResponse(f"/patients/{patient_id}?done={key}", status_code=303)
