"""Enrolling many patients from one CSV file (``checkin patient import``; the panel later).

The file has a header row naming its columns: ``name`` and ``channel`` are required;
``timezone``, ``language``, ``clinician`` (an id), ``protocol``, ``phone`` (SMS, WhatsApp),
``address`` (console) and ``external_id`` may be given. Every row is checked before any
is written: if one fails, :class:`ImportRefused` lists every problem by the file's line
number and nothing is enrolled. Then each row is enrolled as ``patient add`` enrols one
(:func:`bot.app.operator.patients.enrol`: a Telegram link, an SMS invitation), one
transaction a row.

Idempotent by ``external_id`` (the clinic's own id for the patient): a row whose id was
imported before is reported as existing and left alone, so a file imported twice, or
again after an interruption, enrols each patient once. The id is stored as a keyed hash
only (:mod:`bot.storage.import_tables`). A row without one is enrolled every time.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlmodel import col, select

from bot.app.operator.enrolment_form import EnrolRefused, EnrolRules, contact, zone_ok
from bot.app.operator.invitations import Invitation, Invitations
from bot.app.operator.patients import NewPatient, enrol
from bot.app.operator.refusals import Refused
from bot.app.planning.planner import Planner
from bot.app.ports import Clock
from bot.app.services import Services
from bot.domain.languages import LANGUAGES
from bot.storage.crypto import lookup_hashes
from bot.storage.database import Database
from bot.storage.import_tables import PatientExternalId, external_text
from bot.storage.tables import CHANNELS, Clinician

REQUIRED = ("name", "channel")
OPTIONAL = ("timezone", "language", "clinician", "protocol", "phone", "address", "external_id")
Progress = Callable[[int, int], None]  # (rows done, rows in the file)


@dataclass(frozen=True)
class RowProblem:
    line: int  # the file's line number (the header is line 1)
    problem: str


class ImportRefused(Refused):
    def __init__(self, problems: Sequence[RowProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__(f"{len(self.problems)} problem(s) in the file; nothing was imported")


@dataclass(frozen=True)
class ImportRules:
    """What the entry point knows of the clinic's configuration."""

    protocols: frozenset[str]
    channels: frozenset[str]  # the channels a patient may be enrolled on now
    phone: Callable[[str], str]  # a number in E.164, or ValueError

    def enrolment(self) -> EnrolRules:
        return EnrolRules(self.channels, self.protocols, self.phone)


# how a row's contact problem reads (enrolment_form's codes): the file's words
_SETUP = {"sms": "SMS is not configured ([sms])",
          "telegram": "Telegram is not configured ([telegram] token)",
          "whatsapp": "WhatsApp is not configured ([whatsapp] from_number)"}  # fmt: skip


@dataclass(frozen=True)
class ImportedRow:
    line: int
    external_id: str | None
    patient_id: int | None  # None: a dry run's new patient
    existing: bool  # imported before (by external_id): left alone
    invitation: Invitation | None = None
    invited: bool = False


@dataclass(frozen=True)
class ImportResult:
    rows: tuple[ImportedRow, ...]
    dry_run: bool

    @property
    def created(self) -> int:
        return sum(not r.existing for r in self.rows)

    @property
    def existing(self) -> int:
        return sum(r.existing for r in self.rows)


@dataclass(frozen=True)
class _Checked:
    line: int
    new: NewPatient
    external_id: str | None


def read_rows(lines: Iterable[str]) -> list[tuple[int, dict[str, str]]]:
    """The rows of a CSV file with their line numbers; ImportRefused for a bad header."""
    reader = csv.DictReader(lines)
    header = [h.strip() for h in reader.fieldnames or ()]
    problems = [RowProblem(1, f"column {c!r} is missing") for c in REQUIRED if c not in header]
    unknown = [h for h in header if h not in REQUIRED + OPTIONAL]
    problems += [
        RowProblem(1, f"column {h!r} is not one of {', '.join(REQUIRED + OPTIONAL)}")
        for h in unknown
    ]
    if problems:
        raise ImportRefused(problems)
    reader.fieldnames = header
    rows = []
    for raw in reader:
        if None in raw:
            raise ImportRefused([RowProblem(reader.line_num, "more fields than columns")])
        rows.append((reader.line_num, {k: (v or "").strip() for k, v in raw.items()}))
    return rows


async def import_patients(
    db: Database, clock: Clock, rows: Sequence[tuple[int, dict[str, str]]], rules: ImportRules,
    invitations: Invitations, services: Services, planner: Planner | None = None,
    *, dry_run: bool = False, progress: Progress | None = None,
) -> ImportResult:  # fmt: skip
    """Check every row, then (unless `dry_run`) enrol the rows not imported before."""
    checked = _check(rows, rules, await _clinician_ids(db))
    known = await _imported(db, [c.external_id for c in checked if c.external_id])
    done: list[ImportedRow] = []
    for n, row in enumerate(checked, start=1):
        existing = known.get(row.external_id) if row.external_id else None
        if existing is not None or dry_run:
            done.append(ImportedRow(row.line, row.external_id, existing, existing is not None))
        else:
            enrolled = await enrol(db, clock, row.new, invitations, services, planner)
            done.append(ImportedRow(row.line, row.external_id, enrolled.patient.id, False,
                                    enrolled.invitation, enrolled.invited))  # fmt: skip
        if progress is not None:
            progress(n, len(checked))
    return ImportResult(tuple(done), dry_run)


def _check(
    rows: Sequence[tuple[int, dict[str, str]]], rules: ImportRules, clinicians: set[int]
) -> list[_Checked]:
    checked: list[_Checked] = []
    problems: list[RowProblem] = []
    seen: dict[str, int] = {}
    for line, fields in rows:
        found = _row_problems(fields, rules, clinicians)
        external = fields.get("external_id") or None
        if external is not None and external in seen:
            found.append(f"external_id repeats line {seen[external]}")
        if external is not None:
            seen.setdefault(external, line)
        problems += [RowProblem(line, p) for p in found]
        if not found:
            checked.append(_Checked(line, _new_patient(fields, rules), external))
    if not rows:
        problems.append(RowProblem(1, "the file has no rows below its header"))
    if problems:
        raise ImportRefused(problems)
    return checked


def _row_problems(fields: dict[str, str], rules: ImportRules, clinicians: set[int]) -> list[str]:
    get = fields.get
    found = []
    if not get("name"):
        found.append("name is empty")
    channel = get("channel", "")
    if channel not in CHANNELS:
        found.append(f"channel {channel!r} is not one of {', '.join(CHANNELS)}")
    if get("timezone") and not zone_ok(get("timezone", "")):
        found.append(f"timezone {get('timezone')!r} is not an IANA time zone")
    if get("language") and get("language") not in LANGUAGES:
        found.append(f"language {get('language')!r} is not one of {', '.join(LANGUAGES)}")
    clinician = get("clinician", "")
    if clinician and (not clinician.isdigit() or int(clinician) not in clinicians):
        found.append(f"clinician {clinician!r} is not a clinician's id")
    if get("protocol") and get("protocol") not in rules.protocols:
        found.append(f"protocol {get('protocol')!r} is not configured")
    if channel in CHANNELS:
        found += _contact_problems(channel, get("phone", ""), get("address", ""), rules)
    return found


def _contact_problems(channel: str, phone: str, address: str, rules: ImportRules) -> list[str]:
    """The channel's set-up and the row's number, checked as `patient add` checks them."""
    if address and channel != "console":
        return ["address is for channel console"]
    try:
        contact(channel, phone, rules.enrolment())
    except EnrolRefused as refused:
        return [_contact_words(channel, p.code) for p in refused.problems]
    return []


def _contact_words(channel: str, code: str) -> str:
    if code == "not_configured":
        return f"channel {channel}: {_SETUP.get(channel, 'not configured')}"
    if code == "missing":
        return f"phone is empty (channel {channel} needs one)"
    if code == "not_for_channel":
        return "phone is for channel sms or whatsapp"
    return "phone is not a valid phone number"  # (the number itself stays out)


def _new_patient(fields: dict[str, str], rules: ImportRules) -> NewPatient:
    get = fields.get
    return NewPatient(
        name=get("name", ""), channel=get("channel", ""), timezone=get("timezone") or "UTC",
        language=get("language") or "en",
        clinician_id=int(get("clinician", "")) if get("clinician") else None,
        protocol=get("protocol") or None, address=get("address") or None,
        phone=contact(get("channel", ""), get("phone", ""), rules.enrolment()),
        external_id=get("external_id") or None,
    )  # fmt: skip


async def _clinician_ids(db: Database) -> set[int]:
    async with db.transaction() as session:
        return {i for i in (await session.exec(select(Clinician.id))).all() if i is not None}


async def _imported(db: Database, external_ids: Sequence[str]) -> dict[str, int]:
    """The patients already imported under these external ids (under any key's hash)."""
    by_hash = {h: e for e in external_ids for h in lookup_hashes(external_text(e))}
    found: dict[str, int] = {}
    hashes = list(by_hash)
    async with db.transaction() as session:
        for start in range(0, len(hashes), 500):
            chunk = hashes[start : start + 500]
            statement = select(PatientExternalId).where(
                col(PatientExternalId.external_id_hash).in_(chunk)
            )
            for row in (await session.exec(statement)).all():
                found[by_hash[row.external_id_hash]] = row.patient_id
    return found
