"""One encryption key for a benchmark run: in the environment (the `checkin` processes a
bench starts inherit it) and installed in this process. Throwaway, like the databases."""

from __future__ import annotations

import os

from bot.storage.crypto import ENV_KEY, KeyRing, new_key, parse_keys, use_keys


def ensure_key() -> KeyRing:
    os.environ.setdefault(ENV_KEY, new_key().line)
    ring = KeyRing(parse_keys(os.environ[ENV_KEY], ENV_KEY))
    use_keys(ring)
    return ring
