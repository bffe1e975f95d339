"""Enrolling a patient from the panel, and the page that hands over their link.

* The form is checked by :mod:`bot.app.operator.enrolment_form` and the patient enrolled
  by :func:`bot.app.operator.patients.enrol`, as ``checkin patient add`` does: one set
  of rules for both. The panel adds who may enrol for whom: an admin, for any active
  clinician; a clinician, for themselves only (anything else is :class:`NotAllowed`).
* An enrolment code is stored only as a hash, so the link can be shown only by whoever
  still holds the code: the page that follows enrolment (and a new link) is handed it
  by the web layer, and shows it while it is unused, unexpired and this patient's.
  Otherwise the page offers a new link (earlier codes then stop working).
* Enrolling and issuing a link are audited with the viewer as actor; a patient the viewer
  may not see is ``NotFound``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select

from bot.app.conversations.enrollment import enrollment_link, hash_code
from bot.app.operator import patients
from bot.app.operator.enrolment_form import EnrolForm, EnrolRefused, EnrolRules, Problem, contact
from bot.app.operator.enrolment_form import problems as form_problems
from bot.app.operator.invitations import Invitation, Invitations
from bot.app.operator.refusals import Refused
from bot.app.panel.access import patient_for
from bot.app.panel.signin import Viewer
from bot.app.planning.planner import Planner
from bot.app.ports import Clock
from bot.app.services import Services
from bot.storage.database import Database
from bot.storage.tables import Clinician, EnrollmentCode


class NotAllowed(Refused):
    """A clinician tried to enrol a patient for another clinician."""

    def __init__(self) -> None:
        super().__init__("a clinician enrols patients for themselves only")


@dataclass(frozen=True)
class Choices:
    """What the form offers: configured channels and protocols, and the clinicians the
    viewer may enrol for (only themselves, unless an admin)."""

    channels: tuple[str, ...]
    protocols: tuple[str, ...]
    clinicians: tuple[tuple[int, str], ...]  # (id, name)
    default_zone: str


@dataclass(frozen=True)
class LinkPage:
    patient_id: int
    name: str
    channel: str
    status: str
    invitation: Invitation | None  # Telegram, while the code handed in is still good


async def choices(db: Database, viewer: Viewer, rules: EnrolRules) -> Choices:
    async with db.transaction() as session:
        statement = select(Clinician).where(col(Clinician.active).is_(True))
        if not viewer.admin:
            statement = statement.where(col(Clinician.id) == viewer.clinician_id)
        rows = (await session.exec(statement.order_by(col(Clinician.id)))).all()
        clinicians = tuple((c.id or 0, c.display_name) for c in rows)
    channels = tuple(c for c in ("telegram", "sms", "whatsapp", "console") if c in rules.channels)
    return Choices(channels, tuple(sorted(rules.protocols)), clinicians, viewer.zone.key)


async def enrol(
    db: Database, clock: Clock, viewer: Viewer, form: EnrolForm, clinician: str,
    rules: EnrolRules, invitations: Invitations, services: Services, planner: Planner,
) -> patients.Enrolled:  # fmt: skip
    """Enrol for the clinician whose id is `clinician` (a clinician: their own, or empty).
    EnrolRefused lists every problem of the form; NotAllowed for another's patient."""
    clinician_id = int(clinician) if clinician.isdigit() else None
    if not viewer.admin and not clinician:
        clinician_id = viewer.clinician_id  # the form does not offer a choice
    if not viewer.admin and clinician_id != viewer.clinician_id:
        raise NotAllowed()
    found = form_problems(form, rules)
    if clinician_id is None or not await _active(db, clinician_id):
        found.append(Problem("clinician", "unknown"))
    if found:
        raise EnrolRefused(found)
    new = patients.NewPatient(
        name=form.name.strip(), channel=form.channel, timezone=form.timezone,
        language=form.language, clinician_id=clinician_id, protocol=form.protocol or None,
        phone=contact(form.channel, form.phone, rules),
    )  # fmt: skip
    return await patients.enrol(db, clock, new, invitations, services, planner, viewer.actor)


async def _active(db: Database, clinician_id: int) -> bool:
    async with db.transaction() as session:
        row = await session.get(Clinician, clinician_id)
    return row is not None and row.active


async def link_page(
    db: Database, clock: Clock, viewer: Viewer, patient_id: int, code: str | None,
    invitations: Invitations,
) -> LinkPage:  # fmt: skip
    """The patient's link page; the link itself only for a `code` still good for them."""
    async with db.transaction() as session:
        patient = await patient_for(session, viewer, patient_id)
        good = None
        if code and patient.channel == "telegram":
            statement = select(EnrollmentCode).where(
                EnrollmentCode.code_hash == hash_code(code),
                EnrollmentCode.patient_id == patient_id,
                col(EnrollmentCode.used_at).is_(None),
                col(EnrollmentCode.expires_at) > clock(),
            )
            good = (await session.exec(statement)).first()
        page = LinkPage(patient_id, patient.display_name, patient.channel, patient.status, None)
    if good is None or code is None:
        return page
    link = enrollment_link(await invitations.bot_username(), code)
    return LinkPage(page.patient_id, page.name, page.channel, page.status,
                    Invitation(code, link, good.expires_at.astimezone(viewer.zone)))  # fmt: skip


async def new_link(
    db: Database, clock: Clock, viewer: Viewer, patient_id: int, invitations: Invitations
) -> Invitation:
    """A new link for a Telegram patient the viewer may see; earlier codes stop working."""
    async with db.transaction() as session:
        await patient_for(session, viewer, patient_id)
    return await patients.invite(db, clock, invitations, patient_id, actor=viewer.actor)
