"""The ``checkin`` command line.

Every command has help text; every error is one line on stderr naming what was wrong,
with exit status 2 for bad input, never a traceback. Commands that print data accept
``--json`` and then print one JSON document on stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from bot.commands import (
    alerts,
    audit,
    checkins,
    clinicians,
    configcheck,
    database,
    export,
    imports,
    inbound,
    keys,
    lifecycle,
    measures,
    patients,
    report,
    schedule,
    service,
    treatments,
)
from bot.commands.common import JsonFlag, State, emit_json, fail, state
from bot.domain.errors import CheckinError
from bot.domain.instruments import AnswerValue, Instrument
from bot.domain.parsing import Answer, parse_reply
from bot.domain.scoring import ScoreResult, score

app = typer.Typer(
    name="checkin",
    help="mbc-checkin: measurement-based-care check-ins over Telegram and SMS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
instruments_app = typer.Typer(
    help="List and inspect the loaded questionnaires.", no_args_is_help=True
)
app.add_typer(instruments_app, name="instruments")
database.register(app)
patients.register(app)
clinicians.register(app)
app.command("ask")(checkins.ask)
service.register(app)
treatments.register(app)
schedule.register(app)
audit.register(app)
lifecycle.register(app)
export.register(app)
configcheck.register(app)
keys.register(app)
alerts.register(app)
report.register(app)
checkins.register(app)
inbound.register(app)
measures.register(app)
imports.register(app)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Configuration file (default: $CHECKIN_CONFIG, else ./config.toml if present).",
        ),
    ] = None,
) -> None:
    ctx.obj = State(config=config)


@instruments_app.command("list")
def instruments_list(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List every instrument: key, name, items, score range, and whether it can be used."""
    catalog = state(ctx).catalog()
    rows = [_summary(i) for i in catalog] + [
        {"key": key, "status": "needs wording", "reason": str(err)}
        for key, err in sorted(catalog.unavailable.items())
    ]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        if row["status"] != "available":
            typer.echo(f"{row['key']:<14} unavailable: {row['reason']}")
            continue
        scale = f"0-{row['max_total']}" if row["max_total"] is not None else "checklist"
        typer.echo(f"{row['key']:<14} {row['name']:<18} {row['items']:>2} items  {scale}")


def _summary(instrument: Instrument) -> dict[str, Any]:
    return {
        "key": instrument.key,
        "status": "available",
        "name": instrument.name,
        "title": instrument.title,
        "kind": instrument.kind,
        "items": len(instrument.items),
        "max_total": instrument.max_total,
        "languages": sorted(instrument.languages),
        "loinc_panel": instrument.loinc_panel,
    }


@instruments_app.command("show")
def instruments_show(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Instrument key, e.g. phq9.")],
    language: Annotated[str, typer.Option(help="Language of the wording shown.")] = "en",
    as_json: JsonFlag = False,
) -> None:
    """Show an instrument's items, options, bands, safety items and LOINC codes."""
    instrument = _instrument(ctx, key)
    if as_json:
        emit_json(_detail(instrument, language))
        return
    typer.echo(f"{instrument.name}: {instrument.title} ({instrument.kind})")
    if instrument.intro:
        typer.echo(instrument.intro.get(language))
    for item in instrument.items:
        marks = [m for m, on in (("safety", item.safety), ("unscored", not item.scored)) if on]
        suffix = f"  [{', '.join(marks)}]" if marks else ""
        typer.echo(f"\n{item.number}. {item.key}{suffix}\n   {item.text.get(language)}")
        for option in item.options:
            typer.echo(f"     {option.value} = {option.label.get(language)}")
    if instrument.bands:
        typer.echo(
            "\nBands: "
            + ", ".join(f"{b.low}-{b.high} {b.label.get(language)}" for b in instrument.bands)
        )
    if instrument.attribution:
        typer.echo(f"\n{instrument.attribution}")


def _detail(instrument: Instrument, language: str) -> dict[str, Any]:
    return _summary(instrument) | {
        "intro": instrument.intro.get(language) if instrument.intro else None,
        "attribution": instrument.attribution,
        "loinc_total": instrument.loinc_total,
        "items": [
            {
                "key": i.key,
                "number": i.number,
                "text": i.text.get(language),
                "kind": i.kind,
                "scored": i.scored,
                "safety": i.safety,
                "skippable": i.skippable,
                "loinc": i.loinc,
                "options": [{"value": o.value, "label": o.label.get(language)} for o in i.options],
            }
            for i in instrument.items
        ],
        "bands": [
            {"min": b.low, "max": b.high, "key": b.key, "label": b.label.get(language)}
            for b in instrument.bands
        ],
    }


@app.command("score")
def score_command(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Instrument key, e.g. phq9.")],
    answers: Annotated[
        str,
        typer.Argument(
            help="Item values (numbers) in item order, comma-separated; an empty field is a "
            "missing answer. Example: checkin score phq9 1,2,0,1,,3,0,1,0"
        ),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Score one set of answers by the instrument's published rules."""
    instrument = _instrument(ctx, key)
    result = score(instrument, _answers(instrument, answers))
    if as_json:
        emit_json(score_json(instrument, result))
        return
    typer.echo(_score_line(instrument, result))


def _instrument(ctx: typer.Context, key: str) -> Instrument:
    try:
        return state(ctx).catalog().get(key)
    except CheckinError as exc:
        fail(str(exc))


def _answers(instrument: Instrument, text: str) -> dict[str, AnswerValue]:
    fields = [f.strip() for f in text.split(",")]
    items = instrument.items
    last_scored = max((n for n, i in enumerate(items, 1) if i.scored), default=1)
    if not last_scored <= len(fields) <= len(items):
        expected = (
            str(len(items)) if last_scored == len(items) else f"{last_scored} to {len(items)}"
        )
        got = len(fields)
        fail(f"{instrument.key} takes {expected} comma-separated values in item order; got {got}")
    parsed: dict[str, AnswerValue] = {}
    for item, field in zip(items, fields, strict=False):
        if not field:
            continue
        reply = parse_reply(item, field)
        exact = item.kind == "blood_pressure" or field.lstrip("+-").isdigit()
        if not exact or not isinstance(reply, Answer):
            allowed = ", ".join(map(str, item.values)) or "a reading like 120/80"
            fail(f"{item.key}: {field!r} is not a valid answer ({allowed})")
        parsed[item.key] = reply.value
    return parsed


def score_json(instrument: Instrument, result: ScoreResult) -> dict[str, Any]:
    band = next((b for b in instrument.bands if b.key == result.band), None)
    return {
        "instrument": result.instrument,
        "total": result.total,
        "max_total": result.max_total,
        "band": result.band,
        "band_label": band.label.get("en") if band else None,
        "valid": result.valid,
        "prorated": result.prorated,
        "raw_total": result.raw_total,
        "answered": result.answered,
        "missing": list(result.missing),
        "domains": dict(result.domains),
        "flags": list(result.flags),
        "reason": result.reason or None,
    }


def _score_line(instrument: Instrument, result: ScoreResult) -> str:
    flags = f"; flags: {', '.join(result.flags)}" if result.flags else ""
    if instrument.scoring.method == "none":
        return f"{instrument.name}: checklist, no total{flags or '; no flags'}"
    if not result.valid:
        return f"{instrument.name}: no valid total ({result.reason}){flags}"
    band = instrument.band_for(result.total or 0)
    label = f": {band.label.get('en')}" if band else ""
    prorated = f" (prorated from {result.answered} answered items)" if result.prorated else ""
    return f"{instrument.name} total {result.total} of {result.max_total}{label}{prorated}{flags}"


def main() -> None:
    """Run the command line. Click's own handling (``standalone_mode``) is off so that a
    usage mistake (``--days -3``, ``--format`` without a value, an unknown option) is one
    line like every other error, not the framework's boxed usage message; the exit
    statuses stay Click's (2 for a usage mistake, 1 for an abort, a command's own)."""
    try:
        result = app(standalone_mode=False)
    except _CLICK_ERROR as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(2)  # Typer printed the help while the error was being made
        where = _where(exc) if isinstance(exc, _USAGE_ERROR) else ""
        message: str = getattr(exc, "format_message", exc.__str__)()
        typer.echo(f"error: {where}{' '.join(message.split())}", err=True)
        sys.exit(int(getattr(exc, "exit_code", 1)))
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except CheckinError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    sys.exit(result if isinstance(result, int) else 0)  # typer.Exit's code, else success


def _click_class(name: str) -> type[Exception]:
    """Click's exception class `name`, found through ``typer.BadParameter`` (public), since
    Typer 0.26 vendors Click and exports neither ``UsageError`` nor ``ClickException``."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


_USAGE_ERROR = _click_class("UsageError")
_CLICK_ERROR = _click_class("ClickException")


def _where(exc: Exception) -> str:
    ctx = getattr(exc, "ctx", None)
    return f"{ctx.command_path}: " if ctx is not None else ""
