"""Reading a patient's reply to one item. Pure, total: any string in, a value out.

Accepted for a choice item: digits ("2"), keycap emoji ("2️⃣"), number words ("two",
"dos"), option labels and their unambiguous prefixes of three letters or more ("more
than half", "nearly"), an option's listed synonyms ("none", "never", "y"), a digit with its
label ("2 - More than half the days"), all with stray whitespace and punctuation ignored.
A range or choice of numbers ("0-1", "1 or 2") is never narrowed to one: it is ambiguous.
Commands (BACK, SKIP, PAUSE / LATER, STOP, START, HELP and their carrier synonyms) win
over answers. Anything else is an :class:`Invalid` carrying a reason code; templates turn
the code into words.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from bot.domain.instruments import DEFAULT_LANGUAGE, AnswerValue, BloodPressure, Item, Option

CommandName = Literal["back", "skip", "pause", "stop", "start", "help"]
InvalidReason = Literal[
    "empty", "out_of_range", "not_whole", "ambiguous", "unrecognised", "implausible",
    "how_often",  # a safety item endorsed in words: which option (bot/domain/risk.py)
]  # fmt: skip

MAX_REPLY_CHARS = 200
MIN_PREFIX = (
    3  # a label's start must be this long to count ("sev", "nea"); exact words always count
)

# English keywords work in every language: carriers and patients use them everywhere.
_COMMANDS: dict[str, dict[str, CommandName]] = {
    "en": {
        "back": "back", "previous": "back", "undo": "back",
        "skip": "skip", "pass": "skip",
        "pause": "pause", "later": "pause", "not now": "pause",
        # The carrier opt-out and opt-in keyword sets (CTIA; Twilio's defaults).
        "stop": "stop", "stopall": "stop", "unsubscribe": "stop", "cancel": "stop",
        "end": "stop", "quit": "stop", "revoke": "stop", "optout": "stop", "opt out": "stop",
        "start": "start", "unstop": "start",
        "help": "help", "info": "help", "?": "help",
    },
    "es": {
        "atras": "back", "volver": "back", "anterior": "back",
        "saltar": "skip", "omitir": "skip",
        "pausa": "pause", "luego": "pause", "despues": "pause", "mas tarde": "pause",
        "parar": "stop", "baja": "stop",
        "empezar": "start", "reanudar": "start",
        "ayuda": "help",
    },
}  # fmt: skip

_NUMBER_WORDS: dict[str, dict[str, int]] = {
    "en": {
        "zero": 0, "nil": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
        "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    },
    "es": {
        "cero": 0, "uno": 1, "una": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5,
        "seis": 6, "siete": 7, "ocho": 8, "nueve": 9, "diez": 10,
    },
}  # fmt: skip

_KEYCAP = re.compile("[\ufe0f\u20e3]")
_EDGE = " \t\r\n.,!¡?¿;:'\"`()[]{}<>*_~"
_INT = re.compile(r"^[+-]?\d+$")
_DECIMAL = re.compile(r"^[+-]?\d*[.,]\d+$")
_DIGIT_LABEL = re.compile(r"^(\d+)\s*[-–—.:)=]\s*(\S.*)$")
_BP = re.compile(r"^(\d{2,3})\s*(?:/|over|sobre|x|-)\s*(\d{2,3})(?:\s*mm\s*hg)?$")


@dataclass(frozen=True)
class Answer:
    value: AnswerValue


@dataclass(frozen=True)
class Command:
    name: CommandName


@dataclass(frozen=True)
class Invalid:
    reason: InvalidReason
    detail: str = ""
    candidates: tuple[int, ...] = ()


Parsed = Answer | Command | Invalid


def normalize(text: str) -> str:
    """Case-folded, accent-free, single-spaced, without edge punctuation or keycaps."""
    text = unicodedata.normalize("NFKC", text).replace("🔟", "10")
    text = _KEYCAP.sub("", text)
    decomposed = unicodedata.normalize("NFD", text.casefold())
    text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(text.split()).strip(_EDGE).strip()


def parse_command(text: str, language: str = DEFAULT_LANGUAGE) -> Command | None:
    word = normalize(text).lstrip("/") or text.strip()
    for lang in (language, DEFAULT_LANGUAGE):
        name = _COMMANDS.get(lang, {}).get(word)
        if name is not None:
            return Command(name)
    return None


def parse_reply(item: Item, text: str, language: str = DEFAULT_LANGUAGE) -> Parsed:
    """Interpret `text` as a reply to `item`. Never raises."""
    if not text or not text.strip():
        return Invalid("empty")
    if len(text) > MAX_REPLY_CHARS:
        return Invalid("unrecognised", "too long")
    command = parse_command(text, language)
    if command is not None:
        return command
    cleaned = normalize(text)
    if not cleaned:
        return Invalid("unrecognised")
    if item.kind == "blood_pressure":
        return _blood_pressure(cleaned)
    return _choice(item, cleaned, language)


def _choice(item: Item, cleaned: str, language: str) -> Parsed:
    if _INT.match(cleaned):
        return _by_value(item, int(cleaned), cleaned)
    if _DECIMAL.match(cleaned):
        return Invalid("not_whole", cleaned, item.values)
    number = _number_word(cleaned, language)
    if number is not None:
        return _by_value(item, number, cleaned)
    with_label = _DIGIT_LABEL.match(cleaned)
    if with_label:
        return _digit_and_label(item, cleaned, with_label.group(1), with_label.group(2), language)
    return _by_words(item, cleaned, language)


def _by_value(item: Item, value: int, shown: str) -> Parsed:
    if item.option(value) is None:
        return Invalid("out_of_range", shown, item.values)
    return Answer(value)


def _number_word(cleaned: str, language: str) -> int | None:
    for lang in (language, DEFAULT_LANGUAGE):
        if cleaned in _NUMBER_WORDS.get(lang, {}):
            return _NUMBER_WORDS[lang][cleaned]
    return None


def _digit_and_label(item: Item, cleaned: str, digits: str, label: str, language: str) -> Parsed:
    value = int(digits)
    words = [_number_word(w, language) for w in label.split()]
    if re.search(r"\d", label) or any(n is not None for n in words):
        # "0-1", "1 or 2", "0 - one": a range or a choice is never narrowed to one number.
        numbers = [int(n) for n in re.findall(r"\d+", cleaned)] + [
            n for n in words if n is not None
        ]
        candidates = tuple(sorted({n for n in numbers if item.option(n) is not None}))
        return Invalid("ambiguous", cleaned, candidates or item.values)
    by_words = _by_words(item, label, language)
    if isinstance(by_words, Answer) and isinstance(by_words.value, int) and by_words.value != value:
        return Invalid("ambiguous", f"{value} and {label}", (value, by_words.value))
    return _by_value(item, value, str(value))


def _phrases(option: Option, language: str) -> set[str]:
    langs = {language, DEFAULT_LANGUAGE}
    phrases = {normalize(option.label.get(lang)) for lang in langs}
    for lang in langs:
        phrases.update(normalize(s) for s in option.synonyms.get(lang, ()))
    return {p for p in phrases if p}


def _by_words(item: Item, cleaned: str, language: str) -> Parsed:
    phrases = {o.value: _phrases(o, language) for o in item.options}
    exact = sorted(v for v, words in phrases.items() if cleaned in words)
    if len(exact) == 1:
        return Answer(exact[0])
    if len(exact) > 1:
        return Invalid("ambiguous", cleaned, tuple(exact))
    if len(cleaned) < MIN_PREFIX:
        return Invalid("unrecognised", cleaned, item.values)  # "a", "s": too little to be sure
    prefixed = sorted(
        v for v, words in phrases.items() if any(w.startswith(cleaned) for w in words)
    )
    if len(prefixed) == 1:
        return Answer(prefixed[0])
    if len(prefixed) > 1:
        return Invalid("ambiguous", cleaned, tuple(prefixed))
    numbers = {int(n) for n in re.findall(r"\d+", cleaned)}
    if len(numbers) > 1:
        valid = tuple(sorted(n for n in numbers if item.option(n) is not None))
        return Invalid("ambiguous", cleaned, valid or item.values)
    return Invalid("unrecognised", cleaned, item.values)


def _blood_pressure(cleaned: str) -> Parsed:
    match = _BP.match(cleaned)
    if not match:
        return Invalid("unrecognised", cleaned)
    systolic, diastolic = int(match.group(1)), int(match.group(2))
    plausible = 60 <= systolic <= 300 and 30 <= diastolic <= 200 and systolic > diastolic
    if not plausible:
        return Invalid("implausible", f"{systolic}/{diastolic}")
    return Answer(BloodPressure(systolic, diastolic))
