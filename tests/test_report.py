"""The series report: loaded from a real database (SQLite and PostgreSQL), rendered through
the autoescaped template, and written by `checkin report` as an operator runs it."""

from __future__ import annotations

import asyncio
import base64
import re
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from bot.domain.errors import NotFound
from bot.outputs.report import load_report, render_html
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Alert, AuditEvent, Checkin, Score
from tests.test_chart import PNG_SIGNATURE, decoded, six_sessions
from tests.test_cli_service import checkin, ok_json
from tests.test_services import CATALOG, T0

NAME = "<script>x</script> P&6"


async def seed(db: Database) -> int:
    """Six sessions of PHQ-9 and GAD-7 (19 falling to 6), a side-effect score with a flag,
    a flag_raised audit event, an open and a resolved alert; a name full of HTML."""
    patient_id = await six_sessions(db)
    async with db.transaction() as session:
        repo = Repository(session)
        patient = await repo.get_patient(patient_id)
        assert patient is not None
        patient.display_name, patient.protocol = NAME, "ketamine_6"
        day = T0 + timedelta(days=9)
        side = Checkin(patient_id=patient_id, idempotency_key="side", due_at=day,
                       expires_at=day + timedelta(hours=1), status="completed")  # fmt: skip
        await repo.add(patient, side)
        assert side.id is not None
        await repo.add(
            Score(checkin_id=side.id, patient_id=patient_id, instrument="side_effects",
                  valid=True, flags=["side_effect_red_flag"], completed_at=day),
            Alert(patient_id=patient_id, rule="side_effect_red_flag", level="crisis",
                  code="RPT001", created_at=day),
            Alert(patient_id=patient_id, rule="worsening", level="routine", code="RPT002",
                  status="resolved", created_at=T0, resolved_at=T0 + timedelta(days=1)),
        )  # fmt: skip
        await repo.audit(day, "patient", "flag_raised", f"patient:{patient_id}",
                         flag="dissociation", item="side_effects.q2")  # fmt: skip
    return patient_id


async def test_the_report_summarises_the_series(db: Database) -> None:
    """Baseline 19 before session 1, response and reliable improvement at 6, the scores on
    either side of each session, both flags and both alerts (oldest first)."""
    patient_id = await seed(db)
    async with db.transaction() as session:
        report = await load_report(session, CATALOG, patient_id, T0 + timedelta(days=30))
    phq9 = next(o for o in report.outcomes if o.instrument == "phq9")
    assert (phq9.baseline, phq9.latest, phq9.change, phq9.count) == (19, 6, -13, 7)
    assert {"response", "reliable_improvement"} <= set(phq9.statuses)
    assert "remission" not in phq9.statuses
    assert [s.number for s in report.sessions] == [1, 2, 3, 4, 5, 6]
    first, last = report.sessions[0], report.sessions[-1]
    assert (first.before, first.after) == ({"phq9": 19, "gad7": 14}, {"phq9": 17, "gad7": 12})
    assert last.before["phq9"] == 8 and last.after == {"phq9": 6, "gad7": 1}
    assert [(f.source, f.flags) for f in report.flags] == [
        ("score:side_effects", ("side_effect_red_flag",)),
        ("check-in", ("dissociation",)),
    ]
    assert [(a.rule, a.status) for a in report.alerts] == [
        ("worsening", "resolved"),
        ("side_effect_red_flag", "open"),
    ]
    html = render_html(report)
    assert "&lt;script&gt;x&lt;/script&gt; P&amp;6" in html and "<script>" not in html
    assert "No PHQ-9 or GAD-7 scores to draw." in html  # no chart was drawn into this one


async def test_an_unknown_patient_is_not_found(db: Database) -> None:
    """Asking for a patient who does not exist raises NotFound, not an empty report."""
    async with db.transaction() as session:
        with pytest.raises(NotFound):
            await load_report(session, CATALOG, 404, T0)


@pytest.fixture
def clinic(tmp_path: Path) -> tuple[str, int]:
    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    assert checkin(url, "db", "upgrade").returncode == 0

    async def run() -> int:
        async with Database(url) as db:
            return await seed(db)

    return url, asyncio.run(run())


async def _audited(url: str) -> list[AuditEvent]:
    async with Database(url) as db, db.transaction() as session:
        statement = select(AuditEvent).where(AuditEvent.action == "report_written")
        return list((await session.exec(statement)).all())


def test_checkin_report_writes_a_private_self_contained_page(
    clinic: tuple[str, int], tmp_path: Path
) -> None:
    """The file is mode 0600, carries the chart as an inline PNG and fetches nothing; the
    writing is audited without the name or the path."""
    url, patient_id = clinic
    out = tmp_path / "report.html"
    out.write_text("old")
    out.chmod(0o644)
    done = ok_json(checkin(url, "report", str(patient_id), "--out", str(out), "--json"))
    assert done["chart"] is True and done["sessions"] == 6 and done["alerts"] == 2
    assert sorted(done["instruments"]) == ["gad7", "phq9"]  # side_effects has no total
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    html = out.read_text()
    found = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert found is not None
    png = base64.b64decode(found.group(1))
    assert png.startswith(PNG_SIGNATURE) and decoded(png).height > 400
    assert "http://" not in html and "https://" not in html
    assert "&lt;script&gt;" in html and "<script>" not in html
    events = asyncio.run(_audited(url))
    assert [(e.subject, e.detail) for e in events] == [
        (f"patient:{patient_id}", {"format": "html"})
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["99", "--out", "r.html"], "no patient with id 99; see `checkin patient list`"),
        (["1", "--out", "r.pdf", "--format", "pdf"], "--format 'pdf' is not supported"),
        (["1", "--out", "missing/r.html"], "--out missing/r.html: the directory missing does not exist"),
    ],
)  # fmt: skip
def test_report_mistakes_get_one_line(
    clinic: tuple[str, int], args: list[str], message: str
) -> None:
    """Each mistake exits 2 with one line naming it and how to fix it."""
    result = checkin(clinic[0], "report", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith(f"error: {message}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_outcome_labels_name_the_baseline_and_a_lost_response() -> None:
    """An assessment from a mild baseline says "baseline below threshold" (no response
    claimed); a responder who fell back reads "loss of response", not "non response"."""
    from bot.domain.outcomes import Observation, assess
    from bot.outputs.report import Outcome, Report

    rules = CATALOG.get("phq9").outcomes
    mild = assess([Observation(T0, 8), Observation(T0 + timedelta(days=7), 2)], rules)
    lost = assess(
        [Observation(T0 + timedelta(days=d), t, s)
         for d, (t, s) in enumerate([(20, 0), (10, 3), (8, 6), (17, 8)])],
        rules,
    )  # fmt: skip
    outcomes = tuple(
        Outcome("phq9", "PHQ-9", a.baseline, a.latest, a.best, a.change, a.improvement_pct,
                a.statuses, 2)
        for a in (mild, lost)
    )  # fmt: skip
    report = Report(1, "P-1", "active", None, T0, outcomes, (), (), ())
    html = render_html(report)
    assert "baseline below threshold" in html and ">response<" not in html
    assert "loss of response" in html and "non response" not in html


async def test_a_score_closed_as_the_session_starts_is_its_pre_session_score(
    db: Database,
) -> None:
    """A pre-session PHQ-9 closed at session 2's start (expired as dosing began) is that
    session's score before, never its score after."""
    patient_id = await six_sessions(db, gad7=False)
    start = T0 + timedelta(days=7)  # session 2
    async with db.transaction() as session:
        repo = Repository(session)
        closed = Checkin(patient_id=patient_id, idempotency_key="pre2", due_at=start,
                         expires_at=start, status="expired", partial=True)  # fmt: skip
        await repo.add(closed)
        assert closed.id is not None
        await repo.add(Score(checkin_id=closed.id, patient_id=patient_id, instrument="phq9",
                             total=11, valid=True, completed_at=start))  # fmt: skip
    async with db.transaction() as session:
        report = await load_report(session, CATALOG, patient_id, T0 + timedelta(days=30))
    second = report.sessions[1]
    assert (second.number, second.before["phq9"]) == (2, 11)
    assert second.after["phq9"] != 11
