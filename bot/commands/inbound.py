"""`checkin inbound`: messages that could not be processed, and trying them again.

A message whose processing fails is tried again by every recovery pass; after
``INBOUND_ATTEMPTS`` it is set aside, so that it blocks neither its sender's later
messages nor the recovery pass. Nothing a patient wrote is shown here: the id, channel,
time, attempts, the exception's name and the patient it came from.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from sqlmodel import col, select

from bot.app.inbox import INBOUND_ATTEMPTS
from bot.bootstrap import App
from bot.commands.common import JsonFlag, emit_json, fail, with_app
from bot.storage import checkins as q
from bot.storage.repository import SET_ASIDE, Repository
from bot.storage.tables import InboundMessage

inbound_app = typer.Typer(
    help="Messages set aside after failing to process, and trying them again.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(inbound_app, name="inbound")


@inbound_app.command(
    "list",
    help=f"List messages set aside after failing {INBOUND_ATTEMPTS} recovery passes (or, with "
    "--waiting, those not processed yet): id, channel, received, attempts, the problem and "
    "the patient. Never what the message said.",
)
def inbound_list(
    ctx: typer.Context,
    waiting: Annotated[
        bool,
        typer.Option(
            "--waiting", help="Messages still waiting to be processed, instead of set-aside ones."
        ),
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, oldest first.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    async def work(app: App) -> list[dict[str, Any]]:
        statement = select(InboundMessage).order_by(col(InboundMessage.id)).limit(limit)
        if waiting:
            statement = statement.where(col(InboundMessage.processed_at).is_(None))
        else:
            statement = statement.where(col(InboundMessage.error).startswith(SET_ASIDE))
        found = []
        async with app.db.transaction() as session:
            for message in (await session.exec(statement)).all():
                patient = await q.patient_by_address(session, message.channel, message.sender)
                found.append({
                    "id": message.id,
                    "channel": message.channel,
                    "received_at": message.received_at.isoformat(),
                    "attempts": message.attempts,
                    "problem": (message.error or "").removeprefix(SET_ASIDE) or None,
                    "patient_id": patient.id if patient is not None else None,
                })  # fmt: skip
            await Repository(session).audit(
                app.clock(), "operator", "inbound_listed", "inbound",
                waiting=waiting, count=len(found),
            )  # fmt: skip
        return found

    rows = with_app(ctx, work)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no messages waiting" if waiting else "no messages set aside")
        return
    for r in rows:
        who = f"patient {r['patient_id']}" if r["patient_id"] is not None else "not a patient"
        typer.echo(
            f"{r['id']:>7}  {r['channel']:<9} {r['received_at'][:19]}  {who:<14} "
            f"{r['attempts']} attempt{'s' * (r['attempts'] != 1)}  {r['problem'] or ''}".rstrip()
        )


@inbound_app.command(
    "retry",
    help="Put set-aside messages back: the next recovery pass (within a tick of a running "
    f"`checkin run` or `checkin worker`) processes them again, with {INBOUND_ATTEMPTS} more "
    "tries. Fix what made them fail first (the log names the exception).",
)
def inbound_retry(
    ctx: typer.Context,
    inbound_ids: Annotated[
        list[int], typer.Argument(help="Message ids (see `checkin inbound list`).")
    ],
    as_json: JsonFlag = False,
) -> None:
    async def work(app: App) -> list[int]:
        async with app.db.transaction() as session:
            repo = Repository(session)
            for inbound_id in inbound_ids:
                message = await session.get(InboundMessage, inbound_id)
                if message is None:
                    fail(f"no inbound message with id {inbound_id}; see `checkin inbound list`")
                if not (message.error or "").startswith(SET_ASIDE):
                    fail(f"inbound message {inbound_id} is not set aside; only those are retried")
                message.processed_at, message.error, message.attempts = None, None, 0
                await repo.add(message)
                await repo.audit(
                    app.clock(), "operator", "inbound_retried", f"inbound:{inbound_id}"
                )
        return inbound_ids

    retried = with_app(ctx, work)
    if as_json:
        emit_json({"retried": retried})
    else:
        typer.echo(
            f"{len(retried)} message{'s' * (len(retried) != 1)} put back; the next recovery "
            f"pass processes {'them' if len(retried) != 1 else 'it'} "
            f"(up to {INBOUND_ATTEMPTS} more attempts)"
        )
