"""``checkin measure madrs|bp``: clinician-rated measures, stored like any other score with
the patient's place in the treatment series (the web panel will call the same use cases,
bot/app/operator/measures.py)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bot.app.operator import measures
from bot.app.operator.treatments import UnreadableTime
from bot.bootstrap import App
from bot.commands.common import JsonFlag, emit_json, fail, run_use_case
from bot.commands.views import score_json, score_line
from bot.domain.errors import AnswerError
from bot.domain.instruments import BloodPressure
from bot.domain.measures import BP_POINTS, MADRS_MAX

measure_app = typer.Typer(
    help="Record clinician-rated measures: a MADRS total, blood pressure around a dose.",
    no_args_is_help=True,
)

PatientId = Annotated[int, typer.Argument(help="Patient id (see `checkin patient list`).")]
At = Annotated[
    str | None,
    typer.Option(
        "--at",
        help="When it was taken: ISO 8601, e.g. 2026-03-09T10:40 (the patient's local time) "
        "or 2026-03-09T15:40Z (that instant). Default: now.",
    ),
]
Rater = Annotated[
    int | None, typer.Option("--rater", help="The rating clinician's id (see `clinician list`).")
]


def register(app: typer.Typer) -> None:
    app.add_typer(measure_app, name="measure")


@measure_app.command("madrs")
def measure_madrs(
    ctx: typer.Context,
    patient_id: PatientId,
    total: Annotated[int, typer.Option("--total", help=f"MADRS total, 0 to {MADRS_MAX}.")],
    at: At = None,
    rater: Rater = None,
    as_json: JsonFlag = False,
) -> None:
    """Record a clinician's MADRS total; prints it with the series' baseline, the change
    and response (>= 50 % down) / remission (<= 12)."""

    async def work(app: App) -> measures.MeasureRecorded:
        return await measures.record_madrs(app.db, app.clock, patient_id, total, at, rater)

    done = _run(ctx, work)
    data = score_json(done.score) | {
        "baseline": done.baseline,
        "improvement_pct": done.improvement_pct,
        "statuses": list(done.statuses),
    }
    _print(data, as_json)


@measure_app.command("bp")
def measure_bp(
    ctx: typer.Context,
    patient_id: PatientId,
    systolic: Annotated[int, typer.Option("--systolic", help="Systolic pressure, mmHg.")],
    diastolic: Annotated[int, typer.Option("--diastolic", help="Diastolic pressure, mmHg.")],
    point: Annotated[
        str,
        typer.Option(
            "--point",
            help=f"When in the session: {' | '.join(BP_POINTS)} (pre-dose, +40 min, +2 h).",
        ),
    ],
    at: At = None,
    rater: Rater = None,
    as_json: JsonFlag = False,
) -> None:
    """Record a blood-pressure reading at a monitoring time point; flags a pre-dose reading
    above 140/90, a rise of 40/25 over that session's pre-dose reading, and 180/110."""
    reading = BloodPressure(systolic, diastolic)

    async def work(app: App) -> measures.MeasureRecorded:
        return await measures.record_blood_pressure(
            app.db, app.clock, patient_id, reading, point, at, rater
        )

    _print(score_json(_run(ctx, work).score), as_json)


def _run(ctx: typer.Context, work: Any) -> measures.MeasureRecorded:
    try:
        done: measures.MeasureRecorded = run_use_case(ctx, work)
    except UnreadableTime as exc:
        fail(
            f"--at {exc.text!r} is not an ISO 8601 time like 2026-03-09T10:40 or 2026-03-09T15:40Z"
        )
    except AnswerError as exc:
        option = {"madrs.total": "--total", "blood_pressure.point": "--point"}
        fail(f"{option.get(exc.item_key, '--' + exc.item_key.split('.')[-1])}: {exc.problem}")
    return done


def _print(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(data)
        return
    typer.echo(f"score {data['id']} recorded: {score_line(data)}")
    if data.get("flags"):
        typer.echo(f"  flags: {', '.join(data['flags'])}")
    if data.get("baseline") is not None:
        pct = data["improvement_pct"]
        change = "" if pct is None else f", {abs(pct):.0f} % {'better' if pct >= 0 else 'worse'}"
        statuses = ", ".join(data["statuses"]) or "no response or remission yet"
        typer.echo(f"  baseline {data['baseline']}{change}: {statuses}")
