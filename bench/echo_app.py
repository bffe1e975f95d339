"""The anchor: python-telegram-bot's bare echo behind a Starlette route, as in its custom
webhook example (an Application without an updater; the route puts each update on the
application's queue; the handler replies with send_message).

    python -m bench.echo_app PORT API_BASE_URL TOKEN
"""

from __future__ import annotations

import asyncio
import os
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_chat is not None and update.message is not None
    await context.bot.send_message(update.effective_chat.id, update.message.text or "")


async def main(port: int, api_base_url: str, token: str) -> None:
    application = Application.builder().token(token).base_url(api_base_url).updater(None).build()
    application.add_handler(MessageHandler(filters.TEXT, echo))

    async def telegram(request: Request) -> Response:
        await application.update_queue.put(Update.de_json(await request.json(), application.bot))
        return Response()

    web = Starlette(routes=[Route("/telegram", telegram, methods=["POST"])])
    config = uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    async with application:
        await application.start()
        await server.serve()
        await application.stop()


if __name__ == "__main__":
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
