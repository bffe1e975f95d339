"""``checkin keys``: the encryption key ring: see it, make a key, rotate, retire an old key."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from bot.app.operator import keys as key_ring
from bot.app.operator.keys import CurrentKey, KeyInUse, Keys, KeysFromEnvironment, NoKey, UnknownKey
from bot.commands.common import JsonFlag, emit_json, fail, state
from bot.config import Settings

keys_app = typer.Typer(
    help="The encryption key ring: status, generate, rotate, retire.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


@keys_app.command("generate")
def generate(as_json: JsonFlag = False) -> None:
    """Print a new key (<id>:<base64url>) for CHECKIN_ENCRYPTION_KEY; nothing is stored."""
    key = key_ring.generate()
    if as_json:
        emit_json({"key_id": key.key_id, "key": key.line})
        return
    typer.echo(key.line)


@keys_app.command("status")
def status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Where the keys come from, which is current, and how many stored values each encrypts."""
    settings = state(ctx).settings()
    keys = _installed(settings)
    usage = asyncio.run(key_ring.usage(settings, keys))
    data = _status(keys, usage)
    if as_json:
        emit_json(data)
        return
    typer.echo(f"keys from {keys.where}")
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
    keys = _installed(settings)
    usage = asyncio.run(key_ring.usage(settings, keys))
    if usage["other"]:
        fail(
            f"{usage['other']} stored values are under a key this ring lacks: add that key "
            f"back to {keys.where} first (see `checkin keys status`)"
        )
    older = sum(n for key_id, n in usage.items() if key_id not in ("other", keys.current))
    if older:
        _say(as_json, f"resuming: {older} values are still under older keys")
    else:
        keys = _add_key(settings, keys)
        _say(as_json, f"new key {keys.current} added to {keys.where}")

    def progress(table: str, done: int, total: int) -> None:
        _say(as_json, f"  {table}: {done}/{total}")

    report = asyncio.run(key_ring.rotate(settings, keys, batch, progress))
    if report.remaining:
        fail(f"{report.remaining} values are still under older keys: run this command again")
    old = keys.ids[:-1]
    if as_json:
        emit_json({"current": keys.current, "rotated": report.rotated, "retire": old})
        return
    typer.echo(f"every stored value is now under key {keys.current}")
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
    keys = _installed(settings)
    try:
        value = asyncio.run(key_ring.retire(settings, keys, key_id))
    except UnknownKey as exc:
        fail(f"{exc}; see `checkin keys status`")
    except CurrentKey as exc:
        fail(f"{exc}; rotate first (`checkin keys rotate`)")
    except KeyInUse as exc:
        fail(f"{exc}; run `checkin keys rotate`")
    if value is not None:
        typer.echo(f"set CHECKIN_ENCRYPTION_KEY to these keys (without {key_id}):\n{value}")
        return
    typer.echo(f"key {key_id} removed from {keys.where}; backups of it still open old backups")


def _installed(settings: Settings) -> Keys:
    try:
        return key_ring.installed(settings)
    except NoKey as exc:
        fail(str(exc))


def _add_key(settings: Settings, keys: Keys) -> Keys:
    try:
        return key_ring.add_key(settings, keys)
    except KeysFromEnvironment as exc:
        fail(
            f"{exc}: append a key from `checkin keys generate` to it (comma-separated; the "
            "last is current), restart the service with it, then run `checkin keys rotate` "
            "again"
        )


def _status(keys: Keys, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "source": keys.where,
        "current": keys.current,
        "keys": [
            {"key_id": key_id, "current": key_id == keys.current, "values": usage[key_id]}
            for key_id in keys.ids
        ],
        "unknown_values": usage["other"],
    }


def _say(as_json: bool, line: str) -> None:
    typer.echo(line, err=as_json)  # with --json, progress goes to stderr
