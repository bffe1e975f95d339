"""The Starlette application: health now; the provider webhooks are added by the channels.

Routes authenticate, record, hand over and return; they make no clinical decision.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.bootstrap import App


def create_app(app: App) -> Starlette:
    async def healthz(_: Request) -> JSONResponse:
        checks = {"database": await _database_ok(app), "scheduler": _tick_recent(app)}
        status = 200 if all(checks.values()) else 503
        return JSONResponse({"ok": status == 200, **checks}, status_code=status)

    return Starlette(routes=[Route("/healthz", healthz, methods=["GET"])])


async def _database_ok(app: App) -> bool:
    try:
        async with app.db.transaction() as session:
            await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    except Exception:
        return False
    return True


def _tick_recent(app: App) -> bool:
    if not app.last_tick_at:
        return False
    limit = timedelta(seconds=max(30.0, 3 * app.settings.scheduler.tick_s))
    return app.clock() - app.last_tick_at[0] <= limit
