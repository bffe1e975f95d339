"""The one error hierarchy of mbc-checkin.

Expected clinical outcomes (a high score, an invalid reply, a missing item) are values
and events, never exceptions. Exceptions are for faults: a broken definition file, a
bad configuration, a forged webhook, a provider that will not take a message.

    CheckinError
    ├── DefinitionError          an instrument definition is malformed (names file and field)
    │   └── WordingRequired      a licensed instrument has no operator-supplied wording yet
    ├── UnknownInstrument        no instrument with that key is loaded
    ├── AnswerError              a value given for scoring is not a valid answer to its item
    ├── ConfigError              the configuration is malformed (names file and key)
    ├── NotFound                 an operator named a record (patient, clinician, ...) that is absent
    ├── DeliveryFailed           a channel could not deliver a message (retry or give up)
    ├── Refused                  (bot.app.operator.refusals) an operator's request the records
    │                            do not allow now: a deactivated clinician, one still responsible
    │                            for patients, a patient with no protocol to preview
    ├── KeyProblem               (bot.storage.crypto) no key, or a key that does not open a value
    │   └── NoKey                no encryption key is configured or found
    └── SpoolUnavailable         (bot.storage.spool) the SMS spool file cannot be created or opened
"""

from __future__ import annotations


class CheckinError(Exception):
    """Base of every error this project raises on purpose."""


class DefinitionError(CheckinError):
    """An instrument definition is malformed.

    `source` is the file (or other origin) and `field` the dotted path inside it, so the
    message reads like ``phq9.toml: items[3].options: unknown option set 'freq'``.
    """

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {problem}")


class WordingRequired(DefinitionError):
    """A licensed instrument ships as structure only; an operator must supply its wording."""


class UnknownInstrument(CheckinError):
    def __init__(self, key: str, known: tuple[str, ...]) -> None:
        self.key = key
        self.known = known
        super().__init__(f"unknown instrument {key!r}; known: {', '.join(known) or 'none'}")


class AnswerError(CheckinError):
    """A value handed to scoring is not one of the item's answers."""

    def __init__(self, item_key: str, problem: str) -> None:
        self.item_key = item_key
        self.problem = problem
        super().__init__(f"{item_key}: {problem}")


class ConfigError(CheckinError):
    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class NotFound(CheckinError):
    def __init__(self, kind: str, ident: object) -> None:
        self.kind = kind
        self.ident = ident
        super().__init__(f"no {kind} with id {ident}")


class DeliveryFailed(CheckinError):
    """A provider refused or did not take a message.

    `permanent`: retrying cannot help (opted out, blocked, invalid number); the message is
    marked dead. Otherwise it is retried with backoff, no sooner than `retry_after_s`.
    `recipient_gone`: the person can no longer be reached there (blocked the bot, opted out
    at the carrier); their status changes so nothing more is queued for them.
    `maybe_sent`: the request left and no answer came back in time (a read timeout): the
    provider may have taken it, so it is re-sent only after a longer pause.
    """

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool = False,
        retry_after_s: float | None = None,
        recipient_gone: bool = False,
        maybe_sent: bool = False,
    ) -> None:
        self.reason = reason
        self.permanent = permanent or recipient_gone
        self.retry_after_s = retry_after_s
        self.recipient_gone = recipient_gone  # blocked the bot / opted out: stop writing to them
        self.maybe_sent = maybe_sent
        super().__init__(reason)
