"""Loading the settings: which file (``--config``, ``CHECKIN_CONFIG`` or ``config.toml``),
read as TOML, then the environment, which may supply secrets and the database URL
instead of the file, and the checks of settings that only make sense together. The
sections and their keys are :mod:`bot.config.sections`; the values,
:mod:`bot.config.settings`.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import replace
from pathlib import Path

from bot.config.sections import settings_from_mapping
from bot.config.settings import Settings
from bot.config.whatsapp_config import with_sms_account
from bot.domain.errors import ConfigError

DEFAULT_PATH = Path("config.toml")
ENV_PATH = "CHECKIN_CONFIG"
ENV_DATABASE_URL = "CHECKIN_DATABASE_URL"
ENV_SMS_ACCOUNT_SID = "CHECKIN_SMS_ACCOUNT_SID"
ENV_SMS_AUTH_TOKEN = "CHECKIN_SMS_AUTH_TOKEN"  # noqa: S105 -- a variable name
ENV_TELEGRAM_TOKEN = "CHECKIN_TELEGRAM_TOKEN"  # noqa: S105 -- a variable name
ENV_TELEGRAM_SECRET = "CHECKIN_TELEGRAM_WEBHOOK_SECRET"  # noqa: S105 -- a variable name
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


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
        return with_environment(Settings())
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"is not valid TOML ({exc})") from None
    return with_environment(settings_from_mapping(data, path))


def with_environment(settings: Settings) -> Settings:
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
    settings = replace(settings, sms=sms, whatsapp=with_sms_account(settings.whatsapp, sms))
    check_telegram(settings, settings.source)
    if settings.whatsapp.enabled and not settings.server.public_url.startswith("https://"):
        raise ConfigError(
            settings.source, "server.public_url", "WhatsApp needs the https:// address Twilio calls"
        )
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
