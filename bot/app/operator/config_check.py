"""``checkin config check``: every problem in the configuration, instruments, protocols,
alert rules and templates, each with its file and key, instead of the first one only.

The service's loader (bot/config/) stops at the first problem, which is right at
start-up. This collector runs the same validators on one key at a time, so one broken
key does not hide the next, then checks what spans files: instruments named by
protocols and alert rules, templates that must render every intent in every channel and
language with ``StrictUndefined``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import jinja2

from bot import config
from bot.app.operator.recall_notes import note, recall_windows
from bot.config.whatsapp_config import missing_templates
from bot.domain import events as ev
from bot.domain.alerts import check_references
from bot.domain.errors import CheckinError, ConfigError, DefinitionError
from bot.domain.instruments import Instrument
from bot.domain.languages import LANGUAGES
from bot.domain.parsing import Invalid
from bot.domain.schedule import Protocol, Rule, protocol_from_mapping
from bot.domain.schedule.recall import protocol_overlaps
from bot.domain.scoring import score
from bot.instruments import Catalog, load_catalog
from bot.rendering.renderer import (
    CHANNELS,
    OPTIONAL,
    TEMPLATES_DIR,
    Renderer,
    template_name,
)

T = TypeVar("T")
_AT = datetime(2026, 1, 1, tzinfo=UTC)
OWN_SECTIONS = {"protocols"}  # checked here, table by table, not by the service's loader


@dataclass(frozen=True)
class Problem:
    file: str
    key: str
    problem: str

    def line(self) -> str:
        return (
            f"{self.file}: {self.key}: {self.problem}"
            if self.key
            else f"{self.file}: {self.problem}"
        )


@dataclass
class Report:
    """Problems stop the service (exit status 1); warnings are configurations that load but
    are probably not what was meant (printed, never fatal)."""

    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    instruments: int = 0
    protocols: int = 0
    templates: int = 0

    def add(self, problem: Problem) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def guard(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Run `work`, recording its ConfigError or DefinitionError as a problem."""
        try:
            return work(*args, **kwargs)
        except (ConfigError, DefinitionError) as exc:
            self.add(_problem(exc))
            return None


def _problem(exc: CheckinError) -> Problem:
    if isinstance(exc, ConfigError):
        return Problem(exc.source, exc.key, exc.problem)
    if isinstance(exc, DefinitionError):
        return Problem(exc.source, exc.field, exc.problem)
    return Problem("", "", str(exc))


def check(explicit: Path | None, templates_dir: Path = TEMPLATES_DIR) -> Report:
    report = Report()
    path, required = config.config_path(explicit)
    data = _read(path, required, report)
    if data is None:
        return report
    _check_keys(data, path, report)
    settings = report.guard(_settings, data, path)
    dirs = settings.instruments_dirs if settings else _dirs(data, path)
    catalog = _catalog(dirs, report)
    report.instruments = len(catalog.instruments)
    for key, missing in sorted(catalog.unavailable.items()):
        report.notes.append(
            f"{key} is unavailable until its wording is supplied ({missing.problem})"
        )
    _check_protocols(data, str(path), catalog, report)
    if settings is not None:
        source = settings.source
        _check_quiet_hours(data, settings.clinic, source, report)
        report.guard(
            check_references, settings.alerts, catalog.instruments, catalog.unavailable, source
        )
        _check_whatsapp(settings.whatsapp, source, report)
    clinic = settings.clinic if settings else config.Clinic()
    _check_templates(Renderer(catalog, clinic, templates_dir), templates_dir, catalog, report)
    return report


def _settings(data: Mapping[str, Any], path: Path) -> config.Settings:
    """The settings as the service would load them (environment included); the sections
    this module checks itself are left out, so a loader without them still runs."""
    mine = {k: v for k, v in data.items() if k not in OWN_SECTIONS}
    return config.with_environment(config.settings_from_mapping(mine, path))


def _read(path: Path, required: bool, report: Report) -> dict[str, Any] | None:
    if not path.exists():
        if required:
            report.add(Problem(str(path), "", "does not exist"))
            return None
        report.notes.append(f"no {path}: using the defaults")
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        report.add(Problem(str(path), "", f"is not valid TOML ({exc})"))
    except OSError as exc:
        report.add(Problem(str(path), "", f"cannot be read ({exc.strerror})"))
    return None


def _check_keys(data: Mapping[str, Any], path: Path, report: Report) -> None:
    """The service's own validators, fed one key (one alert rule) at a time."""
    for section, table in data.items():
        if section in OWN_SECTIONS:
            continue
        for piece in _pieces(section, table):
            report.guard(config.settings_from_mapping, piece, path)


def _pieces(section: str, table: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(table, dict) or not table:
        yield {section: table}
        return
    for key, value in table.items():
        if section == "alerts" and key == "rules" and isinstance(value, dict) and value:
            yield from ({section: {key: {rule: raw}}} for rule, raw in value.items())
        else:
            yield {section: {key: value}}


def _dirs(data: Mapping[str, Any], path: Path) -> tuple[Path, ...]:
    raw = data.get("instruments", {})
    dirs = raw.get("dirs", []) if isinstance(raw, dict) else []
    valid = [d for d in dirs if isinstance(d, str)] if isinstance(dirs, list) else []
    return tuple(path.resolve().parent / d for d in valid)


def _catalog(dirs: tuple[Path, ...], report: Report) -> Catalog:
    """The whole catalog; if it will not load, each directory on its own, to find more."""
    catalog = report.guard(load_catalog, dirs)
    if catalog is not None:
        return catalog
    for directory in dirs:
        report.guard(load_catalog, [directory])
    return report.guard(load_catalog) or Catalog({})


def _check_protocols(
    data: Mapping[str, Any], source: str, catalog: Catalog, report: Report
) -> None:
    protocols = data.get("protocols", {})
    if not isinstance(protocols, dict):
        report.add(Problem(source, "protocols", "must be a table of protocols"))
        return
    known = set(catalog.keys)
    for name, table in protocols.items():
        rules = table.get("rules") if isinstance(table, dict) else None
        if not isinstance(rules, dict) or not rules:
            report.guard(protocol_from_mapping, name, table, source, instruments=known)
            continue
        seen: dict[tuple[object, frozenset[str]], str] = {}
        for rule, raw in rules.items():
            one = {**table, "rules": {rule: raw}}
            built = report.guard(protocol_from_mapping, name, one, source, instruments=known)
            for key in _instruments(raw) if built is not None else ():
                if key in catalog.unavailable:
                    where = f"protocols.{name}.rules.{rule}.instruments"
                    report.add(Problem(source, where, f"{key} is unavailable: supply its wording"))
            if built is not None:
                _same_rule(built.rules[0], f"protocols.{name}.rules", seen, source, report)
        whole = report.guard(protocol_from_mapping, name, table, source, instruments=known)
        if whole is not None:
            _recall(whole, catalog, source, report)
        report.protocols += 1


def _recall(protocol: Protocol, catalog: Catalog, source: str, report: Report) -> None:
    """Warn where the rules ask an instrument again within half its recall window."""
    for overlap in protocol_overlaps(protocol, recall_windows(catalog)):
        where = f"protocols.{protocol.name}.rules.{overlap.rules[0]}"
        report.warnings.append(Problem(source, where, note(overlap, catalog)))


def _same_rule(
    rule: Rule,
    path: str,
    seen: dict[tuple[object, frozenset[str]], str],
    source: str,
    report: Report,
) -> None:
    """Warn on a rule with the instruments and the timing of an earlier one: it plans the
    same check-ins a second time under another name (bundled, they are asked once)."""
    same = (rule.timing, frozenset(rule.instruments))
    if same in seen:
        problem = f"the same rule as {path}.{seen[same]} (same instruments and timing); remove one"
        report.warnings.append(Problem(source, f"{path}.{rule.name}", problem))
    else:
        seen[same] = rule.name


def _check_quiet_hours(
    data: Mapping[str, Any], clinic: config.Clinic, source: str, report: Report
) -> None:
    """Equal start and end switch quiet hours off without a word; that must be said."""
    table = data.get("clinic", {})
    explicit = isinstance(table, dict) and "quiet_hours" in table
    if explicit or clinic.quiet_hours_start_local != clinic.quiet_hours_end_local:
        return
    at = f"{clinic.quiet_hours_start_local:%H:%M}"
    problem = (
        f"equals quiet_hours_end_local ({at}), which switches quiet hours off; to mean that, "
        'write quiet_hours = "none" instead of the two times'
    )
    report.warnings.append(Problem(source, "clinic.quiet_hours_start_local", problem))


def _check_whatsapp(whatsapp: config.WhatsApp, source: str, report: Report) -> None:
    """Every template the sender needs; and a warning when alerts have no Spanish one.
    English stands in for it, so that is no error, and this check reads no database: it
    cannot tell whether a WhatsApp clinician is told in Spanish, so the warning says if."""
    for key in missing_templates(whatsapp):
        why = "is missing: WhatsApp lets a business begin a conversation only with a template"
        report.add(Problem(source, key, why))
    alert = whatsapp.templates.get("alert", {})
    if whatsapp.enabled and "en" in alert and "es" not in alert:
        why = (
            "is not set: a WhatsApp clinician told in Spanish (`clinician language ID es`) "
            "gets alerts as the English template, its words in Spanish; if any is, set "
            "[whatsapp.templates.alert] es"
        )
        report.warnings.append(Problem(source, "whatsapp.templates.alert.es", why))


def _instruments(raw: Any) -> list[str]:
    keys = raw.get("instruments", []) if isinstance(raw, dict) else []
    return [k for k in keys if isinstance(k, str)]


# ---- templates ---------------------------------------------------------------------


def _check_templates(renderer: Renderer, directory: Path, catalog: Catalog, report: Report) -> None:
    files = sorted(directory.rglob("*.j2"))
    report.templates = len(files)
    broken: set[str] = set()
    for file in files:
        name = file.relative_to(directory).as_posix()
        try:
            renderer.plain.parse(file.read_text(encoding="utf-8"), name, str(file))
        except jinja2.TemplateSyntaxError as exc:
            broken.add(name)
            report.add(
                Problem(
                    _where(directory, name), f"line {exc.lineno}", exc.message or "syntax error"
                )
            )
    intents = sample_intents(catalog)
    for language in LANGUAGES:
        for channel in CHANNELS:
            for intent in intents:
                _render(renderer, directory, intent, channel, language, broken, report)


def _render(
    renderer: Renderer,
    directory: Path,
    intent: ev.Intent,
    channel: str,
    language: str,
    broken: set[str],
    report: Report,
) -> None:
    name = f"{language}/{channel}/{template_name(intent)}.j2"
    try:
        renderer.render(intent, channel, language)
    except jinja2.TemplateNotFound as exc:
        if template_name(intent) not in OPTIONAL:
            report.add(Problem(_where(directory, str(exc.name or name)), "", "is missing"))
    except jinja2.TemplateSyntaxError as exc:
        if (exc.name or name) not in broken:
            report.add(
                Problem(_where(directory, exc.name or name), f"line {exc.lineno}", str(exc.message))
            )
    except Exception as exc:  # an undefined value, a filter on the wrong type, ...
        key = f"{type(intent).__name__} ({channel}, {language})"
        report.add(Problem(_where(directory, name), key, f"does not render: {exc}"))


def _where(directory: Path, name: str) -> str:
    return str(directory / name)


def sample_intents(catalog: Catalog) -> list[ev.Intent]:
    """One of every intent the service sends, filled from the loaded instruments."""
    intents: list[ev.Intent] = [
        ev.Paused(), ev.Help(), ev.Help("repeated_invalid"), ev.Help(in_checkin=False),
        ev.OptOutConfirmed(), ev.OptInConfirmed(), ev.OptInConfirmed(already=True),
        ev.NothingOpen(), ev.Enrolled(), ev.Enrolled("clinician"), ev.Invitation(),
        ev.EnrollRefused(), ev.Stranger(), ev.AckConfirmed("ABC234"), ev.AckUnknown("ZZZ999"),
        ev.ClinicianHelp(),
        ev.AlertNotice("ABC235", "wording_missing", "routine", "P-1",
                       {"instrument": "gad7", "language": "es"}, 0, _AT),
    ]  # fmt: skip
    for instrument in catalog:
        intents += _instrument_intents(instrument)
    return intents


def _instrument_intents(instrument: Instrument) -> list[ev.Intent]:
    lowest = {i.key: min(i.values) for i in instrument.items if i.values}
    result = score(instrument, lowest)
    intents: list[ev.Intent] = [
        ev.Intro(instrument.key),
        ev.Completed((result,), show_scores=True),
        ev.Completed((result,), show_scores=False),
    ]
    for item in instrument.items:
        intents.append(ev.Ask(item.key, item.number, len(instrument.items)))
        intents.append(
            ev.Ask(item.key, 1, 2, problem=Invalid("out_of_range", "7", item.values[:2]))
        )
        if item.values:
            intents.append(ev.Answered(item.key, item.values[0]))
        if item.crisis:
            intents.append(ev.CrisisResources(item.crisis, item.key))
    detail = {"instrument": instrument.key, "total": result.total, "item_number": 1, "value": 1}
    intents.append(ev.AlertNotice("ABC234", "severe_score", "urgent", "P-1", detail, 1, _AT))
    return intents
