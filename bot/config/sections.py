"""The sections of config.toml read into :class:`Settings`: which sections and keys there
are, and every value checked for its type and range. Each error names the file and the
key (``config.toml: clinic.show_scores: must be true or false``). Finding and reading the
file, and the environment, are :mod:`bot.config.loading`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.config.crisis_config import clinic_crisis
from bot.config.locales import bcp47
from bot.config.settings import (
    DEFAULT_DATABASE_URL,
    Clinic,
    Panel,
    Retention,
    Scheduler,
    Security,
    Server,
    Settings,
    Sms,
    Telegram,
    default_protocols,
)
from bot.config.whatsapp_config import whatsapp_settings
from bot.domain.alerts import rules_from_mapping
from bot.domain.errors import ConfigError
from bot.domain.schedule import Protocol, protocol_from_mapping

SECTIONS = {
    "instruments", "clinic", "database", "server", "scheduler", "telegram", "sms", "alerts",
    "protocols",
    "retention",
    "whatsapp",
    "security",
    "panel",
}  # fmt: skip

_SMS_FIELDS = (
    "account_sid",
    "auth_token",
    "from_number",
    "messaging_service_sid",
    "api_base_url",
    "default_region",
)


def settings_from_mapping(data: Mapping[str, Any], path: Path) -> Settings:
    source = str(path)
    for section in data:
        if section not in SECTIONS:
            known = ", ".join(sorted(SECTIONS))
            raise ConfigError(source, section, f"unknown section (known: {known})")
    instruments = _table(data, "instruments", source)
    dirs = instruments.get("dirs", [])
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise ConfigError(source, "instruments.dirs", "must be a list of paths")
    base = path.resolve().parent
    database = _table(data, "database", source)
    server = _table(data, "server", source)
    scheduler = _table(data, "scheduler", source)
    _known(database, "database", {"url"}, source)
    _known(server, "server", {"host", "port", "public_url"}, source)
    _known(scheduler, "scheduler", set(Scheduler.__dataclass_fields__), source)
    sms = _table(data, "sms", source)
    _known(sms, "sms", set(Sms.__dataclass_fields__), source)
    telegram = _table(data, "telegram", source)
    _known(telegram, "telegram", {f for f in Telegram.__dataclass_fields__}, source)
    url = _value(database, "database", "url", str, DEFAULT_DATABASE_URL, source)
    sms_settings = Sms(
        **{n: _value(sms, "sms", n, str, getattr(Sms, n), source) for n in _SMS_FIELDS},
        rate_per_s=_positive(sms, "sms", "rate_per_s", Sms.rate_per_s, source),
        spool_path=_spool_path(sms, base, source),
        spool_max=int(_positive(sms, "sms", "spool_max", Sms.spool_max, source)),
    )
    whatsapp = whatsapp_settings(_table(data, "whatsapp", source), source)
    security = _table(data, "security", source)
    _known(security, "security", {"key_file"}, source)
    key_file = _value(security, "security", "key_file", str, "", source)
    return Settings(
        retention=_retention(_table(data, "retention", source), source),
        alerts=rules_from_mapping(_table(data, "alerts", source), source),
        security=Security(key_file=base / key_file if key_file else None),
        source=source,
        instruments_dirs=tuple(base / d for d in dirs),
        clinic=_clinic(_table(data, "clinic", source), source),
        database_url=_relative_sqlite(url, base),
        server=Server(
            host=_value(server, "server", "host", str, Server.host, source),
            port=_value(server, "server", "port", int, Server.port, source),
            public_url=_value(server, "server", "public_url", str, "", source),
        ),
        telegram=Telegram(
            token=_value(telegram, "telegram", "token", str, "", source),
            mode=_value(telegram, "telegram", "mode", str, Telegram.mode, source),
            webhook_secret=_value(telegram, "telegram", "webhook_secret", str, "", source),
            api_base_url=_value(
                telegram, "telegram", "api_base_url", str, Telegram.api_base_url, source
            ),
            bot_username=_value(telegram, "telegram", "bot_username", str, "", source).lstrip("@"),
            enroll_ttl_min=_positive(
                telegram, "telegram", "enroll_ttl_min", Telegram.enroll_ttl_min, source
            ),
            rate_per_s=_positive(telegram, "telegram", "rate_per_s", Telegram.rate_per_s, source),
            per_chat_burst=_burst(telegram, source),
            per_chat_rate_per_s=_positive(
                telegram, "telegram", "per_chat_rate_per_s", Telegram.per_chat_rate_per_s, source
            ),
            timeout_s=_positive(telegram, "telegram", "timeout_s", Telegram.timeout_s, source),
        ),
        sms=sms_settings,
        whatsapp=whatsapp,
        scheduler=Scheduler(
            **{
                key: _positive(scheduler, "scheduler", key, getattr(Scheduler, key), source)
                for key in (
                    "tick_s",
                    "expire_after_h",
                    "plan_ahead_days",
                    "bundle_window_min",
                    "lease_s",
                    "send_lease_s",
                    "stop_grace_s",
                )
            },
            batch=int(_positive(scheduler, "scheduler", "batch", Scheduler.batch, source)),
        ),
        protocols=_protocols(data, source),
        panel=_panel(_table(data, "panel", source), source),
    )


def _panel(raw: Mapping[str, Any], source: str) -> Panel:
    _known(raw, "panel", set(Panel.__dataclass_fields__), source)
    zone = _value(raw, "panel", "timezone", str, Panel.timezone, source)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            source, "panel.timezone", "must be a time zone like Europe/Madrid"
        ) from exc
    return Panel(
        require_totp=_value(raw, "panel", "require_totp", bool, True, source),
        idle_timeout_min=_positive(
            raw, "panel", "idle_timeout_min", Panel.idle_timeout_min, source
        ),
        absolute_timeout_h=_positive(
            raw, "panel", "absolute_timeout_h", Panel.absolute_timeout_h, source
        ),
        timezone=zone,
        locale=_locale(raw, source),
    )


def _locale(raw: Mapping[str, Any], source: str) -> str:
    """``[panel] locale``: a name CLDR knows (``en-US``, ``en-GB``, ``es-ES``), written
    with a hyphen whichever separator was given."""
    name = _value(raw, "panel", "locale", str, Panel.locale, source)
    try:
        return bcp47(name)
    except ValueError as exc:
        raise ConfigError(
            source, "panel.locale", f"{name!r} is not a locale; give one like en-US, en-GB or es-ES"
        ) from exc


def _protocols(data: Mapping[str, Any], source: str) -> dict[str, Protocol]:
    if "protocols" not in data:
        return default_protocols()
    return {
        name: protocol_from_mapping(name, table, source)
        for name, table in _table(data, "protocols", source).items()
    }


def _retention(raw: Mapping[str, Any], source: str) -> Retention:
    _known(raw, "retention", set(Retention.__dataclass_fields__), source)
    days = _value(raw, "retention", "delete_after_days", int, Retention.delete_after_days, source)
    if days < 1:
        raise ConfigError(source, "retention.delete_after_days", "must be at least 1 (days)")
    keep = _value(raw, "retention", "keep_deidentified_scores", bool, False, source)
    return Retention(delete_after_days=days, keep_deidentified_scores=keep)


def _spool_path(sms: Mapping[str, Any], base: Path, source: str) -> Path | None:
    """[sms] spool_path, relative to the file; None when absent (see `spool.spool_path`)."""
    given = _value(sms, "sms", "spool_path", str, "", source)
    return base / given if given else None


def _relative_sqlite(url: str, base: Path) -> str:
    """A relative SQLite path in the file is relative to the file, not the working directory."""
    prefix = next((p for p in ("sqlite:///", "sqlite+aiosqlite:///") if url.startswith(p)), None)
    if prefix is None or url == prefix or url[len(prefix) :].startswith("/"):
        return url
    return prefix + str(base / url[len(prefix) :])


def _known(table: Mapping[str, Any], section: str, keys: set[str], source: str) -> None:
    for key in table:
        if key not in keys:
            known = ", ".join(sorted(keys))
            raise ConfigError(source, f"{section}.{key}", f"unknown key (known: {known})")


def _value(
    table: Mapping[str, Any], section: str, key: str, kind: type, default: Any, source: str
) -> Any:
    value = table.get(key, default)
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        names = {str: "text", int: "an integer", bool: "true or false"}
        raise ConfigError(source, f"{section}.{key}", f"must be {names.get(kind, kind.__name__)}")
    return value


def _positive(
    table: Mapping[str, Any], section: str, key: str, default: float, source: str
) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(source, f"{section}.{key}", "must be a positive number")
    return float(value)


def _burst(telegram: Mapping[str, Any], source: str) -> int:
    burst = _value(telegram, "telegram", "per_chat_burst", int, Telegram.per_chat_burst, source)
    if not 1 <= burst <= 20:
        raise ConfigError(
            source, "telegram.per_chat_burst", "must be a whole number of messages from 1 to 20"
        )
    return int(burst)


def _clinic(raw: Mapping[str, Any], source: str) -> Clinic:
    known = {
        "name", "contact", "urgent_line", "emergency_number", "show_scores", "crisis_lines",
        "country", "countries", "quiet_hours_start_local", "quiet_hours_end_local",
        "quiet_hours",
    }  # fmt: skip
    for key in raw:
        if key not in known:
            raise ConfigError(
                source, f"clinic.{key}", f"unknown key (known: {', '.join(sorted(known))})"
            )
    texts = {
        k: raw.get(k, getattr(Clinic, k))
        for k in ("name", "contact", "urgent_line", "emergency_number")
    }
    for key, value in texts.items():
        if not isinstance(value, str):
            raise ConfigError(source, f"clinic.{key}", "must be text")
    show = raw.get("show_scores", False)
    if not isinstance(show, bool):
        raise ConfigError(source, "clinic.show_scores", "must be true or false")
    start, end = _quiet_hours(raw, source)
    return Clinic(
        **texts,
        show_scores=show,
        **clinic_crisis(raw, source),
        quiet_hours_start_local=start,
        quiet_hours_end_local=end,
    )


def _quiet_hours(raw: Mapping[str, Any], source: str) -> tuple[time, time]:
    """The clinic's quiet hours; ``quiet_hours = "none"`` switches them off explicitly (and
    then no start or end may be given)."""
    keys = ("quiet_hours_start_local", "quiet_hours_end_local")
    if "quiet_hours" in raw:
        if raw["quiet_hours"] != "none":
            raise ConfigError(
                source, "clinic.quiet_hours", 'must be "none" (to switch quiet hours off)'
            )
        given = [k for k in keys if k in raw]
        if given:
            raise ConfigError(
                source, f"clinic.{given[0]}", 'cannot be set with quiet_hours = "none"'
            )
        return time(0), time(0)
    start, end = (_local_time(raw.get(k, getattr(Clinic, k)), f"clinic.{k}", source) for k in keys)
    return start, end


def _local_time(value: Any, key: str, source: str) -> time:
    if isinstance(value, time):
        return value.replace(tzinfo=None)
    if isinstance(value, str):
        try:
            return time.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(source, key, 'must be a local time like "08:00"')


def _table(data: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(source, name, "must be a table")
    return value
