"""`checkin inbound`: messages that could not be processed, and trying them again.

A message whose processing fails is tried again by every recovery pass; after
``INBOUND_ATTEMPTS`` it is set aside, so that it blocks neither its sender's later
messages nor the recovery pass. Nothing a patient wrote is shown here: the id, channel,
time, attempts, the exception's name and the patient it came from.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bot.app.conversations.inbox import INBOUND_ATTEMPTS
from bot.app.operator import inbox as inbox_admin
from bot.bootstrap import App
from bot.commands.common import JsonFlag, emit_json, run_use_case

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
        found = await inbox_admin.list_messages(app.db, app.clock, waiting=waiting, limit=limit)
        return [
            {
                "id": m.id,
                "channel": m.channel,
                "received_at": m.received_at.isoformat(),
                "attempts": m.attempts,
                "problem": m.problem,
                "patient_id": m.patient_id,
            }
            for m in found
        ]

    rows = run_use_case(ctx, work)
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
        return await inbox_admin.retry(app.db, app.clock, inbound_ids)

    retried = run_use_case(ctx, work)
    if as_json:
        emit_json({"retried": retried})
    else:
        typer.echo(
            f"{len(retried)} message{'s' * (len(retried) != 1)} put back; the next recovery "
            f"pass processes {'them' if len(retried) != 1 else 'it'} "
            f"(up to {INBOUND_ATTEMPTS} more attempts)"
        )
