"""How many characters one message may carry on each channel, and how a list that does
not fit is cut into messages that do.

A provider refuses a message over its limit for good: Twilio answers HTTP 400, error
21617, for an SMS or WhatsApp ``Body`` over 1,600 characters, and 21658 for a template
whose body, variables filled in, is over WhatsApp's 1,024; Telegram answers 400 "message
is too long" over 4,096. Such a message is not retried, so a clinician's digest or list
that does not fit is a message lost, in a crisis storm exactly when it matters.

The numbers live here, in rendering, rather than in the channels: the use cases (alert
digests, the clinician's ALERTS and /patients answers) must size a message while they can
still split it (between alerts, each whole with its code), and they may not name a
concrete channel (tests/architecture.py); the WhatsApp channel reads the same template
numbers to fit what it sends. Lengths are Python characters, as the Twilio stand-in counts
them; clinicians' SMS are GSM-7 (bot/rendering/gsm7.py), where Twilio counts the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# the most one message's text may carry, by channel. Telegram counts after its HTML is
# parsed, so measuring ours with the tags is on the safe side; the console has no limit
# and takes Telegram's, so `checkin demo` shows what a Telegram clinician would get
MESSAGE_CHARS = {"sms": 1600, "whatsapp": 1600, "telegram": 4096, "console": 4096}
CAPTION_CHARS = {"telegram": 1024}  # a photo's caption (a trend chart's)
TEMPLATE_BODY_CHARS = 1024  # WhatsApp's limit for a template's body, its variables filled in
# room left in the alert template for its own words: ours are 60 characters (en) and 84
# (es); the rest is for an operator's rewording before approval
TEMPLATE_WORDS_CHARS = 200
# at most this many messages answer one command: more is better read in the web panel
# (five SMS of 1,600 characters are some 55 segments, and Telegram's one message a second
# per chat keeps a clinician waiting five seconds for the last)
MAX_PARTS = 5


def template_variable_chars(clinic_name: str) -> int:
    """How long the WhatsApp alert template's {{2}} may be: the body's limit less its own
    words and the clinic's name ({{1}})."""
    return TEMPLATE_BODY_CHARS - TEMPLATE_WORDS_CHARS - len(clinic_name)


def alert_chars(channel: str, clinic_name: str) -> int:
    """How long an alert message (a notice or a digest) may be on `channel`: on WhatsApp
    it travels in the alert template's variable, on one line (:func:`alert_length`)."""
    if channel == "whatsapp":
        return template_variable_chars(clinic_name)
    return MESSAGE_CHARS.get(channel, MESSAGE_CHARS["telegram"])


def alert_length(text: str, channel: str) -> int:
    """The length of an alert message as its channel sends it (WhatsApp: on one line)."""
    return len(one_line(text)) if channel == "whatsapp" else len(text)


def one_line(text: str) -> str:
    """`text` with every run of white space, newlines included, as one space."""
    return " ".join(text.split())


def runs(
    count: int, fits: Callable[[int, int], bool], cap: int, most: int | None = None
) -> list[tuple[int, int]]:
    """Items ``0..count`` cut into consecutive runs ``(start, end)``, in order, each as
    long as ``fits(start, end)`` allows and at most `cap` items; a run has at least one
    item even if that one alone does not fit (it is cut by :func:`cut`, never dropped).
    With `most`, only the first `most` runs (the rest are not measured)."""
    found: list[tuple[int, int]] = []
    start = 0
    while start < count and (most is None or len(found) < most):
        end = start + 1
        while end < count and end - start < cap and fits(start, end + 1):
            end += 1
        found.append((start, end))
        start = end
    return found


def cut(text: str, limit: int, html: bool = False) -> str:
    """`text` in at most `limit` characters: its words cut at a space, never its last line
    (an alert's ``Reply ACK CODE``). The last resort for a message that cannot be split,
    one alert whose words alone are too long (a display name of a thousand characters).
    `html` (Telegram's parse mode): never inside an entity or a tag. A name such as
    "Smith&Co" is ``Smith&amp;Co`` there, and a cut through ``&amp;`` left ``&am``, which
    Telegram refuses for good ("can't parse entities"): the alert would have reached
    nobody. An element cut between its tags would stay open; no clinician template puts
    a name, the only part long enough to be cut, inside one."""
    if len(text) <= limit:
        return text
    head, _, last = text.rpartition("\n")
    if not head or len(last) + len("…\n") >= limit:
        return _whole(text[: max(limit - 1, 0)], html) + "…"
    room = head[: limit - len(last) - len("…\n") + 1]
    kept = room.rsplit(" ", 1)[0] if " " in room else room[:-1]
    return f"{_whole(kept, html)}…\n{last}"


_PARTIAL = re.compile(r"&[#\w]*$|<[^>]*$")  # an entity or a tag the cut went through


def _whole(piece: str, html: bool) -> str:
    return _PARTIAL.sub("", piece) if html else piece
