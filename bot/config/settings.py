"""The settings, frozen: one dataclass per section of config.toml, every field with a
working default, and :class:`Settings` holding them all. Reading them from the file and
the environment is :mod:`bot.config.loading`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from functools import cached_property
from pathlib import Path

from bot.domain.alerts import DEFAULT_RULES, AlertRules
from bot.domain.crisis import Country, CrisisContacts, CrisisLine, contacts_for, country_of
from bot.domain.schedule import Protocol, example_protocols, protocol_from_mapping

DEFAULT_DATABASE_URL = "sqlite:///checkin.db"
COUNTRIES_REMEMBERED = 10_000  # (number, zone) pairs a clinic remembers the country of


@dataclass(frozen=True)
class Clinic:
    """What patients are told about the clinic: its name, how to reach it, crisis lines."""

    name: str = "your clinic"
    contact: str = ""
    urgent_line: str = ""  # the clinic's own line: added to every crisis message when set
    # The clinic's own country: its emergency number and crisis lines are the default, for
    # patients whose number or time zone points to no other configured country.
    country: str = "US"
    emergency_number: str = "911"  # said in every crisis and help message
    show_scores: bool = False
    # Empty: the templates' US defaults in the patient's language (988 call or text, 911;
    # instruments.md section 7). A clinic elsewhere lists its own lines.
    crisis_lines: tuple[CrisisLine, ...] = ()
    # Other countries' lines and emergency numbers ([clinic.countries.XX]).
    countries: tuple[Country, ...] = ()
    # Scheduled messages wait for the patient's allowed window (local time); replies to a
    # patient who just wrote, and crisis messages, never wait. Equal times: no quiet hours
    # (written in the file as quiet_hours = "none"; `config check` warns on equal times).
    quiet_hours_start_local: time = time(20, 0)
    quiet_hours_end_local: time = time(8, 0)

    @property
    def home(self) -> Country:
        return Country(self.country, self.emergency_number, self.crisis_lines)

    def country_of(self, phone: str | None, zone: str | None) -> str:
        """The patient's country: see :func:`bot.domain.crisis.country_of`. Remembered for
        each number and zone (every turn's messages ask: ~55 calls a turn, 2 when known)."""
        known = self._countries_of
        found = known.get((phone, zone))
        if found is None:
            if len(known) >= COUNTRIES_REMEMBERED:
                known.clear()
            found = country_of(phone, zone, [self.home, *self.countries], self.country)
            known[phone, zone] = found
        return found

    @cached_property
    def _countries_of(self) -> dict[tuple[str | None, str | None], str]:
        # (kept in the instance's __dict__: not a field, so neither compared nor hashed)
        return {}

    def crisis_for(self, country: str | None, language: str) -> CrisisContacts:
        """The lines and emergency number for a patient in `country` (None: the clinic's)."""
        chosen = next((c for c in self.countries if c.code == country), self.home)
        return contacts_for(chosen, language)


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
    # An outbound message being sent is held this long, and the lease is renewed every
    # third of it while the send is under way: after a crash it is sent again (a
    # duplicate, if the provider had taken it) within this window, and the recipient's
    # later messages wait no longer than that.
    send_lease_s: float = 30.0
    # On SIGTERM or Ctrl-C the sends already given to the provider get this long to be
    # answered and recorded before the process stops (then what is left is sent again
    # after its lease: maybe a duplicate). A provider answers in well under a second; 5 s
    # leaves the other half of a container's usual 10 s stop timeout for the rest. A
    # second SIGTERM or Ctrl-C ends the grace at once.
    stop_grace_s: float = 5.0


@dataclass(frozen=True)
class Telegram:
    """The Telegram channel. Empty token: Telegram is off."""

    token: str = ""
    mode: str = "polling"  # or "webhook"
    webhook_secret: str = ""
    api_base_url: str = "https://api.telegram.org/bot"  # python-telegram-bot's base_url
    bot_username: str = ""  # for enrolment links; asked of Telegram (getMe) when empty
    enroll_ttl_min: float = 60.0
    # Telegram's limits: about 30 messages a second overall, one a second per chat on
    # average. A chat may take `per_chat_burst` at once (a reply to a patient who just
    # wrote is two or three messages: the edited question, a crisis message, the next
    # question), then `per_chat_rate_per_s` (docs/PERFORMANCE.md, "Send limits").
    rate_per_s: float = 30.0
    per_chat_burst: int = 3
    per_chat_rate_per_s: float = 1.0
    # How long a request to the Bot API may take before it is given up (and, if it was
    # sent, retried later: it may have arrived). Longer than the provider's slow answers.
    timeout_s: float = 30.0

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
    # Inbound SMS are spooled here (fsynced, encrypted) before the webhook answers, and
    # moved into the database after. None: beside the SQLite database (<database>.spool),
    # else checkin.spool beside the configuration file.
    spool_path: Path | None = None
    spool_max: int = 10_000  # messages waiting in the spool; past it /sms answers 503

    @property
    def enabled(self) -> bool:
        return bool(
            self.account_sid
            and self.auth_token
            and (self.from_number or self.messaging_service_sid)
        )


@dataclass(frozen=True)
class WhatsApp:
    """WhatsApp on Twilio (bot/config/whatsapp_config.py reads it). The credentials are
    [sms]'s unless set here. `templates`: approved Content SIDs by purpose ("invitation",
    "checkin", "alert") and language; `choices`: the session Content SIDs showing n answer
    buttons (quick replies up to 3, a list picker up to 10), by n."""

    account_sid: str = ""
    auth_token: str = ""
    from_number: str = ""
    messaging_service_sid: str = ""
    api_base_url: str = "https://api.twilio.com"
    # Twilio's default WhatsApp throughput is 80 messages a second per sender; one a
    # second per recipient keeps a patient's questions in order on their phone.
    rate_per_s: float = 20.0
    templates: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    choices: Mapping[int, str] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(
            self.account_sid
            and self.auth_token
            and (self.from_number or self.messaging_service_sid)
        )

    def template(self, purpose: str, language: str) -> str | None:
        """The Content SID of `purpose` in `language`, else in English, else None. English
        stands in for a language not configured: a Spanish clinician's alert goes as the
        English alert template (its words, in variable {{2}}, still in Spanish) rather
        than not at all."""
        sids = self.templates.get(purpose, {})
        return sids.get(language) or sids.get("en")


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


@dataclass(frozen=True)
class Panel:
    """The clinicians' web panel (docs/PANEL.md): sign-in sessions and the viewer's zone."""

    require_totp: bool = True  # a TOTP code besides the password (false: password only)
    idle_timeout_min: float = 15.0  # a session unused this long is over
    absolute_timeout_h: float = 12.0  # and every session is over this long after sign-in
    timezone: str = "UTC"  # times shown to an account that has no zone of its own
    locale: str = "en-US"  # how dates and numbers are written (BCP 47; words stay English)


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
    whatsapp: WhatsApp = WhatsApp()
    alerts: AlertRules = DEFAULT_RULES
    retention: Retention = Retention()
    security: Security = Security()
    panel: Panel = Panel()
    # Absent [protocols]: the example protocols (weekly-phq9, ketamine-iv-6).
    protocols: Mapping[str, Protocol] = field(default_factory=lambda: default_protocols())


def default_protocols() -> dict[str, Protocol]:
    """The protocols config.example.toml ships, used when a file has no [protocols]."""
    return {
        name: protocol_from_mapping(name, table, "(built-in protocols)")
        for name, table in example_protocols().items()
    }
