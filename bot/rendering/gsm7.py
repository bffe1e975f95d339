"""GSM-7, the SMS alphabet: which characters fit, how many segments a text costs, and a
transliteration of the few common characters that would otherwise switch a message to
UCS-2 (70 characters a segment instead of 160).

GSM 03.38 basic set plus its extension table (extension characters cost two septets).
"""

from __future__ import annotations

BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
EXTENSION = "^{}\\[~]|€\f"
_BASIC = frozenset(BASIC)
_EXTENSION = frozenset(EXTENSION)

# Readable replacements for characters outside GSM-7 that patients' messages commonly need.
_REPLACE = str.maketrans(
    {
        "—": "-", "–": "-", "‑": "-", "’": "'", "‘": "'", "“": '"', "”": '"', "…": "...",
        "á": "a", "í": "i", "ó": "o", "ú": "u", "Á": "A", "Í": "I", "Ó": "O", "Ú": "U",
        "â": "a", "ê": "e", "î": "i", "ô": "o", "û": "u", "ç": "c", "ï": "i", "ë": "e",
        "\u00a0": " ", "•": "-", "·": "-", "→": "->",
    }
)  # fmt: skip


def to_gsm7(text: str) -> str:
    """Replace common non-GSM characters with readable GSM-7 ones; others are left as is."""
    return text.translate(_REPLACE)


def is_gsm7(text: str) -> bool:
    return all(c in _BASIC or c in _EXTENSION for c in text)


def non_gsm7(text: str) -> set[str]:
    return {c for c in text if c not in _BASIC and c not in _EXTENSION}


def septets(text: str) -> int:
    return sum(2 if c in _EXTENSION else 1 for c in text)


def segments(text: str) -> int:
    """SMS segments: GSM-7 160 septets single / 153 per part; UCS-2 70 / 67 (UTF-16 units).

    A character is never split across parts: a two-septet GSM character (``€``) or a
    surrogate pair (an emoji) that would straddle a boundary starts the next part.
    """
    if is_gsm7(text):
        costs = [2 if c in _EXTENSION else 1 for c in text]
        single, part = 160, 153
    else:
        costs = [len(c.encode("utf-16-le")) // 2 for c in text]
        single, part = 70, 67
    if sum(costs) <= single:
        return 1
    count, used = 1, 0
    for cost in costs:
        if used + cost > part:
            count, used = count + 1, 0
        used += cost
    return count
