"""The panel's page of one patient, and the two files it links to: the series report and
the patient's FHIR Bundle. Each route goes through the panel's session check (no session:
``/login``; a patient the viewer may not see: 404, as if there were none), and each read
is audited with the viewer as actor (``panel_patient_viewed``, ``report_viewed``,
``exported`` like the CLI's export).

The report is the page ``checkin report`` writes, with its own inline ``<style>``: it is
served with the panel's headers but a ``style-src`` naming that one stylesheet's hash,
so nothing else inline can apply. The Bundle is pseudonymous, as the CLI's default.
"""

from __future__ import annotations

import base64
import hashlib
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from bot.app.operator import audit_log
from bot.app.panel import patient
from bot.app.panel.signin import Viewer
from bot.outputs.fhir_export import export_fhir
from bot.outputs.paging import Selection

if TYPE_CHECKING:
    from bot.web.panel.routes import Panel

# the `done` keys the patient's action forms redirect with (words: the template)
DONE = ("session_added", "session_moved", "session_cancelled", "dose_recorded", "madrs_recorded",
        "bp_recorded", "paused", "resumed", "discharged", "unchanged")  # fmt: skip
STYLE_ELEMENT = re.compile(r"<style>(.*?)</style>", re.DOTALL)


def routes(panel: Panel) -> list[Route]:
    pages = PatientPages(panel)
    return [
        Route("/patients/{patient_id:int}", panel.page(pages.show), methods=["GET"]),
        Route("/patients/{patient_id:int}/report", panel.page(pages.report), methods=["GET"]),
        Route("/patients/{patient_id:int}/fhir.json", panel.page(pages.fhir), methods=["GET"]),
    ]


class PatientPages:
    def __init__(self, panel: Panel) -> None:
        self.panel = panel
        self.app = panel.app

    async def show(self, request: Request, viewer: Viewer) -> Response:
        patient_id = int(request.path_params["patient_id"])
        page = await patient.patient_page(
            self.app.db, self.app.clock, self.app.catalog, viewer, patient_id
        )
        done = request.query_params.get("done")
        return self.panel.render("patient", viewer, page=page, done=done if done in DONE else None)

    async def report(self, request: Request, viewer: Viewer) -> Response:
        patient_id = await self._visible(request, viewer)
        from bot.outputs import report  # matplotlib: loaded when a report is first asked for

        html = await report.report_html(
            self.app.db, self.app.catalog, patient_id, self.app.clock(), viewer.actor
        )
        response = HTMLResponse(html)
        response.headers.update(_report_policy(html))
        return response

    async def fhir(self, request: Request, viewer: Viewer) -> Response:
        patient_id = await self._visible(request, viewer)
        with tempfile.TemporaryDirectory(prefix="checkin-fhir-") as folder:
            out = Path(folder) / "bundle.json"
            await export_fhir(self.app.db, self.app.catalog, out, Selection(patient_id=patient_id),
                              now=self.app.clock())  # fmt: skip
            body = out.read_bytes()
        await audit_log.record_export(
            self.app.db, self.app.clock, patient_id=patient_id, format_="fhir",
            identifiers=False, actor=viewer.actor,
        )  # fmt: skip
        name = f"patient-{patient_id}-fhir.json"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        return Response(body, media_type="application/fhir+json", headers=headers)

    async def _visible(self, request: Request, viewer: Viewer) -> int:
        patient_id = int(request.path_params["patient_id"])
        return await patient.visible_patient(self.app.db, viewer, patient_id)


def _report_policy(html: str) -> dict[str, str]:
    """The panel's policy with ``style-src`` allowing the report's own stylesheet only, by
    its hash (``secured`` keeps a policy a route has set)."""
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(m.encode()).digest()).decode() + "'"
        for m in STYLE_ELEMENT.findall(html)
    ]
    styles = " ".join(hashes) or "'none'"
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src {styles}; img-src data:; form-action 'none'; "
            "frame-ancestors 'none'; base-uri 'none'"
        )
    }
