"""Checking what an operator typed to enrol one patient, shared by ``checkin patient add``
and the panel's Enrol form, so both refuse the same things.

Problems are codes by field (:class:`Problem`), found all at once, in the order a form
shows its fields; each entry point words them (the CLI as one line naming its option, the
panel beside each field, from its templates). The phone number is checked by a function
the entry point hands in (twilio's ``phonenumbers``: an adapter's dependency), which
returns the number in E.164 or raises ``ValueError`` saying why not.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.app.operator.refusals import Refused
from bot.domain.languages import LANGUAGES
from bot.storage.tables import CHANNELS

PHONE_CHANNELS = ("sms", "whatsapp")


@dataclass(frozen=True)
class EnrolRules:
    """What the entry point knows of the clinic's configuration."""

    channels: frozenset[str]  # the channels a patient may be enrolled on now
    protocols: frozenset[str]
    phone: Callable[[str], str]  # a number in E.164, or ValueError


@dataclass(frozen=True)
class Problem:
    field: str  # name, channel, language, timezone, protocol, phone
    code: str  # empty, unknown, not_configured, missing, invalid, not_for_channel
    detail: str = ""  # invalid phone: why (it quotes the number: shown, never logged)


class EnrolRefused(Refused):
    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{p.field}: {p.code}" for p in self.problems))

    def by_field(self) -> dict[str, Problem]:
        """The first problem of each field."""
        found: dict[str, Problem] = {}
        for p in self.problems:
            found.setdefault(p.field, p)
        return found


@dataclass(frozen=True)
class EnrolForm:
    """The fields as typed (strings; empty is not given)."""

    name: str
    channel: str
    timezone: str
    language: str
    protocol: str = ""
    phone: str = ""


def problems(form: EnrolForm, rules: EnrolRules) -> list[Problem]:
    """Every problem of the form, in the order of its fields."""
    found = []
    if not form.name.strip():
        found.append(Problem("name", "empty"))
    if form.channel not in CHANNELS:
        found.append(Problem("channel", "unknown"))
    if form.language not in LANGUAGES:
        found.append(Problem("language", "unknown"))
    if not zone_ok(form.timezone):
        found.append(Problem("timezone", "unknown"))
    if form.protocol and form.protocol not in rules.protocols:
        found.append(Problem("protocol", "unknown"))
    if form.channel in CHANNELS:
        try:
            contact(form.channel, form.phone, rules)
        except EnrolRefused as refused:
            found += refused.problems
    return found


def contact(channel: str, phone: str | None, rules: EnrolRules) -> str | None:
    """The number to store for `channel` (E.164; ``whatsapp:+E164`` on WhatsApp; None for
    the others), once the channel is one this clinic can use. EnrolRefused otherwise."""
    if channel not in PHONE_CHANNELS:
        if phone:
            raise EnrolRefused([Problem("phone", "not_for_channel")])
        if channel not in rules.channels:
            raise EnrolRefused([Problem("channel", "not_configured")])
        return None
    if channel not in rules.channels:
        raise EnrolRefused([Problem("channel", "not_configured")])
    if not phone:
        raise EnrolRefused([Problem("phone", "missing")])
    try:
        number = rules.phone(phone.removeprefix("whatsapp:"))
    except ValueError as exc:
        raise EnrolRefused([Problem("phone", "invalid", str(exc))]) from None
    return f"whatsapp:{number}" if channel == "whatsapp" else number


def zone_ok(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True
