"""``checkin clinician password | totp | sessions``: a clinician's sign-in to the web panel
(docs/PANEL.md). The password is read from standard input, never from an option (options
end up in shell history and process lists); the TOTP secret is printed once."""

from __future__ import annotations

import getpass
import io
import sys
from pathlib import Path
from typing import Annotated, Any

import segno
import typer

from bot.app.operator.refusals import Refused
from bot.app.panel import accounts
from bot.bootstrap import App
from bot.commands.common import JsonFlag, emit_json, fail, run_use_case, with_app
from bot.domain.errors import NotFound

ClinicianId = Annotated[int, typer.Argument(help="Clinician id.")]


def register(clinician_app: typer.Typer) -> None:
    clinician_app.command("password")(clinician_password)
    clinician_app.command("totp")(clinician_totp)
    clinician_app.command("sessions")(clinician_sessions)


def add_account(ctx: typer.Context, clinician_id: int, email: str, role: str) -> None:
    """Give a clinician just added a panel account (`clinician add --email`)."""

    async def work(app: App) -> None:
        await accounts.add_account(app.db, app.clock, clinician_id, email, role)

    run_use_case(ctx, work)


def check_new_account(ctx: typer.Context, email: str, role: str) -> None:
    """Before a clinician is added: the e-mail and role are usable and the e-mail is free."""
    try:
        accounts.normal_email(email)
        accounts.check_role(role)
    except Refused as exc:
        fail(f"--email/--role: {exc}")

    async def work(app: App) -> bool:
        return await accounts.email_taken(app.db, email)

    if with_app(ctx, work):
        fail(f"--email {email}: that e-mail already belongs to an account")


def clinician_password(ctx: typer.Context, clinician_id: ClinicianId) -> None:
    """Set the clinician's panel password, read from standard input (one line). At least
    12 characters, not a common password; their signed-in sessions end."""
    if sys.stdin.isatty():
        password = getpass.getpass("new password: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")

    async def work(app: App) -> None:
        await accounts.set_password(app.db, app.clock, clinician_id, password)

    run_use_case(ctx, work)
    typer.echo(f"clinician {clinician_id}: password set")


def clinician_totp(
    ctx: typer.Context,
    clinician_id: ClinicianId,
    qr: Annotated[
        Path | None,
        typer.Option(help="Also write the QR code to this file (.svg or .png)."),
    ] = None,
    terminal: Annotated[
        bool, typer.Option("--terminal", help="Also draw the QR code in the terminal.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Issue a new TOTP secret (the old one stops working; their sessions end) and print
    its otpauth:// URI once, for an authenticator app. The QR code is drawn locally."""
    if qr is not None and qr.suffix.lower() not in (".svg", ".png"):
        fail(f"--qr {qr}: the file name must end in .svg or .png")

    async def work(app: App) -> accounts.TotpIssue:
        issuer = app.settings.clinic.name
        return await accounts.issue_totp(app.db, app.clock, clinician_id, issuer)

    issued = run_use_case(ctx, work)
    code = segno.make(issued.uri, error="m")
    if qr is not None:
        code.save(str(qr), scale=6)
    data: dict[str, Any] = {"id": clinician_id, "otpauth_uri": issued.uri, "secret": issued.secret}
    if as_json:
        emit_json(data | {"qr_file": str(qr) if qr else None})
        return
    typer.echo(f"clinician {clinician_id}: new TOTP secret (shown once; the old one is void)")
    typer.echo(f"  {issued.uri}")
    if qr is not None:
        typer.echo(f"QR code written to {qr}")
    if terminal:
        out = io.StringIO()
        code.terminal(out=out, compact=True)
        typer.echo(out.getvalue())


def clinician_sessions(
    ctx: typer.Context,
    clinician_id: ClinicianId,
    revoke: Annotated[
        bool, typer.Option("--revoke", help="End every session: they must sign in again.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """List the clinician's panel sessions, or end them all with --revoke."""
    if revoke:

        async def end(app: App) -> int:
            return await accounts.revoke_sessions(app.db, app.clock, clinician_id)

        ended = _run(ctx, end)
        if as_json:
            emit_json({"id": clinician_id, "revoked": ended})
        else:
            typer.echo(f"clinician {clinician_id}: {ended} sessions ended")
        return

    async def work(app: App) -> list[accounts.SessionView]:
        return await accounts.sessions(app.db, clinician_id)

    rows = _run(ctx, work)
    listed = [_session_json(s) for s in rows]
    if as_json:
        emit_json(listed)
        return
    for s in listed:
        state = "revoked" if s["revoked_at"] else "signed in"
        typer.echo(
            f"{s['id']:>5}  since {s['created_at'][:16]}  last {s['last_seen_at'][:16]}  {state}"
        )
    if not listed:
        typer.echo(f"clinician {clinician_id} has no sessions")


def _run(ctx: typer.Context, work: Any) -> Any:
    try:
        return with_app(ctx, work)
    except (NotFound, Refused) as exc:
        fail(str(exc))


def _session_json(s: accounts.SessionView) -> dict[str, Any]:
    return {
        "id": s.id,
        "created_at": s.created_at.isoformat(),
        "last_seen_at": s.last_seen_at.isoformat(),
        "revoked_at": s.revoked_at.isoformat() if s.revoked_at else None,
    }
