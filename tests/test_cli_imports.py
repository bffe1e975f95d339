"""What a service process imports: the worker and the web server stay small by not loading
modules they never use (matplotlib alone is about 40 MB of resident memory per process).
Each probe runs in a fresh interpreter, so nothing a test imported here counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHARTS = (
    "matplotlib",
    "bot.rendering.chart",
    "bot.outputs.report",
)  # `checkin report` and clinician charts
SMS = ("twilio", "bot.channels.sms", "bot.web.sms")  # only when [sms] is configured
WEB = ("uvicorn", "starlette", "bot.web.app", "bot.commands.web_server")  # `checkin run` only

# As `checkin worker` starts: every command registered, the app built, one tick, the
# scheduler started; then the names of every module loaded, as JSON.
WORKER = """
import asyncio, json, sys
from pathlib import Path

import bot.cli
from bot.bootstrap import build
from bot.config import load_settings
from scheduler.loop import start_scheduler, tick

async def main() -> None:
    app = build(load_settings(Path(sys.argv[1])))
    await tick(app)
    start_scheduler(app).shutdown(wait=False)
    await app.close()

asyncio.run(main())
print(json.dumps(sorted(sys.modules)))
"""

# As `checkin run` starts: the same, and the web server with its Starlette app.
WEB_SERVER = WORKER.replace(
    "    await tick(app)\n",
    "    await tick(app)\n"
    "    from bot.commands import web_server\n"
    "    from bot.web.app import create_app\n"
    "    create_app(app)\n",
)


def loaded(probe: str, url: str, tmp_path: Path) -> set[str]:
    config = tmp_path / "clinic.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    result = subprocess.run(
        [sys.executable, "-c", probe, str(config)],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_the_worker_loads_no_charts_sms_or_web_server(
    migrated_sqlite_url: str, tmp_path: Path
) -> None:
    """`checkin worker` without SMS imports neither matplotlib, twilio nor uvicorn/Starlette."""
    modules = loaded(WORKER, migrated_sqlite_url, tmp_path)
    assert "scheduler.loop" in modules and "bot.commands.report" in modules  # the probe ran
    assert [m for m in CHARTS + SMS + WEB if m in modules] == []


def test_the_web_server_loads_no_charts_or_sms(migrated_sqlite_url: str, tmp_path: Path) -> None:
    """`checkin run` without SMS serves with Starlette but imports neither matplotlib nor twilio."""
    modules = loaded(WEB_SERVER, migrated_sqlite_url, tmp_path)
    assert "uvicorn" in modules and "bot.web.app" in modules  # the probe reached the web server
    assert [m for m in CHARTS + SMS if m in modules] == []
