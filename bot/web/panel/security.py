"""The panel's HTTP security: cookies, CSRF tokens, response headers.

* The session cookie is ``__Host-checkin``: ``Secure``, ``HttpOnly``, ``SameSite=Strict``,
  ``Path=/``, no ``Domain`` (the ``__Host-`` prefix makes browsers insist on all of that).
  Its value is the session token; the database holds only its hash.
* Every state-changing form carries ``csrf_token``. Signed in, it is an HMAC of the
  session token (nothing stored; a page from another session does not match). On the
  sign-in form, before any session, it must equal a random value the form's page put in
  the ``__Host-checkin-login`` cookie (double submit). Compared in constant time.
* Every panel response: a Content-Security-Policy that allows only this origin's
  stylesheet (no script at all, inline or not), no framing, no referrer; ``no-store``
  so no page with patient data stays in a cache.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

SESSION_COOKIE = "__Host-checkin"
LOGIN_COOKIE = "__Host-checkin-login"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def secured(response: Response) -> Response:
    """Add the panel's headers; one a route has set itself (a page's own policy) stays."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def set_cookie(response: Response, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="strict"
    )


def clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="strict")


def login_token(request: Request) -> str:
    """The sign-in form's CSRF value: the one already in the cookie, else a new one."""
    return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)


def same(given: object, expected: str) -> bool:
    return isinstance(given, str) and bool(expected) and hmac.compare_digest(given, expected)
