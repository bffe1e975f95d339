"""How long the panel's patient page takes: ``GET /patients/{id}`` through the ASGI app.

The app is the one ``checkin run`` serves (bootstrap's build, the real panel routes, a
signed-in clinician's session), called in-process over ``httpx.ASGITransport``: what is
timed is our code and the database, not a network. The patient has a full series: 12
treatment sessions (one cancelled), 50 scores (PHQ-9 by check-in, clinician MADRS,
blood pressure), 40 check-ins of which 12 side-effect checks with their answers, and 6
alerts. Each request reads everything, draws the charts, renders the page and writes
its audit event.

    .venv/bin/python -m bench.panel_page [--requests 50] [--database sqlite postgresql]
        [--no-doc]

Writes docs/perf/panel_page.md (stitched into docs/PERFORMANCE.md by bench.run_all).
The target (issue 20): under 100 ms at the median.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bench.crisis_latency import percentile
from bench.keys import ensure_key
from bench.sms_burst import database_url
from bot.config import Panel
from bot.storage.answer_tables import Answer, Score
from bot.storage.database import Database
from bot.storage.repository import Repository
from bot.storage.tables import Checkin, TreatmentSession
from tests.panel_rig import Rig, panel_rig
from tests.test_services import T0

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "perf" / "panel_page.md"
DAY = timedelta(days=1)
SESSIONS, SCORES, CHECKINS, SIDE_EFFECT_CHECKS, ALERTS = 12, 50, 40, 12, 6


@dataclass(frozen=True)
class Result:
    database: str
    requests: int
    median_ms: float
    p95_ms: float
    max_ms: float
    cpu_ms: float  # this process's CPU time per request, at the median (less load-bound)


async def seed(rig: Rig, patient_id: int, clinician_id: int) -> None:
    """The series described in the module docstring, written straight to the tables."""
    rows: list[object] = []
    for n in range(SESSIONS):
        cancelled = T0 if n == 5 else None
        rows.append(TreatmentSession(patient_id=patient_id, number=n + 1, kind="ketamine-iv",
                                     at=T0 + (3 * n + 1) * DAY, route="ketamine-iv", dose=0.5,
                                     dose_unit="mg/kg", cancelled_at=cancelled))  # fmt: skip
    for n in range(SCORES):
        at = T0 + n * 0.75 * DAY
        number = min(SESSIONS, int((n * 0.75 + 2) // 3))
        if n % 10 == 9:
            reading = {"systolic": 135, "diastolic": 85}
            rows.append(Score(patient_id=patient_id, instrument="blood_pressure", valid=True,
                              completed_at=at, session_number=number, rated_by=clinician_id,
                              time_point="pre", components=reading))  # fmt: skip
        else:
            instrument, total = ("madrs", 34 - n // 2) if n % 5 == 4 else ("phq9", 22 - n // 4)
            rater = clinician_id if instrument == "madrs" else None
            hours = 24.0 if number else None
            rows.append(Score(patient_id=patient_id, instrument=instrument, total=total,
                              band="moderate", valid=True, completed_at=at, session_number=number,
                              hours_since_session=hours, rated_by=rater))  # fmt: skip
    checkins = [
        Checkin(patient_id=patient_id, idempotency_key=f"bench-{patient_id}-{n}",
                instruments=["side_effects"] if n < SIDE_EFFECT_CHECKS else ["phq9"],
                status="completed", due_at=T0 + n * DAY, expires_at=T0 + (n + 1) * DAY)
        for n in range(CHECKINS)
    ]  # fmt: skip
    async with rig.db.transaction() as session:
        repo = Repository(session)
        await repo.add(*rows, *checkins)  # type: ignore[arg-type]
        answers = [
            Answer(checkin_id=c.id or 0, item_key=key, instrument="side_effects", value_int=0,
                   raw_text="no", answered_at=c.due_at)
            for c in checkins[:SIDE_EFFECT_CHECKS]
            for key in ("side_effects.red_flags", "side_effects.nausea", "side_effects.dizziness")
        ]  # fmt: skip
        await repo.add(*answers)
    for n in range(ALERTS):
        await rig.alert(patient_id, level="routine", rule="worsening", code=f"B{patient_id}-{n}")


async def measure(database: str, url: str, requests: int) -> Result:
    db = Database(url)
    try:
        async with panel_rig(db, Panel(timezone="Europe/Paris")) as rig:
            ana = await rig.add("ana")
            patient_id = await rig.patient("Bench Patient", ana.clinician_id)
            await seed(rig, patient_id, ana.clinician_id)
            async with rig.browser() as web:
                await rig.signed_in(web, ana)
                for _ in range(3):  # warm up: templates compiled, connections pooled
                    assert (await web.get(f"/patients/{patient_id}")).status_code == 200
                times, cpu = [], []
                for _ in range(requests):
                    started, used = time.perf_counter(), time.process_time()
                    response = await web.get(f"/patients/{patient_id}")
                    times.append((time.perf_counter() - started) * 1000)
                    cpu.append((time.process_time() - used) * 1000)
                    assert response.status_code == 200 and "<svg" in response.text
    finally:
        await db.dispose()
    return Result(database, requests, percentile(times, 50), percentile(times, 95), max(times),
                  percentile(cpu, 50))  # fmt: skip


def write_doc(results: list[Result], command: str) -> None:
    rows = "\n".join(
        f"| {r.database} | {r.requests} | {r.median_ms:.1f} | {r.p95_ms:.1f} | {r.max_ms:.1f} "
        f"| {r.cpu_ms:.1f} |"
        for r in results
    )
    DOC.write_text(
        "## Panel: one patient's page (bench/panel_page.py)\n\n"
        f"`{command}`: `GET /patients/{{id}}` through the ASGI app, signed in, for a patient "
        f"with {SESSIONS} treatment sessions, {SCORES} scores, {CHECKINS} check-ins "
        f"({SIDE_EFFECT_CHECKS} side-effect checks with their answers) and {ALERTS} alerts; "
        "each request reads the record in a fixed number of queries, draws the SVG charts, "
        "renders the page and writes its audit event. Target: under 100 ms.\n\n"
        "| database | requests | median ms | p95 ms | max ms | CPU ms (median) |\n"
        "| --- | --- | --- | --- | --- | --- |\n"
        f"{rows}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--database", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    ensure_key()
    results = []
    for database in args.database:
        with (
            tempfile.TemporaryDirectory() as folder,
            database_url(database, Path(folder), "bench_panel") as url,
        ):
            result = asyncio.run(measure(database, url, args.requests))
        print(f"{database}: median {result.median_ms:.1f} ms, p95 {result.p95_ms:.1f} ms, "
              f"max {result.max_ms:.1f} ms, CPU {result.cpu_ms:.1f} ms over {result.requests} "
              "requests")  # fmt: skip
        results.append(result)
    if not args.no_doc:
        write_doc(results, "python -m bench.panel_page")


if __name__ == "__main__":
    main()
