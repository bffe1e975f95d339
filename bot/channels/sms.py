"""SMS on Twilio: outbound through the REST API, inbound and status callbacks validated.

Outbound uses twilio's own client pointed at ``[sms] api_base_url`` through
:class:`BaseUrlHttpClient`, from a worker thread (the client is synchronous). Failures
become :class:`DeliveryFailed`:

* 21610 (the number replied STOP at the carrier): the patient is opted out, never retried.
* 21617 (a body over 1,600 characters) and 21658 (a parameter too long): permanent,
  the reason saying so; the messages to clinicians are sized to fit
  (bot/rendering/budget.py), so one is a bug, never worth sending again as it is.
* other 4xx (invalid number, not a mobile, ...): permanent.
* 429: retried no sooner than Twilio's Retry-After. 5xx, timeouts, resets: retried.

Inbound requests are checked with twilio's ``RequestValidator`` against the configured
public URL (what Twilio called, not what a TLS-terminating proxy forwarded), with every
form field, repeated ones included.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import phonenumbers
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from bot.channels.twilio_http import BaseUrlHttpClient, last_response, retry_after_s
from bot.config import Sms
from bot.domain.errors import DeliveryFailed
from bot.rendering.renderer import Rendered

OPTED_OUT = 21610
TOO_LONG = {21617: "body over 1,600 characters", 21658: "a parameter over its length"}


class InvalidNumber(ValueError):
    pass


def e164(number: str, default_region: str = "US") -> str:
    """The number in E.164 (+15555550123), or InvalidNumber saying why not."""
    try:
        parsed = phonenumbers.parse(number, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(f"{number!r} is not a phone number ({exc})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber(f"{number!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


class SmsChannel:
    name = "sms"

    def __init__(self, settings: Sms, status_callback: str | None = None) -> None:
        self.settings = settings
        self.status_callback = status_callback
        self._http = BaseUrlHttpClient(settings.api_base_url)
        self._client = Client(settings.account_sid, settings.auth_token, http_client=self._http)

    async def send(self, address: str, message: Rendered, payload: dict[str, object]) -> str:
        return await asyncio.to_thread(self._send, address, message.text)

    def _send(self, address: str, body: str) -> str:
        sender = (
            {"messaging_service_sid": self.settings.messaging_service_sid}
            if self.settings.messaging_service_sid
            else {"from_": self.settings.from_number}
        )
        callback = {"status_callback": self.status_callback} if self.status_callback else {}
        try:
            created = self._client.messages.create(to=address, body=body, **sender, **callback)
        except TwilioRestException as exc:
            raise translated(exc, retry_after_s(last_response())) from exc
        except requests.RequestException as exc:
            raise DeliveryFailed(f"sms: {type(exc).__name__}") from exc
        return str(created.sid)

    def close(self) -> None:
        self._http.close()


def translated(exc: TwilioRestException, retry_after: float | None) -> DeliveryFailed:
    """Twilio's error as ours, with only its code (its message can echo the number)."""
    reason = f"sms: twilio error {exc.code or exc.status}"
    if exc.code == OPTED_OUT:
        return DeliveryFailed(f"{reason} (recipient opted out)", recipient_gone=True)
    if exc.code in TOO_LONG:
        return DeliveryFailed(f"{reason} ({TOO_LONG[exc.code]})", permanent=True)
    if exc.status == 429:
        return DeliveryFailed(reason, retry_after_s=retry_after)
    if 400 <= exc.status < 500:
        return DeliveryFailed(reason, permanent=True)
    return DeliveryFailed(reason)


def valid_signature(
    auth_token: str, url: str, form: Sequence[tuple[str, str]] | Mapping[str, str], signature: str
) -> bool:
    """Twilio's X-Twilio-Signature check over every form field (repeated keys included)."""
    params = _MultiParams()
    items = form.items() if isinstance(form, Mapping) else form
    for key, value in items:
        params.setdefault(key, []).append(value)
    return bool(RequestValidator(auth_token).validate(url, params, signature))


class _MultiParams(dict[str, list[str]]):
    """Form fields with repeated keys, in the shape twilio's validator reads (``getlist``)."""

    def getlist(self, key: str) -> list[str]:
        return self[key]
