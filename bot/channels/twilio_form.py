"""Twilio's webhook forms, checked field by field before anything is recorded.

Twilio signs the URL followed by every field's name and value, sorted by name, with no
separator between them. A captured request can therefore be re-cut without breaking its
signature: drop ``NumMedia=0`` and append ``NumMedia0`` to ``MessageSid`` (the next field
by name) and the signed string is the same, yet ``MessageSid`` is new and the message is
taken for another one. A valid signature is not enough: every field the service reads must
also have Twilio's own shape, which no such re-cut keeps. Anything else is refused (400).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MESSAGE_SID = re.compile(r"(SM|MM)[0-9a-f]{32}")
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
WHATSAPP = "whatsapp:"
DIGITS = re.compile(r"[0-9]{1,6}")

# fields holding a message sid: the first is required, the others checked when present
_SIDS = ("MessageSid", "SmsSid", "SmsMessageSid")


def is_address(value: str) -> bool:
    """An E.164 number (``+15555550123``) or a WhatsApp one (``whatsapp:+15555550123``)."""
    return E164.fullmatch(value.removeprefix(WHATSAPP)) is not None


def inbound_problem(form: Mapping[str, str], account_sid: str) -> str | None:
    """What is wrong with an incoming-message form, in one line; None if nothing is."""
    return _sid_problem(form) or _account_problem(form, account_sid) or _address_problem(form)


def status_problem(form: Mapping[str, str], account_sid: str) -> str | None:
    """What is wrong with a delivery status callback, in one line; None if nothing is."""
    problem = _sid_problem(form) or _account_problem(form, account_sid)
    if problem is None and not _digits_or_absent(form, "ErrorCode"):
        problem = "ErrorCode is not a number"
    return problem


def _sid_problem(form: Mapping[str, str]) -> str | None:
    if "MessageSid" not in form:
        return "MessageSid is missing"
    for name in _SIDS:
        if name in form and MESSAGE_SID.fullmatch(form[name]) is None:
            return f"{name} is not a Twilio message sid (SM or MM and 32 hex digits)"
    return None


def _account_problem(form: Mapping[str, str], account_sid: str) -> str | None:
    if form.get("AccountSid") != account_sid:
        return "AccountSid is not this service's Twilio account"
    return None


def _address_problem(form: Mapping[str, str]) -> str | None:
    for name in ("From", "To"):
        if not is_address(form.get(name, "")):
            return f"{name} is not an E.164 or whatsapp: number"
    if not DIGITS.fullmatch(form.get("NumMedia", "")):
        return "NumMedia is not a number"
    return None


def _digits_or_absent(form: Mapping[str, str], name: str) -> bool:
    return name not in form or DIGITS.fullmatch(form[name]) is not None
