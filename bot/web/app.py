"""The Starlette application: /healthz, /metrics, the provider webhooks of the channels,
and the clinicians' web panel (``bot.web.panel``).

Routes authenticate, record, hand over and return; they make no clinical decision.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot.app import metrics
from bot.app.health import database_ok, spool_health
from bot.bootstrap import App
from bot.channels.telegram import TelegramChannel, first_update_id
from bot.web.panel.routes import Panel
from bot.web.telegram import Unusable, handle_update, skip

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 -- a header name


def create_app(app: App) -> Starlette:
    async def healthz(_: Request) -> JSONResponse:
        checks = {"database": await database_ok(app.db), "scheduler": _tick_recent(app)}
        extra: dict[str, object] = {}
        problems: list[str] = []
        if app.services.intake is not None:
            spool = await spool_health(app.services.intake, app.clock())
            checks["spool"] = spool.ok
            extra = {"spool_depth": spool.depth, "spool_oldest_age_s": spool.oldest_age_s}
            problems = [spool.problem] if spool.problem else []
        checks |= _poller_check(app)
        status = 200 if all(checks.values()) else 503
        body: dict[str, object] = {"ok": status == 200, **checks, **extra}
        if status != 200:
            body["reason"] = "; ".join(_problems(app, checks) + problems + _poller_problems(app))
        return JSONResponse(body, status_code=status)

    async def metrics_route(_: Request) -> Response:
        last = app.last_tick_at[0] if app.last_tick_at else None
        try:
            collected = await metrics.collect(app.db, app.clock(), last)
            collected += app.telegram_intake.metrics(app.clock())
            collected += metrics.turn_metrics(app.services.context.underway.took)
        except Exception as exc:  # the database is away: say so, as /healthz does
            log.warning("metrics: database unavailable (%s)", type(exc).__name__)
            return PlainTextResponse("database unavailable\n", status_code=503)
        if app.services.intake is not None:
            try:
                spool = await app.services.intake.status()
                collected += metrics.spool_metrics(spool, app.clock())
            except Exception as exc:  # /healthz says so; the other numbers still count
                log.error("metrics: the sms spool cannot be read (%s)", type(exc).__name__)
        return Response(metrics.render(collected), media_type=metrics.CONTENT_TYPE)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
    ]
    telegram = app.channels.get("telegram")
    if isinstance(telegram, TelegramChannel) and app.settings.telegram.mode == "webhook":
        routes.append(Route("/telegram", _telegram_webhook(app, telegram), methods=["POST"]))
    if "sms" in app.channels:
        from bot.web.sms import inbound_handler, status_handler  # twilio: SMS only

        routes.append(Route("/sms", inbound_handler(app), methods=["POST"]))
        routes.append(Route("/sms/status", status_handler(app), methods=["POST"]))
    if "whatsapp" in app.channels:
        from bot.web import whatsapp  # twilio: WhatsApp only

        routes.append(Route("/whatsapp", whatsapp.inbound_handler(app), methods=["POST"]))
        routes.append(Route("/whatsapp/status", whatsapp.status_handler(app), methods=["POST"]))
    routes += Panel(app).routes()  # the clinicians' web panel (docs/PANEL.md)
    return Starlette(routes=routes)


def _telegram_webhook(
    app: App, channel: TelegramChannel
) -> Callable[[Request], Awaitable[Response]]:
    secret = app.settings.telegram.webhook_secret.encode()

    async def webhook(request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, secret):
            return PlainTextResponse("forbidden", status_code=403)
        try:
            data = await request.json()
        except (ValueError, RecursionError):  # from Telegram (the secret matched): never usable
            update_id = first_update_id(await request.body())
            return _skipped(app, {"update_id": update_id}, "unreadable")
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return _skipped(app, data, "unparseable")
        try:
            await handle_update(app, channel, data)
        except Unusable as exc:
            return _skipped(app, data, exc.reason)
        except Exception as exc:  # the type only: a message could quote what the patient sent
            log.error(
                "telegram update not recorded (%s); asking Telegram to retry", type(exc).__name__
            )
            return PlainTextResponse("try again", status_code=503)
        return Response(status_code=200)

    return webhook


def _skipped(app: App, data: object, reason: str) -> Response:
    """Acknowledge an update that can never be used: a 5xx would have Telegram resend it
    for a day, holding back the updates behind it."""
    skip(app, data, reason)
    return Response(status_code=200)


def _poller_check(app: App) -> dict[str, bool]:
    """The Telegram poller's check, when this process polls."""
    if not app.telegram_intake.polling:
        return {}
    return {"telegram_poller": app.telegram_intake.problem(app.clock()) is None}


def _poller_problems(app: App) -> list[str]:
    problem = app.telegram_intake.problem(app.clock())
    return [problem] if problem else []


def _tick_limit(app: App) -> timedelta:
    return timedelta(seconds=max(30.0, 3 * app.settings.scheduler.tick_s))


def _tick_recent(app: App) -> bool:
    if not app.last_tick_at:
        return False
    return app.clock() - app.last_tick_at[0] <= _tick_limit(app)


def _problems(app: App, checks: dict[str, bool]) -> list[str]:
    problems = [] if checks["database"] else ["database unreachable"]
    if not checks["scheduler"]:
        limit = _tick_limit(app).total_seconds()
        if app.last_tick_at:
            age = (app.clock() - app.last_tick_at[0]).total_seconds()
            problems.append(f"scheduler tick stale ({age:.0f}s ago, limit {limit:.0f}s)")
        else:
            problems.append("scheduler has not ticked yet")
    return problems
