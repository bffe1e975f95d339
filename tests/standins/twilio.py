"""A stand-in for Twilio's Messages REST API, and the webhook requests Twilio sends to us.

    stand_in = TwilioStandIn()
    async with serve(stand_in.app) as url:
        client = Client(stand_in.account_sid, stand_in.auth_token,
                        http_client=BaseUrlHttpClient(url))
        await asyncio.to_thread(client.messages.create, to=..., from_=..., body=...)

Serves ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (201 and a Message resource)
and ``GET .../Messages/{Sid}.json``, checks HTTP Basic auth, validates like Twilio (21604,
21603, 21602, 21211, 21617, and 21610 for numbers passed to ``opt_out``) and records every
request in ``calls``. Failures are scripted with ``fail(fault, to=..., times=...)`` using the
factories below or ``Fault.slow`` / ``Fault.dropped``. ``on_created``, if set, is awaited with
each created message before the answer leaves (a status callback that beats the answer).

``signed_request`` plays Twilio calling our webhooks: it signs form parameters with
``RequestValidator.compute_signature`` so our app can validate them.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from http import HTTPStatus
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from tests.standins.server import Call, Fault, FaultScript, apply_fault, utc_now

JSON = dict[str, Any]
API_VERSION = "2010-04-01"
MAX_BODY_CHARS = 1600
E164 = re.compile(r"\+[1-9]\d{6,14}")
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = "\f^{}\\[~]|€"
_GSM7 = frozenset(GSM7_BASIC + GSM7_EXTENSION)


def sms_encoding(body: str) -> Literal["GSM-7", "UCS-2"]:
    """GSM-7 if every character is in the GSM 03.38 basic or extension table, else UCS-2."""
    return "GSM-7" if _GSM7.issuperset(body) else "UCS-2"


def sms_segments(body: str) -> int:
    """Segments Twilio bills for ``body``: GSM-7 160 alone, 153 per part (extension characters
    take two septets and are never split); UCS-2 70 alone, 67 per part in UTF-16 code units
    (surrogate pairs are never split)."""
    if sms_encoding(body) == "GSM-7":
        costs, single, part = [2 if ch in GSM7_EXTENSION else 1 for ch in body], 160, 153
    else:
        costs, single, part = [len(ch.encode("utf-16-le")) // 2 for ch in body], 70, 67
    if sum(costs) <= single:
        return 1
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:
            segments, used = segments + 1, 0
        used += cost
    return segments


def unsubscribed() -> Fault:
    """Error 21610: the recipient replied STOP; Twilio refuses until they reply START."""
    return Fault(status=400, code=21610, message="Attempt to send to unsubscribed recipient")


def invalid_to() -> Fault:
    """Error 21211: the 'To' number is not a valid phone number."""
    return Fault(status=400, code=21211, message="Invalid 'To' Phone Number")


def too_many_requests(retry_after_s: int = 1) -> Fault:
    """Error 20429 with HTTP 429 and a Retry-After header."""
    return Fault(status=429, code=20429, message="Too Many Requests", retry_after_s=retry_after_s)


def server_error(status: int = 500) -> Fault:
    """HTTP 5xx with Twilio's 20500 / 20503 error body."""
    return Fault(status=status, code=20000 + status, message=HTTPStatus(status).phrase)


@dataclass(frozen=True)
class SignedRequest:
    """A webhook request as Twilio sends it: POST ``form`` to ``url`` with ``headers``."""

    url: str
    form: dict[str, str]
    headers: dict[str, str]


def signature(url: str, params: Mapping[str, str], auth_token: str) -> str:
    """The X-Twilio-Signature Twilio computes for a form POST of ``params`` to ``url``."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


def signed_request(url: str, params: Mapping[str, str], auth_token: str) -> SignedRequest:
    """A webhook request signed with ``auth_token``, ready to POST to our app."""
    headers = {
        "X-Twilio-Signature": signature(url, params, auth_token),
        "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        "User-Agent": "TwilioProxy/1.1",
    }
    return SignedRequest(url, dict(params), headers)


def new_sid(prefix: str = "SM") -> str:
    """A Twilio-shaped sid: two letters and 32 hex digits."""
    return prefix + uuid.uuid4().hex


def inbound_sms_params(
    *,
    account_sid: str,
    from_: str,
    to: str,
    body: str,
    message_sid: str | None = None,
    messaging_service_sid: str | None = None,
    opt_out_type: Literal["STOP", "START", "HELP"] | None = None,
) -> dict[str, str]:
    """The form fields of Twilio's incoming-message webhook."""
    sid = message_sid or new_sid()
    params = {
        "ToCountry": _country(to),
        "ToState": "",
        "ToCity": "",
        "ToZip": "",
        "FromCountry": _country(from_),
        "FromState": "",
        "FromCity": "",
        "FromZip": "",
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "MessageSid": sid,
        "SmsStatus": "received",
        "NumMedia": "0",
        "NumSegments": str(sms_segments(body)),
        "Body": body,
        "To": to,
        "From": from_,
        "AccountSid": account_sid,
        "ApiVersion": API_VERSION,
    }
    if messaging_service_sid:
        params["MessagingServiceSid"] = messaging_service_sid
    if opt_out_type:
        params["OptOutType"] = opt_out_type
    return params


def status_callback_params(
    *,
    account_sid: str,
    message_sid: str,
    status: str,
    to: str,
    from_: str | None = None,
    messaging_service_sid: str | None = None,
    error_code: int | None = None,
) -> dict[str, str]:
    """The form fields of Twilio's outbound-message status callback."""
    params = {
        "SmsSid": message_sid,
        "MessageSid": message_sid,
        "SmsStatus": status,
        "MessageStatus": status,
        "To": to,
        "AccountSid": account_sid,
        "ApiVersion": API_VERSION,
    }
    optional = {"From": from_, "MessagingServiceSid": messaging_service_sid}
    params |= {k: v for k, v in optional.items() if v}
    if error_code is not None:
        params["ErrorCode"] = str(error_code)
    return params


def _country(number: str) -> str:
    return "US" if number.startswith("+1") else ""


class TwilioStandIn:
    """Twilio's Messages API for one account, with recorded calls and scripted faults."""

    def __init__(
        self,
        account_sid: str = "AC" + "5" * 32,
        auth_token: str = "standin-auth-token",
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.clock = clock
        self.calls: list[Call] = []
        self.faults = FaultScript()
        self.opted_out: set[str] = set()
        self.messages: dict[str, JSON] = {}
        self.status_callbacks: dict[str, str] = {}
        # awaited with each created message before its answer leaves: Twilio may call a
        # status callback before its REST answer reaches the sender
        self.on_created: Callable[[JSON], Awaitable[None]] | None = None
        prefix = f"/{API_VERSION}/Accounts/{{account_sid}}/Messages"
        self.app = Starlette(
            routes=[
                Route(prefix + ".json", self._create, methods=["POST"]),
                Route(prefix + "/{message_sid}.json", self._fetch, methods=["GET"]),
            ]
        )

    def fail(self, fault: Fault, *, to: str | None = None, times: int = 1) -> None:
        """Script ``fault`` for the next ``times`` message creations (to ``to`` only, if given)."""
        self.faults.add(fault, method="Messages.create", key=to, times=times)

    def opt_out(self, number: str) -> None:
        """``number`` replied STOP: creating messages to it fails with 21610 from now on."""
        self.opted_out.add(number)

    def set_status(self, message_sid: str, status: str, error_code: int | None = None) -> None:
        """Move a created message to ``status``, as Twilio would while delivering it."""
        message = self.messages[message_sid]
        message |= {"status": status, "error_code": error_code, "date_updated": self._now()}

    def inbound_request(
        self, url: str, *, from_: str, to: str, body: str, **extra: Any
    ) -> SignedRequest:
        """A signed incoming-SMS webhook for this account, to POST to our app at ``url``."""
        params = inbound_sms_params(
            account_sid=self.account_sid, from_=from_, to=to, body=body, **extra
        )
        return signed_request(url, params, self.auth_token)

    def status_request(
        self, message_sid: str, status: str, error_code: int | None = None
    ) -> SignedRequest:
        """A signed status callback for a created message, to the StatusCallback it was sent with."""
        message = self.messages[message_sid]
        params = status_callback_params(
            account_sid=self.account_sid,
            message_sid=message_sid,
            status=status,
            to=message["to"],
            from_=message["from"],
            messaging_service_sid=message["messaging_service_sid"],
            error_code=error_code,
        )
        return signed_request(self.status_callbacks[message_sid], params, self.auth_token)

    # -- HTTP ----------------------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        async with request.form() as form:
            params = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        refusal = self._refuse(request)
        fault = None if refusal else self.faults.take("Messages.create", params.get("To"))
        self.calls.append(
            Call("Messages.create", params, self.clock(), fault, _basic_auth(request))
        )
        if refusal is not None:
            return refusal
        if fault is not None and (response := await apply_fault(fault, _fault_response)):
            return response
        if (invalid := self._invalid(params)) is not None:
            return _error(400, *invalid)
        message = self._new_message(params)
        self.messages[message["sid"]] = message
        if "StatusCallback" in params:
            self.status_callbacks[message["sid"]] = params["StatusCallback"]
        if self.on_created is not None:
            await self.on_created(message)
        return JSONResponse(message, status_code=201)

    async def _fetch(self, request: Request) -> Response:
        sid = request.path_params["message_sid"]
        self.calls.append(
            Call("Messages.fetch", {"Sid": sid}, self.clock(), None, _basic_auth(request))
        )
        if (refusal := self._refuse(request)) is not None:
            return refusal
        if sid not in self.messages:
            return _error(404, 20404, f"The requested resource {request.url.path} was not found")
        return JSONResponse(self.messages[sid])

    def _refuse(self, request: Request) -> Response | None:
        """401 for wrong credentials, 404 for another account's URL, as Twilio answers."""
        if _basic_auth(request) != (self.account_sid, self.auth_token):
            return _error(401, 20003, "Authenticate")
        if request.path_params["account_sid"] != self.account_sid:
            return _error(404, 20404, f"The requested resource {request.url.path} was not found")
        return None

    def _invalid(self, params: Mapping[str, str]) -> tuple[int, str] | None:
        """The first validation error Twilio would report for these parameters, if any."""
        to, body = params.get("To", ""), params.get("Body", "")
        if not to:
            return 21604, "A 'To' phone number is required."
        if not (params.get("From") or params.get("MessagingServiceSid")):
            return 21603, "A 'From' or 'MessagingServiceSid' parameter is required."
        if not (body or params.get("MediaUrl") or params.get("ContentSid")):
            return 21602, "Message body is required."
        if not E164.fullmatch(to):
            return 21211, f"Invalid 'To' Phone Number: {to}"
        if len(body) > MAX_BODY_CHARS:
            return 21617, "The concatenated message body exceeds the 1600 character limit."
        if to in self.opted_out:
            return 21610, "Attempt to send to unsubscribed recipient"
        return None

    def _new_message(self, params: Mapping[str, str]) -> JSON:
        sid, now, body = new_sid(), self._now(), params.get("Body", "")
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        # With a Messaging Service and no From, Twilio answers "accepted" and picks the sender.
        accepted = "MessagingServiceSid" in params and "From" not in params
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": params.get("From"),
            "messaging_service_sid": params.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": str(sms_segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if accepted else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": params["To"],
            "uri": f"{uri}.json",
        }

    def _now(self) -> str:
        return format_datetime(self.clock())


def _basic_auth(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, _, password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return username, password


def _error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _fault_response(fault: Fault) -> Response:
    assert fault.status is not None
    retry = {} if fault.retry_after_s is None else {"Retry-After": str(fault.retry_after_s)}
    message = fault.message or HTTPStatus(fault.status).phrase
    return _error(fault.status, fault.code or fault.status, message, retry)
