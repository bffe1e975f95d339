"""Passwords and second factors of panel accounts: argon2id hashes, the weak-password
rule, TOTP codes used once.

A password is kept only as an argon2id hash (argon2-cffi's defaults: 64 MiB, 3 passes).
A weak one is refused before it is hashed: shorter than 12 characters, or one of the
common passwords shipped beside this module (compared without regard to case). A TOTP
code (RFC 6238, 30-second steps, 6 digits) is accepted one step either side of now, and
only for a step later than the last one accepted, so a code seen over a shoulder cannot
be used again.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from functools import cache
from importlib import resources

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bot.app.operator.refusals import Refused

MIN_LENGTH = 12
STEP_S = 30
_HASHER = PasswordHasher()  # argon2id; stateless, holds only its parameters


@cache
def _dummy() -> str:
    """Verified when the e-mail is unknown, so a miss takes as long as a wrong password.
    Made on first use, not at import: hashing takes 64 MiB, and every process importing
    the panel's use cases (each scheduler worker among them) kept that as its peak."""
    return _HASHER.hash("not a password anyone has")


@cache
def common_passwords() -> frozenset[str]:
    text = resources.files(__package__).joinpath("common-passwords.txt").read_text("utf-8")
    return frozenset(w.strip().lower() for w in text.splitlines() if w and w[0] != "#")


def weakness(password: str) -> str | None:
    """Why `password` is refused, or None when it may be used."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if len(set(password)) < 4 or password.lower() in common_passwords():
        return "that password is too common; choose another"
    return None


def hash_password(password: str) -> str:
    problem = weakness(password)
    if problem is not None:
        raise Refused(problem)
    return _HASHER.hash(password)


def password_matches(stored: str | None, given: str) -> bool:
    """True when `given` is the password `stored` hashes (None: no password set yet)."""
    try:
        return _HASHER.verify(stored or _dummy(), given) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def new_totp_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def totp_step(secret: str, code: str, now: datetime, last_step: int | None) -> int | None:
    """The step `code` belongs to (now, or one either side), if later than `last_step`."""
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // STEP_S
    for step in (current - 1, current, current + 1):
        expected = totp.at(step * STEP_S)
        if hmac.compare_digest(expected, code.strip()) and step > (last_step or -1):
            return step
    return None


def totp_code(secret: str, now: datetime) -> str:
    """The code an authenticator shows at `now` (for the demo and for tests)."""
    return pyotp.TOTP(secret).at(now)
