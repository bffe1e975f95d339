"""Configuration: one TOML file read into one frozen settings object.

Where the file comes from: the global ``--config PATH`` option, else ``CHECKIN_CONFIG``,
else ``config.toml`` in the working directory. The default path may be absent (every
setting has a working default); a path someone asked for by name must exist. Every error
names the file and the key: ``config.toml: instruments.dirs: must be a list of paths``.

* :mod:`.settings`: the frozen dataclasses, one per section, and their defaults.
* :mod:`.sections`: config.toml's sections and keys read into them, each value checked.
* :mod:`.loading`: finding and reading the file, then the environment.

Imports ``bot.domain`` only. The names below are the package's public surface; code
outside it imports from here.
"""

from bot.config.loading import (
    DEFAULT_PATH,
    ENV_DATABASE_URL,
    ENV_PATH,
    ENV_SMS_ACCOUNT_SID,
    ENV_SMS_AUTH_TOKEN,
    ENV_TELEGRAM_SECRET,
    ENV_TELEGRAM_TOKEN,
    check_telegram,
    config_path,
    load_settings,
    with_environment,
)
from bot.config.sections import SECTIONS, settings_from_mapping
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
    WhatsApp,
    default_protocols,
)

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_PATH",
    "ENV_DATABASE_URL",
    "ENV_PATH",
    "ENV_SMS_ACCOUNT_SID",
    "ENV_SMS_AUTH_TOKEN",
    "ENV_TELEGRAM_SECRET",
    "ENV_TELEGRAM_TOKEN",
    "SECTIONS",
    "Clinic",
    "Panel",
    "Retention",
    "Scheduler",
    "Security",
    "Server",
    "Settings",
    "Sms",
    "Telegram",
    "WhatsApp",
    "check_telegram",
    "config_path",
    "default_protocols",
    "load_settings",
    "settings_from_mapping",
    "with_environment",
]
