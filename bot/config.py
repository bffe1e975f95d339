"""Configuration: one TOML file read into one frozen settings object.

Where the file comes from: the global ``--config PATH`` option, else ``CHECKIN_CONFIG``,
else ``config.toml`` in the working directory. The default path may be absent (every
setting has a working default); a path someone asked for by name must exist. Every error
names the file and the key: ``config.toml: instruments.dirs: must be a list of paths``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import time
from pathlib import Path
from typing import Any

from bot.domain.alerts import DEFAULT_RULES, AlertRules, rules_from_mapping
from bot.domain.errors import ConfigError
from bot.domain.schedule import Protocol, example_protocols, protocol_from_mapping

DEFAULT_PATH = Path("config.toml")
ENV_PATH = "CHECKIN_CONFIG"
ENV_DATABASE_URL = "CHECKIN_DATABASE_URL"
DEFAULT_DATABASE_URL = "sqlite:///checkin.db"
SECTIONS = {
    "instruments", "clinic", "database", "server", "scheduler", "telegram", "sms", "alerts",
    "protocols",
    "retention",
    "security",
}  # fmt: skip
ENV_SMS_ACCOUNT_SID = "CHECKIN_SMS_ACCOUNT_SID"
ENV_SMS_AUTH_TOKEN = "CHECKIN_SMS_AUTH_TOKEN"  # noqa: S105 -- a variable name
ENV_TELEGRAM_TOKEN = "CHECKIN_TELEGRAM_TOKEN"  # noqa: S105 -- a variable name
ENV_TELEGRAM_SECRET = "CHECKIN_TELEGRAM_WEBHOOK_SECRET"  # noqa: S105 -- a variable name
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


@dataclass(frozen=True)
class Clinic:
    """What patients are told about the clinic: its name, how to reach it, crisis lines."""

    name: str = "your clinic"
    contact: str = ""
    urgent_line: str = ""
    emergency_number: str = "911"  # said in every crisis and help message
    show_scores: bool = False
    # Empty: the templates' US defaults in the patient's language (988 call or text, 911;
    # instruments.md section 7). A clinic elsewhere lists its own lines.
    crisis_lines: tuple[tuple[str, str], ...] = ()
    # Scheduled messages wait for the patient's allowed window (local time); replies to a
    # patient who just wrote, and crisis messages, never wait. Equal times: no quiet hours.
    quiet_hours_start_local: time = time(20, 0)
    quiet_hours_end_local: time = time(8, 0)


@dataclass(frozen=True)
class Server:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""


@dataclass(frozen=True)
class Scheduler:
    tick_s: float = 5.0
    expire_after_h: float = 24.0  # check-ins asked by hand (`checkin ask`); rules set their own
    plan_ahead_days: float = 7.0  # protocol check-ins are stored this far ahead
    bundle_window_min: float = 120.0  # check-ins due this close together become one
    batch: int = 500  # rows one tick takes per stage (planning, starting, reminding...)
    # A worker holds what it claimed (a message to send, a check-in to start) this long;
    # if it dies, another worker takes the work over after it. Longer than any provider
    # timeout.
    lease_s: float = 60.0


@dataclass(frozen=True)
class Telegram:
    """The Telegram channel. Empty token: Telegram is off."""

    token: str = ""
    mode: str = "polling"  # or "webhook"
    webhook_secret: str = ""
    api_base_url: str = "https://api.telegram.org/bot"  # python-telegram-bot's base_url
    bot_username: str = ""  # for enrolment links; asked of Telegram (getMe) when empty
    enroll_ttl_min: float = 60.0
    # Telegram's limits: about 30 messages a second overall, one a second per chat.
    rate_per_s: float = 30.0

    @property
    def enabled(self) -> bool:
        return bool(self.token)


@dataclass(frozen=True)
class Sms:
    """The SMS channel on Twilio. Off until an account, a token and a sender are set."""

    account_sid: str = ""
    auth_token: str = ""
    from_number: str = ""
    messaging_service_sid: str = ""
    api_base_url: str = "https://api.twilio.com"
    default_region: str = "US"  # for numbers typed without a country code
    # One a second is the usual rate of a US long code; a short code or a Messaging
    # Service with several numbers allows more (ask Twilio what yours is).
    rate_per_s: float = 1.0

    @property
    def enabled(self) -> bool:
        return bool(
            self.account_sid
            and self.auth_token
            and (self.from_number or self.messaging_service_sid)
        )


@dataclass(frozen=True)
class Retention:
    """How long a discharged patient's records stay, and what survives their erasure."""

    delete_after_days: int = 365  # counted from discharge
    keep_deidentified_scores: bool = False  # keep scores under a wiped, pseudonymous row


@dataclass(frozen=True)
class Security:
    """Where the encryption key ring is read from (``CHECKIN_ENCRYPTION_KEY`` wins).

    Empty `key_file`: on SQLite, ``<database>.key`` beside the database file."""

    key_file: Path | None = None


_SMS_FIELDS = (
    "account_sid",
    "auth_token",
    "from_number",
    "messaging_service_sid",
    "api_base_url",
    "default_region",
)


@dataclass(frozen=True)
class Settings:
    source: str = "(defaults)"
    instruments_dirs: tuple[Path, ...] = ()
    clinic: Clinic = Clinic()
    database_url: str = DEFAULT_DATABASE_URL
    server: Server = Server()
    scheduler: Scheduler = Scheduler()
    telegram: Telegram = Telegram()
    sms: Sms = Sms()
    alerts: AlertRules = DEFAULT_RULES
    retention: Retention = Retention()
    security: Security = Security()
    # Absent [protocols]: the example protocols (weekly-phq9, ketamine-iv-6).
    protocols: Mapping[str, Protocol] = field(default_factory=lambda: default_protocols())


def default_protocols() -> dict[str, Protocol]:
    """The protocols config.example.toml ships, used when a file has no [protocols]."""
    return {
        name: protocol_from_mapping(name, table, "(built-in protocols)")
        for name, table in example_protocols().items()
    }


def config_path(explicit: Path | None) -> tuple[Path, bool]:
    """The path to read and whether someone asked for it by name."""
    if explicit is not None:
        return explicit, True
    from_env = os.environ.get(ENV_PATH)
    if from_env:
        return Path(from_env), True
    return DEFAULT_PATH, False


def load_settings(explicit: Path | None = None) -> Settings:
    path, required = config_path(explicit)
    if not path.exists():
        if required:
            raise ConfigError(str(path), "", "does not exist")
        return _with_environment(Settings())
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"is not valid TOML ({exc})") from None
    return _with_environment(settings_from_mapping(data, path))


def _with_environment(settings: Settings) -> Settings:
    """Secrets and deployment specifics may come from the environment instead of the file."""
    url = os.environ.get(ENV_DATABASE_URL)
    if url:
        settings = replace(settings, database_url=url)
    telegram = settings.telegram
    token = os.environ.get(ENV_TELEGRAM_TOKEN)
    secret = os.environ.get(ENV_TELEGRAM_SECRET)
    if token:
        telegram = replace(telegram, token=token)
    if secret:
        telegram = replace(telegram, webhook_secret=secret)
    settings = replace(settings, telegram=telegram)
    sms = settings.sms
    if os.environ.get(ENV_SMS_ACCOUNT_SID):
        sms = replace(sms, account_sid=os.environ[ENV_SMS_ACCOUNT_SID])
    if os.environ.get(ENV_SMS_AUTH_TOKEN):
        sms = replace(sms, auth_token=os.environ[ENV_SMS_AUTH_TOKEN])
    settings = replace(settings, sms=sms)
    check_telegram(settings, settings.source)
    if sms.enabled and not settings.server.public_url.startswith("https://"):
        raise ConfigError(
            settings.source, "server.public_url", "SMS needs the https:// address Twilio calls"
        )
    return settings


def check_telegram(settings: Settings, source: str) -> None:
    """Settings that only make sense together (checked after the environment is applied)."""
    telegram = settings.telegram
    if telegram.mode not in ("polling", "webhook"):
        raise ConfigError(source, "telegram.mode", 'must be "polling" or "webhook"')
    if not telegram.enabled or telegram.mode != "webhook":
        return
    if not _SECRET_TOKEN.match(telegram.webhook_secret):
        raise ConfigError(
            source,
            "telegram.webhook_secret",
            "webhook mode needs a secret of 1-256 letters, digits, _ or - "
            f"(or set {ENV_TELEGRAM_SECRET})",
        )
    if not settings.server.public_url.startswith("https://"):
        raise ConfigError(
            source, "server.public_url", "webhook mode needs the https:// address Telegram calls"
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
        ),
        sms=Sms(
            **{n: _value(sms, "sms", n, str, getattr(Sms, n), source) for n in _SMS_FIELDS},
            rate_per_s=_positive(sms, "sms", "rate_per_s", Sms.rate_per_s, source),
        ),
        scheduler=Scheduler(
            **{
                key: _positive(scheduler, "scheduler", key, getattr(Scheduler, key), source)
                for key in (
                    "tick_s",
                    "expire_after_h",
                    "plan_ahead_days",
                    "bundle_window_min",
                    "lease_s",
                )
            },
            batch=int(_positive(scheduler, "scheduler", "batch", Scheduler.batch, source)),
        ),
        protocols=_protocols(data, source),
    )


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


def _clinic(raw: Mapping[str, Any], source: str) -> Clinic:
    known = {
        "name", "contact", "urgent_line", "emergency_number", "show_scores", "crisis_lines",
        "quiet_hours_start_local", "quiet_hours_end_local",
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
    start, end = (
        _local_time(raw.get(key, getattr(Clinic, key)), f"clinic.{key}", source)
        for key in ("quiet_hours_start_local", "quiet_hours_end_local")
    )
    return Clinic(
        **texts,
        show_scores=show,
        crisis_lines=_crisis_lines(raw, source),
        quiet_hours_start_local=start,
        quiet_hours_end_local=end,
    )


def _local_time(value: Any, key: str, source: str) -> time:
    if isinstance(value, time):
        return value.replace(tzinfo=None)
    if isinstance(value, str):
        try:
            return time.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(source, key, 'must be a local time like "08:00"')


def _crisis_lines(raw: Mapping[str, Any], source: str) -> tuple[tuple[str, str], ...]:
    lines = raw.get("crisis_lines")
    if lines is None:
        return ()
    if not isinstance(lines, list) or not lines:
        raise ConfigError(source, "clinic.crisis_lines", "must be a non-empty list of {name, how}")
    parsed = []
    for n, line in enumerate(lines):
        if not isinstance(line, dict) or not all(
            isinstance(line.get(k), str) for k in ("name", "how")
        ):
            raise ConfigError(source, f"clinic.crisis_lines[{n}]", "needs name and how, both text")
        parsed.append((line["name"], line["how"]))
    return tuple(parsed)


def _table(data: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(source, name, "must be a table")
    return value
