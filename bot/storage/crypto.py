"""Field-level encryption at rest: a key ring, the ``EncryptedText`` column type, lookup hashes.

Names, phone numbers, chat ids and the patient's own words are stored as
``enc1:<key id>:<base64url(nonce | ciphertext | tag)>``: AES-256-GCM with a fresh 96-bit
nonce per value and the column's name (``patient.address``) as associated data, so a value
copied into another column does not decrypt. The key id in front says which key of the ring
decrypts a value; rotation finds the rows still under an old key with a plain prefix test.

Lookups by phone number or chat id go through a keyed hash (HMAC-SHA256) stored beside the
encrypted value. Every key yields two subkeys (HKDF-SHA256): one encrypts, one hashes. A
lookup asks for the hash under every key of the ring (``IN (...)``), so rows hashed under
an older key are still found while a rotation runs.

A provider's message id (a Telegram id carries the chat id) is kept only as a keyed hash
(:func:`provider_hashes`): the inbox needs to tell a redelivery from a new message, which
equality of hashes does. A conversation's state (answers kept while a check-in is open, a
blood-pressure reading among them) is an ``EncryptedJSON`` column: the JSON text, sealed.

The ring is process-wide: the composition root (``bootstrap``), the CLI and the test
fixtures install it with :func:`use_keys`; the tables keep reading and writing plain ``str``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from bot.domain.errors import CheckinError

PREFIX = "enc1"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID_CHARS = 8  # hex
ENV_KEY = "CHECKIN_ENCRYPTION_KEY"
RELOAD_EVERY_S = 1.0
_ENCRYPT_INFO = b"mbc-checkin field encryption v1"
_HASH_INFO = b"mbc-checkin lookup hash v1"


class KeyProblem(CheckinError):
    """A key is missing, malformed, or does not open a stored value."""


class NoKey(KeyProblem):
    def __init__(self) -> None:
        super().__init__(
            "no encryption key is available: set CHECKIN_ENCRYPTION_KEY or [security] key_file "
            "(on SQLite, `checkin db upgrade` creates a key file beside the database)"
        )


@dataclass(frozen=True)
class Key:
    """One master key: its id, and the two subkeys derived from it."""

    key_id: str
    secret: bytes

    @property
    def line(self) -> str:
        """The key as written in a key file or ``CHECKIN_ENCRYPTION_KEY``: ``<id>:<base64url>``."""
        return f"{self.key_id}:{_b64(self.secret)}"

    def cipher(self) -> AESGCM:
        return AESGCM(_derive(self.secret, _ENCRYPT_INFO))

    def hash_key(self) -> bytes:
        return _derive(self.secret, _HASH_INFO)


def new_key() -> Key:
    """A fresh random key with a fresh random id."""
    return Key(secrets.token_hex(KEY_ID_CHARS // 2), secrets.token_bytes(KEY_BYTES))


def parse_keys(text: str, source: str) -> tuple[Key, ...]:
    """Keys from a key file or the environment: ``<id>:<base64url>`` entries separated by
    newlines or commas; ``#`` starts a comment. The last entry is the current key."""
    keys: list[Key] = []
    entries = [e.strip() for line in text.splitlines() for e in line.split("#", 1)[0].split(",")]
    for n, entry in enumerate((e for e in entries if e), 1):
        key_id, _, encoded = entry.partition(":")
        try:
            secret = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            secret = b""
        if not key_id.isalnum() or len(secret) != KEY_BYTES:
            raise KeyProblem(
                f"{source}: entry {n} is not a key (expected <id>:<32 bytes in base64url>; "
                "make one with `checkin keys generate`)"
            )
        keys.append(Key(key_id, secret))
    if not keys:
        raise KeyProblem(f"{source}: holds no key")
    return tuple(keys)


class KeyRing:
    """Every key that may have encrypted a stored value; the last one encrypts new values."""

    def __init__(self, keys: Iterable[Key]) -> None:
        self.keys = tuple(keys)
        if not self.keys:
            raise KeyProblem("a key ring needs at least one key")
        self._ciphers = {k.key_id: k.cipher() for k in self.keys}
        self._hash_keys = {k.key_id: k.hash_key() for k in self.keys}
        if len(self._ciphers) != len(self.keys):
            raise KeyProblem("two keys in the ring have the same id")
        # looked up once: every stored value written goes through `encrypt`, every address
        # looked up through `lookup_hashes` (the ring is never changed, only replaced)
        self._sealer = self._ciphers[self.current.key_id]
        self._prefix = f"{PREFIX}:{self.current.key_id}:"
        self._lookup_keys = [self._hash_keys[k.key_id] for k in reversed(self.keys)]

    @property
    def current(self) -> Key:
        return self.keys[-1]

    @property
    def prefix(self) -> str:
        """How every value encrypted under the current key starts."""
        return self._prefix

    def encrypt(self, label: str, plaintext: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._sealer.encrypt(nonce, plaintext.encode("utf-8"), label.encode("ascii"))
        return self._prefix + _b64(nonce + sealed)

    def decrypt(self, label: str, token: str) -> str:
        return self.open(label, *_split(token))

    def open(self, label: str, key_id: str, blob: bytes) -> str:
        """Decrypt a value already split (:func:`_split`) into its key id and sealed bytes."""
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise KeyProblem(
                f"a stored value is encrypted under key {key_id!r}, which is not in the key ring "
                "(add that key back to the key file or CHECKIN_ENCRYPTION_KEY)"
            )
        try:
            plain = cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], label.encode("ascii"))
        except InvalidTag:
            raise KeyProblem(
                f"a stored {label} value does not decrypt under key {key_id!r} (altered, or "
                "copied from another column)"
            ) from None
        return plain.decode("utf-8")

    def knows(self, token: str) -> bool:
        return _split(token)[0] in self._ciphers

    def lookup_hash(self, value: str) -> str:
        """The keyed hash stored beside a phone number or chat id (under the current key)."""
        return _hmac(self._hash_keys[self.current.key_id], value)

    def lookup_hashes(self, value: str) -> list[str]:
        """The value's hash under every key of the ring: what a lookup compares with."""
        return [_hmac(key, value) for key in self._lookup_keys]


def is_encrypted(value: str) -> bool:
    return value.startswith(PREFIX + ":")


def _split(token: str) -> tuple[str, bytes]:
    marker, key_id, encoded = [*token.split(":", 2), "", ""][:3]
    if marker != PREFIX or not key_id:
        raise KeyProblem("a stored value that should be encrypted is not (plaintext in the table)")
    try:
        blob = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        raise KeyProblem(f"a stored value under key {key_id!r} is damaged") from None
    if len(blob) < NONCE_BYTES + 16:
        raise KeyProblem(f"a stored value under key {key_id!r} is damaged (too short)")
    return key_id, blob


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    # (base64.urlsafe_b64encode's bytes, in two calls rather than four)
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def _hmac(key: bytes, value: str) -> str:
    # (hmac.new(...).hexdigest()'s value, in one call to OpenSSL rather than seven)
    return hmac.digest(key, value.encode("utf-8"), "sha256").hex()


# ---- the process-wide ring --------------------------------------------------------------


@dataclass
class _Installed:
    ring: KeyRing | None = None
    reload: Callable[[], KeyRing] | None = None
    checked_at: float = 0.0


_installed = _Installed()
_lock = threading.Lock()


def use_keys(ring: KeyRing | None, reload: Callable[[], KeyRing] | None = None) -> None:
    """Install the ring every encrypted column uses in this process.

    `reload` (a key file's reader) is called at most once a second, and at once when a
    value names a key the ring lacks, so a running service learns the key a concurrent
    ``checkin keys rotate`` added without a restart.
    """
    with _lock:
        _installed.ring, _installed.reload = ring, reload
        _installed.checked_at = time.monotonic()


def active_ring() -> KeyRing:
    """The installed ring (refreshed from its key file when due); NoKey if none."""
    installed = _installed
    if installed.reload is not None and time.monotonic() - installed.checked_at > RELOAD_EVERY_S:
        _refresh()
    if installed.ring is None:
        raise NoKey()
    return installed.ring


def installed_ring() -> KeyRing | None:
    """The installed ring, or None (for start-up checks)."""
    return _installed.ring


def _refresh() -> None:
    with _lock:
        if _installed.reload is not None:
            _installed.checked_at = time.monotonic()
            _installed.ring = _installed.reload()


def decrypt(label: str, token: str) -> str:
    ring = active_ring()
    key_id, blob = _split(token)  # (once: a value is read on every turn)
    if key_id not in ring._ciphers and _installed.reload is not None:
        _refresh()  # a rotation elsewhere may have added the key this value was sealed with
        ring = active_ring()
    return ring.open(label, key_id, blob)


def lookup_hashes(value: str) -> list[str]:
    """Hashes to look `value` up by (see :meth:`KeyRing.lookup_hashes`)."""
    return active_ring().lookup_hashes(value)


def lookup_hash(value: str | None) -> str | None:
    return None if value is None else active_ring().lookup_hash(value)


def provider_text(channel: str, provider_id: str) -> str:
    """What is hashed for a provider's message id; the prefix keeps these hashes apart from
    the hashes of numbers and chat ids."""
    return f"inbound:{channel}:{provider_id}"


def provider_hashes(channel: str, provider_id: str) -> list[str]:
    """The provider message id's keyed hash under every key of the ring, the current first:
    the first is stored, the others find a message recorded before a rotation."""
    return lookup_hashes(provider_text(channel, provider_id))


class EncryptedText(TypeDecorator[str]):
    """A text column stored encrypted; Python code sees the plain ``str``.

    `label` is the column's ``table.column`` name, bound to every value as associated
    data. Encrypted values cannot be compared in SQL: look rows up by their hash column.
    """

    impl = Text
    cache_ok = True

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return active_ring().encrypt(self.label, str(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return decrypt(self.label, value)


class EncryptedJSON(EncryptedText):
    """A JSON value (a dict or a list) stored as its encrypted JSON text.

    Rotation, key usage and the canary tests treat it as any ``EncryptedText`` column; it
    cannot be queried by its contents in SQL. Assign a new value to change it: a value
    changed in place is not noticed by the ORM.
    """

    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        return active_ring().encrypt(self.label, text)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return json.loads(decrypt(self.label, value))
