"""``checkin keys``: the encryption key ring: see it, make a key, rotate, retire an old key."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from bot.commands.common import JsonFlag, emit_json, fail, state
from bot.config import Settings
from bot.storage.crypto import KeyRing, NoKey, active_ring, new_key
from bot.storage.database import Database
from bot.storage.keys import KeySource, install_keys, write_key_file
from bot.storage.rotation import compact_sqlite, key_usage, rotate

keys_app = typer.Typer(
    help="The encryption key ring: status, generate, rotate, retire.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


@keys_app.command("generate")
def generate(as_json: JsonFlag = False) -> None:
    """Print a new key (<id>:<base64url>) for CHECKIN_ENCRYPTION_KEY; nothing is stored."""
    key = new_key()
    if as_json:
        emit_json({"key_id": key.key_id, "key": key.line})
        return
    typer.echo(key.line)


@keys_app.command("status")
def status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Where the keys come from, which is current, and how many stored values each encrypts."""
    settings = state(ctx).settings()
    source, ring = _ring(settings)
    usage = asyncio.run(_usage(settings, ring))
    data = _status(source, ring, usage)
    if as_json:
        emit_json(data)
        return
    typer.echo(f"keys from {source.where}")
    for key in data["keys"]:
        mark = "  (current)" if key["current"] else ""
        typer.echo(f"  {key['key_id']}  {key['values']:>8} values{mark}")
    if usage["other"]:
        typer.echo(f"  {usage['other']} values under no key of this ring")


@keys_app.command("rotate")
def rotate_command(
    ctx: typer.Context,
    batch: Annotated[int, typer.Option(min=1, help="Rows re-encrypted per transaction.")] = 500,
    as_json: JsonFlag = False,
) -> None:
    """Add a new key and re-encrypt every stored value under it, in batches; safe to stop and
    run again (it then finishes the rotation it started instead of adding another key)."""
    settings = state(ctx).settings()
    source, ring = _ring(settings)
    usage = asyncio.run(_usage(settings, ring))
    if usage["other"]:
        fail(
            f"{usage['other']} stored values are under a key this ring lacks: add that key "
            f"back to {source.where} first (see `checkin keys status`)"
        )
    older = sum(n for key_id, n in usage.items() if key_id not in ("other", ring.current.key_id))
    if older:
        _say(as_json, f"resuming: {older} values are still under older keys")
    else:
        ring = _add_key(settings, source, ring)
        _say(as_json, f"new key {ring.current.key_id} added to {source.where}")

    def progress(table: str, done: int, total: int) -> None:
        _say(as_json, f"  {table}: {done}/{total}")

    report = asyncio.run(_rotate(settings, ring, batch, progress))
    if report["remaining"]:
        fail(f"{report['remaining']} values are still under older keys: run this command again")
    old = [k.key_id for k in ring.keys[:-1]]
    if as_json:
        emit_json({"current": ring.current.key_id, "rotated": report["rotated"], "retire": old})
        return
    typer.echo(f"every stored value is now under key {ring.current.key_id}")
    if old:
        typer.echo(
            f"after every running service has the new key, retire the old: "
            f"{' '.join(f'`checkin keys retire {k}`' for k in old)}"
        )


@keys_app.command("retire")
def retire(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The old key's id (see `checkin keys status`).")],
) -> None:
    """Remove an old key from the key file once no stored value uses it."""
    settings = state(ctx).settings()
    source, ring = _ring(settings)
    if key_id not in {k.key_id for k in ring.keys}:
        fail(f"no key {key_id!r} in {source.where}; see `checkin keys status`")
    if key_id == ring.current.key_id:
        fail(f"key {key_id} is the current key; rotate first (`checkin keys rotate`)")
    in_use = asyncio.run(_usage(settings, ring))[key_id]
    if in_use:
        fail(f"{in_use} stored values are still under key {key_id}; run `checkin keys rotate`")
    remaining = tuple(k for k in ring.keys if k.key_id != key_id)
    if source.path is None:
        lines = ",".join(k.line for k in remaining)
        typer.echo(f"set CHECKIN_ENCRYPTION_KEY to these keys (without {key_id}):\n{lines}")
        return
    write_key_file(source.path, remaining)
    typer.echo(f"key {key_id} removed from {source.where}; backups of it still open old backups")


def _ring(settings: Settings) -> tuple[KeySource, KeyRing]:
    source = install_keys(settings)
    if source is None:
        fail(str(NoKey()))
    return source, active_ring()


def _add_key(settings: Settings, source: KeySource, ring: KeyRing) -> KeyRing:
    if source.path is None:
        fail(
            "the keys come from CHECKIN_ENCRYPTION_KEY: append a key from `checkin keys "
            "generate` to it (comma-separated; the last is current), restart the service with "
            "it, then run `checkin keys rotate` again"
        )
    write_key_file(source.path, (*ring.keys, new_key()))
    install_keys(settings)
    return active_ring()


async def _usage(settings: Settings, ring: KeyRing) -> dict[str, int]:
    async with Database(settings.database_url) as db:
        return await key_usage(db, [k.key_id for k in ring.keys])


async def _rotate(settings: Settings, ring: KeyRing, batch: int, progress: Any) -> dict[str, Any]:
    async with Database(settings.database_url) as db:
        report = await rotate(db, ring, batch, progress)
        await compact_sqlite(db)
    return {"rotated": report.rotated, "remaining": report.remaining}


def _status(source: KeySource, ring: KeyRing, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "source": source.where,
        "current": ring.current.key_id,
        "keys": [
            {"key_id": k.key_id, "current": k is ring.current, "values": usage[k.key_id]}
            for k in ring.keys
        ],
        "unknown_values": usage["other"],
    }


def _say(as_json: bool, line: str) -> None:
    typer.echo(line, err=as_json)  # with --json, progress goes to stderr
