"""A reply that comes after its check-in expired. Pure.

Expiry closes a check-in and scores what was answered; a reply after that normally gets
"no check-in is open". One kind is not let go: the reply to the *safety item* the check-in
was asking when it expired (``Conversation.last_asked``). A value that raises the item's
flag (PHQ-9 item 9 >= 1, a red-flag symptom), or a typed "yes" to a suicidality item, is
not stored as an answer (the check-in stays closed and its score stands) but gets the
item's crisis resources at once (where the item has them) and an event the alert rules
read (``LateAnswer``, ``SafetyEndorsed``). Risk language in it counts as in any message.
"""

from __future__ import annotations

from datetime import datetime

from bot.domain import events as ev
from bot.domain.conversation import Conversation, Setting, Transition
from bot.domain.parsing import Answer, Invalid, parse_reply
from bot.domain.risk import endorsed_in_words, risk_reply


def late_reply(conv: Conversation, text: str, setting: Setting, now: datetime) -> Transition | None:
    """Crisis resources and the event for a late reply that matters; None for any other
    reply (the caller answers it as a message with nothing open)."""
    if conv.status != "expired" or conv.last_asked is None:
        return None
    instrument = setting.instruments[conv.last_asked.split(".", 1)[0]]
    item = instrument.item(conv.last_asked)
    if not item.safety:
        return None
    parsed = parse_reply(item, text, setting.language)
    event: ev.Event
    if isinstance(parsed, Answer) and any(f.fires(parsed.value) for f in item.flags):
        event = ev.LateAnswer(item.key, instrument.key, parsed.value, now)
    elif isinstance(parsed, Invalid) and endorsed_in_words(item, text):
        event = ev.SafetyEndorsed(item.key, instrument.key, now)
    else:
        return None
    crisis: tuple[ev.Intent, ...] = (
        (ev.CrisisResources(item.crisis, item.key),) if item.crisis else ()
    )
    _, risk = risk_reply(text, now, None, crisis)
    return Transition(conv, crisis, (event, *risk))
