"""``checkin patient add|invite|show|list``: enrol and look up patients. (Pausing,
discharging and erasing them is bot/commands/lifecycle.py.)"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from bot.app.operator import enrolment_form, patients
from bot.app.operator.enrolment_form import EnrolForm, EnrolRefused, EnrolRules, Problem
from bot.app.operator.views import CHANNELS, PATIENT_STATUSES, PatientView
from bot.bootstrap import App
from bot.commands.common import JsonFlag, emit_json, fail, run_use_case, state
from bot.commands.views import (
    checkin_json,
    echo_invitation,
    invitation_json,
    patient_json,
    score_json,
    score_line,
    warn_no_wording,
)
from bot.domain.languages import LANGUAGES

patient_app = typer.Typer(help="Enrol and look up patients.", no_args_is_help=True)

Channel = Annotated[str, typer.Option(help=f"How to reach them: {', '.join(CHANNELS)}.")]


def register(app: typer.Typer) -> None:
    app.add_typer(patient_app, name="patient")


@patient_app.command("add")
def patient_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Display name (or a pseudonym) shown to clinicians.")],
    channel: Channel,
    timezone: Annotated[str, typer.Option(help="IANA time zone, e.g. America/New_York.")] = "UTC",
    language: Annotated[str, typer.Option(help=f"Language: {', '.join(LANGUAGES)}.")] = "en",
    clinician: Annotated[int | None, typer.Option(help="Responsible clinician's id.")] = None,
    protocol: Annotated[str | None, typer.Option(help="Schedule protocol name.")] = None,
    address: Annotated[
        str | None, typer.Option(help="Console channel only: the name the patient types as.")
    ] = None,
    phone: Annotated[
        str | None, typer.Option(help="SMS: the patient's mobile number (E.164, or national).")
    ] = None,
    consented_at: Annotated[
        datetime | None,
        typer.Option(
            help="WhatsApp: when the patient opted in, by the clinic's own record (UTC unless "
            "an offset is given); no invitation is sent.",
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"],
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Enrol a patient. Console patients are active at once; Telegram patients get a
    single-use link; SMS and WhatsApp patients get an invitation and become active when
    they reply YES (WhatsApp: or at once, given --consented-at)."""
    rules = enrol_rules(ctx)
    form = EnrolForm(name, channel, timezone, language, protocol or "", phone or "")
    found = enrolment_form.problems(form, rules)
    if found:
        fail(_option_problem(found[0], form, rules))
    new = patients.NewPatient(
        name, channel, timezone, language, clinician, protocol, address,
        phone=enrolment_form.contact(channel, phone, rules),
        consented_at=_consent(channel, consented_at),
    )  # fmt: skip

    async def work(app: App) -> patients.Enrolled:
        return await patients.enrol(
            app.db, app.clock, new, app.invitations(), app.services, app.planner
        )

    enrolled = run_use_case(ctx, work)
    data = patient_json(enrolled.patient) | invitation_json(enrolled.invitation)
    if enrolled.invited:
        data["invited"] = True
    if protocol is not None:
        data["no_wording"] = list(enrolled.no_wording)
    warn_no_wording(enrolled.patient.id, language, enrolled.no_wording)
    if as_json:
        emit_json(data)
        return
    typer.echo(f"patient {data['id']} added ({data['channel']}, {data['status']})")
    echo_invitation(data)


def _consent(channel: str, consented_at: datetime | None) -> datetime | None:
    if consented_at is None:
        return None
    if channel != "whatsapp":
        fail("--consented-at is for --channel whatsapp")
    return consented_at if consented_at.tzinfo else consented_at.replace(tzinfo=UTC)


def enrol_rules(ctx: typer.Context) -> EnrolRules:
    """The CLI's view of the configuration: Telegram and the console are always offered
    (a Telegram link says itself when Telegram is not set up); SMS and WhatsApp only
    when configured."""
    settings = state(ctx).settings()
    off = {"sms": not settings.sms.enabled, "whatsapp": not settings.whatsapp.enabled}
    region = settings.sms.default_region

    def phone(number: str) -> str:
        from bot.channels.sms import e164  # twilio: loaded for phone numbers only

        return e164(number, region)  # InvalidNumber is a ValueError

    channels = frozenset(c for c in CHANNELS if not off.get(c, False))
    return EnrolRules(channels, frozenset(settings.protocols), phone)


def phone_number(ctx: typer.Context, channel: str, phone: str | None) -> str | None:
    """The E.164 number for an SMS patient or clinician (``whatsapp:+E164`` on WhatsApp),
    and that channel must be configured."""
    rules = enrol_rules(ctx)
    try:
        return enrolment_form.contact(channel, phone, rules)
    except EnrolRefused as refused:
        form = EnrolForm("", channel, "", "", "", phone or "")
        fail(_option_problem(refused.problems[0], form, rules))


_NOT_CONFIGURED = {
    "sms": "sms is not configured: set [sms] account_sid, auth_token and from_number",
    "whatsapp": "whatsapp is not configured: set [whatsapp] from_number (and [sms] credentials)",
}


def _option_problem(problem: Problem, form: EnrolForm, rules: EnrolRules) -> str:
    """The CLI's words for a problem of the enrolment form, naming the option."""
    known = ", ".join(sorted(rules.protocols)) or "none configured"
    words = {
        ("name", "empty"): "--name must not be empty",
        ("channel", "unknown"): f"--channel {form.channel!r} is not one of {', '.join(CHANNELS)}",
        ("channel", "not_configured"): _NOT_CONFIGURED.get(
            form.channel, f"{form.channel} is not configured"
        ),
        ("language", "unknown"): (
            f"--language {form.language!r} is not one of {', '.join(LANGUAGES)}"
        ),
        ("timezone", "unknown"): (
            f"--timezone {form.timezone!r} is not an IANA time zone (e.g. Europe/Madrid)"
        ),
        ("protocol", "unknown"): (
            f"--protocol: no protocol {form.protocol!r} (known: {known}); "
            "see `checkin schedule protocols`"
        ),
        ("phone", "not_for_channel"): "--phone is for --channel sms or whatsapp",
        ("phone", "missing"): f"--channel {form.channel} needs --phone NUMBER",
        ("phone", "invalid"): f"--phone {problem.detail}",
    }
    return words.get((problem.field, problem.code), f"--{problem.field}: {problem.code}")


@patient_app.command("invite")
def patient_invite(
    ctx: typer.Context,
    patient_id: Annotated[int, typer.Argument(help="Patient id.")],
    relink: Annotated[
        bool,
        typer.Option(
            "--relink",
            help="Let the link move a patient already active in one chat to another "
            "(their old chat is told, without details).",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Issue a new single-use enrolment link (Telegram), e.g. when the first one expired;
    links issued before it stop working."""

    async def work(app: App) -> dict[str, Any]:
        invitation = await patients.invite(app.db, app.clock, app.invitations(), patient_id, relink)
        return {"id": patient_id} | invitation_json(invitation)

    data = run_use_case(ctx, work)
    if as_json:
        emit_json(data)
    else:
        echo_invitation(data)


@patient_app.command("show")
def patient_show(
    ctx: typer.Context,
    patient_id: Annotated[int, typer.Argument(help="Patient id.")],
    as_json: JsonFlag = False,
) -> None:
    """Show a patient with their check-ins (each with every answer given, those replaced
    after BACK marked superseded), scores and alerts."""

    async def work(app: App) -> patients.PatientRecord:
        return await patients.show(app.db, app.clock, patient_id)

    record = run_use_case(ctx, work)
    data = _record_json(record)
    if as_json:
        emit_json(data)
        return
    typer.echo(f"patient {data['id']}: {data['name']} ({data['channel']}, {data['status']})")
    for c in data["checkins"]:
        typer.echo(
            f"  check-in {c['id']}: {'+'.join(c['instruments'])} {c['status']} due {c['due_at']}"
        )
        for a in (a for a in data["answers"] if a["checkin_id"] == c["id"]):
            typer.echo(_answer_line(a))
    for s in data["scores"]:
        typer.echo(f"  {s['completed_at'][:16]} {score_line(s)}")


def _answer_line(a: dict[str, Any]) -> str:
    line = f"    answer {a['id']}: {a['item_key']} = {a['value']} at {a['answered_at'][:16]}"
    if a["superseded_at"] is None:
        return line
    return f"{line} (superseded by answer {a['superseded_by']} at {a['superseded_at'][:16]})"


def _record_json(record: patients.PatientRecord) -> dict[str, Any]:
    return patient_json(record.patient) | {
        "checkins": [checkin_json(c) for c in record.checkins],
        "answers": [
            {
                "id": a.id,
                "checkin_id": a.checkin_id,
                "item_key": a.item_key,
                "value": a.value,
                "answered_at": a.answered_at.isoformat(),
                "superseded_by": a.superseded_by,
                "superseded_at": a.superseded_at.isoformat() if a.superseded_at else None,
            }
            for a in record.answers
        ],
        "scores": [score_json(s) for s in record.scores],
        "alerts": [
            {"id": a.id, "rule": a.rule, "level": a.level, "status": a.status}
            for a in record.alerts
        ],
    }


@patient_app.command("list")
def patient_list(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(help=f"Only patients in this status: {', '.join(PATIENT_STATUSES)}."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List patients (id, name, channel, status)."""
    if status is not None and status not in PATIENT_STATUSES:
        fail(f"--status {status!r} is not one of {', '.join(PATIENT_STATUSES)}")

    async def work(app: App) -> list[PatientView]:
        return await patients.list_patients(app.db, app.clock, status)

    rows = run_use_case(ctx, work)
    if as_json:
        emit_json([patient_json(p) for p in rows])
        return
    for p in rows:
        typer.echo(f"{p.id:>5}  {p.name:<24} {p.channel:<9} {p.status}")
