"""The [whatsapp] section: the sender, Twilio credentials (those of [sms] unless set
here), and the Content SIDs the channel sends by (templates, answer buttons).

    [whatsapp]
    from_number = "+15005550006"
    [whatsapp.templates.invitation]
    en = "HX..."
    [whatsapp.choices]
    4 = "HX..."   # a list picker with four answers

Every Content SID is ``HX`` and 32 hex digits; template purposes and languages are closed
sets, so a typo is an error naming its key rather than a template never sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from bot.config.settings import Sms, WhatsApp
from bot.domain.errors import ConfigError
from bot.domain.languages import LANGUAGES

CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
PURPOSES = ("invitation", "checkin", "alert")  # the business-initiated messages
MAX_CHOICES = 10  # a list picker's limit
_TEXT = ("account_sid", "auth_token", "from_number", "messaging_service_sid", "api_base_url")
_KNOWN = {*_TEXT, "rate_per_s", "templates", "choices"}


def whatsapp_settings(raw: Mapping[str, Any], source: str) -> WhatsApp:
    """[whatsapp] read and checked (``with_sms_account`` fills in [sms]'s credentials)."""
    for key in raw:
        if key not in _KNOWN:
            known = ", ".join(sorted(_KNOWN))
            raise ConfigError(source, f"whatsapp.{key}", f"unknown key (known: {known})")
    text = {key: _text(raw, key, source) for key in _TEXT}
    rate = raw.get("rate_per_s", WhatsApp.rate_per_s)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
        raise ConfigError(source, "whatsapp.rate_per_s", "must be a positive number")
    return WhatsApp(
        account_sid=text["account_sid"],
        auth_token=text["auth_token"],
        from_number=text["from_number"],
        messaging_service_sid=text["messaging_service_sid"],
        api_base_url=text["api_base_url"] or WhatsApp.api_base_url,
        rate_per_s=float(rate),
        templates=_templates(raw.get("templates", {}), source),
        choices=_choices(raw.get("choices", {}), source),
    )


def _text(raw: Mapping[str, Any], key: str, source: str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(source, f"whatsapp.{key}", "must be text")
    return value


def _templates(raw: Any, source: str) -> dict[str, dict[str, str]]:
    if not isinstance(raw, dict):
        raise ConfigError(source, "whatsapp.templates", "must be a table")
    templates: dict[str, dict[str, str]] = {}
    for purpose, sids in raw.items():
        key = f"whatsapp.templates.{purpose}"
        if purpose not in PURPOSES:
            raise ConfigError(source, key, f"unknown template (known: {', '.join(PURPOSES)})")
        if not isinstance(sids, dict):
            raise ConfigError(source, key, "must be a table of Content SIDs by language")
        for language, sid in sids.items():
            if language not in LANGUAGES:
                known = ", ".join(LANGUAGES)
                raise ConfigError(source, f"{key}.{language}", f"unknown language ({known})")
            _check_sid(sid, f"{key}.{language}", source)
        templates[purpose] = dict(sids)
    return templates


def _choices(raw: Any, source: str) -> dict[int, str]:
    if not isinstance(raw, dict):
        raise ConfigError(source, "whatsapp.choices", "must be a table")
    choices: dict[int, str] = {}
    for count, sid in raw.items():
        key = f"whatsapp.choices.{count}"
        if not str(count).isdigit() or not 1 <= int(count) <= MAX_CHOICES:
            raise ConfigError(source, key, f"must be a number of answers from 1 to {MAX_CHOICES}")
        _check_sid(sid, key, source)
        choices[int(count)] = sid
    return choices


def _check_sid(sid: Any, key: str, source: str) -> None:
    if not isinstance(sid, str) or CONTENT_SID.fullmatch(sid) is None:
        raise ConfigError(source, key, "must be a Content SID (HX and 32 hex digits)")


def with_sms_account(whatsapp: WhatsApp, sms: Sms) -> WhatsApp:
    """A WhatsApp sender without credentials of its own uses [sms]'s Twilio account."""
    if not (whatsapp.from_number or whatsapp.messaging_service_sid):
        return whatsapp
    return replace(
        whatsapp,
        account_sid=whatsapp.account_sid or sms.account_sid,
        auth_token=whatsapp.auth_token or sms.auth_token,
    )


def missing_templates(whatsapp: WhatsApp) -> list[str]:
    """The keys a WhatsApp service needs and lacks: an English template for each purpose
    (another language falls back to it)."""
    if not whatsapp.enabled:
        return []
    return [f"whatsapp.templates.{p}.en" for p in PURPOSES if not whatsapp.template(p, "en")]
