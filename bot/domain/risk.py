"""Risk language in what a patient writes, and typed endorsements at a safety item. Pure.

Two questions, each answered from phrase tables that are data (one table per language,
below), never from the wording of a questionnaire:

* :func:`mentions_risk`: does a message speak of suicide, self-harm or a wish to die?
  Asked of every typed message, whatever is going on (a check-in open or not, another
  instrument, an opted-out patient). Every language's table is tried on every message:
  a patient who set Spanish may still write in English, and the reverse.
* :func:`endorses`: does a reply to a safety item that is not one of its values still say
  "yes" ("sí", "every day", "todos los días", "sometimes", ...)?

How a message is compared: case, accents, punctuation and apostrophes are dropped
("Don't" -> "dont", "Sí" -> "si"), letters typed twice count once ("killl", "kil" and
"kill" are one word), and a word of six letters or more may be off by one letter (added,
dropped, changed or two swapped: "suicde", "sucide", "suiside") as long as its last two
letters agree, so "matarme" (kill myself) never passes for "matarte" (kill you).

Negation (the choice, argued in docs/ALERTS.md): a phrase that *names* suicide or
self-harm ("suicide", "kill myself", "matarme", "quitarme la vida") counts even when
negated or about someone else: "I'm not suicidal" is still worth a clinician's look, and
a clinician would rather be told. A phrase that states a *wish* ("want to die", "quiero
morir") does not count when a listed negation of it covers it ("I don't want to die",
"no quiero morir"): that sentence says the opposite. Anything else with the wish in it
still counts ("I don't really want to die" is not a listed negation).

Figures of speech are left alone: "this headache is killing me", "me mata el dolor",
"I'm dying to see you", "me muero de risa" name no phrase below. A matcher cannot read
intent; it is a net under the questionnaire, not a clinician reading messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from bot.domain import events as ev
from bot.domain.alerts import SUICIDALITY_FLAG
from bot.domain.instruments import Item
from bot.domain.parsing import normalize

Words = tuple[str, ...]

# Phrases that name suicide or self-harm: they count even when negated.
NAMED: Mapping[str, tuple[str, ...]] = {
    "en": (
        "suicide", "suicidal", "suicidality",
        "kill myself", "killing myself", "kill my self", "killing my self",
        "end my life", "ending my life", "end my own life", "end it all",
        "take my life", "take my own life", "taking my life", "taking my own life",
        "hang myself", "hanging myself", "shoot myself", "jump off a bridge",
        "hurt myself", "hurting myself", "harm myself", "harming myself",
        "self harm", "selfharm", "cut myself", "cutting myself", "overdose",
        "unalive", "unalive myself", "slit my wrists", "take all my pills",
        "took all my pills", "taking all my pills",
    ),
    "es": (
        "suicidio", "suicida", "suicidarme", "suicidarse", "suicidandome",
        "matarme", "me voy a matar", "me quiero matar",
        "quitarme la vida", "quitarme mi vida", "me voy a quitar la vida",
        "me quiero quitar la vida",
        "acabar con mi vida", "terminar con mi vida",
        "hacerme dano", "autolesion", "autolesionarme", "cortarme las venas",
        "sobredosis", "ahorcarme", "tirarme de un puente",
    ),
}  # fmt: skip

# Phrases that state a wish to die or not to live: they do not count inside a negation.
WISHES: Mapping[str, tuple[str, ...]] = {
    "en": (
        "want to die", "wanna die", "want to be dead", "wish i was dead",
        "wish i were dead", "wish i was never born", "better off dead",
        "better off without me", "dont want to live", "do not want to live",
        "dont want to be alive", "do not want to be alive", "dont want to wake up",
        "no reason to live", "nothing to live for", "not worth living",
    ),
    "es": (
        "quiero morir", "quiero morirme", "me quiero morir", "ganas de morir",
        "ganas de morirme", "deseo morir", "deseo morirme", "quisiera morir",
        "quisiera morirme", "no quiero vivir", "no quiero seguir viviendo",
        "no quiero seguir vivo", "no quiero seguir viva", "mejor muerto", "mejor muerta",
        "prefiero estar muerto", "prefiero estar muerta", "no vale la pena vivir",
        "no tengo razones para vivir", "no tengo por que vivir", "quiero desaparecer",
        "no quiero despertar", "sin ganas de vivir", "no tengo ganas de vivir",
    ),
}  # fmt: skip

# Clear negations of a wish: a wish inside one of these does not count.
NEGATIONS: Mapping[str, tuple[str, ...]] = {
    "en": (
        "dont want to die", "do not want to die", "dont wanna die", "never want to die",
        "not want to die", "didnt want to die", "dont want to be dead",
        "do not want to be dead",
    ),
    "es": (
        "no quiero morir", "no quiero morirme", "no me quiero morir", "nunca quiero morir",
        "no tengo ganas de morir", "no tengo ganas de morirme", "no deseo morir",
    ),
}  # fmt: skip

# At a safety item only: a reply that is not a value but says "yes, at least sometimes".
ENDORSEMENTS: Mapping[str, tuple[str, ...]] = {
    "en": (
        "yes", "yeah", "yea", "yep", "yup",
        "sometimes", "some times", "some days", "a few days", "a few times", "often",
        "most days", "every day", "everyday", "daily", "all the time", "always",
        "constantly", "lately", "recently", "a little", "a bit", "kind of", "kinda",
        "sort of", "maybe", "i think so", "occasionally", "once", "twice",
        "now and then", "on and off",
    ),
    "es": (
        "si", "claro", "a veces", "algunas veces", "algunos dias", "varios dias",
        "muchas veces", "a menudo", "seguido", "todos los dias", "todo el tiempo",
        "siempre", "diario", "a diario", "casi siempre", "un poco", "tal vez", "quizas",
        "quiza", "puede ser", "de vez en cuando", "ultimamente", "una vez", "creo que si",
    ),
}  # fmt: skip

# ... unless a listed denial covers it: "not once" says never.
DENIALS: Mapping[str, tuple[str, ...]] = {
    "en": ("not once", "not even once", "not a bit", "not a little", "not lately",
           "not recently"),
    "es": ("ni una vez", "ni un poco", "no ultimamente"),
}  # fmt: skip

# Listed words that may be off by one letter: the ones people misspell that no everyday
# word is one letter away from ("viviendo" is not here: "viniendo" is one letter off).
FUZZY = frozenset(
    {
        "suicide", "suicidal", "myself", "overdose", "selfharm",
        "suicidio", "suicida", "suicidarme", "suicidarse", "matarme", "quitarme",
        "autolesion", "autolesionarme", "sobredosis",
    }
)  # fmt: skip
_APOSTROPHES = re.compile("['’‘`´]")
_NOT_WORD = re.compile(r"[^0-9a-z]+")
_DOUBLED = re.compile(r"(.)\1+")


def words(text: str) -> Words:
    """The message as comparable words: normalized, apostrophes dropped, other punctuation
    a space, letters typed twice or more counted once."""
    flat = _NOT_WORD.sub(" ", _APOSTROPHES.sub("", normalize(text)))
    return tuple(_DOUBLED.sub(r"\1", w) for w in flat.split())


Index = Mapping[str, tuple[Words, ...]]  # phrases by their first word


def _index(table: Mapping[str, Iterable[str]]) -> Index:
    by_first: dict[str, list[Words]] = {}
    for phrases in table.values():
        for phrase in phrases:
            listed = words(phrase)
            by_first.setdefault(listed[0], []).append(listed)
    return {first: tuple(group) for first, group in by_first.items()}


# compared as words, prepared once: every message is checked against them
_FUZZY = frozenset(w for listed in FUZZY for w in words(listed))
_NAMED, _WISHES, _NEGATIONS = _index(NAMED), _index(WISHES), _index(NEGATIONS)
_ENDORSEMENTS, _DENIALS = _index(ENDORSEMENTS), _index(DENIALS)


def mentions_risk(text: str) -> bool:
    """True when `text` names suicide or self-harm, or states a wish to die that no
    listed negation covers."""
    said = words(text)
    if _found(said, _NAMED):
        return True
    negated = _spans(said, _NEGATIONS)
    return any(not _covered(span, negated) for span in _spans(said, _WISHES))


def endorses(text: str) -> bool:
    """True when a reply to a safety item says yes, or how often, in words, outside any
    listed denial."""
    said = words(text)
    denied = _spans(said, _DENIALS)
    return any(not _covered(span, denied) for span in _spans(said, _ENDORSEMENTS))


def endorsed_in_words(item: Item, text: str) -> bool:
    """A reply to a suicidality safety item that says yes in words or speaks of risk."""
    suicidality = item.safety and item.crisis == SUICIDALITY_FLAG
    return suicidality and (endorses(text) or mentions_risk(text))


def risk_reply(
    text: str, now: datetime, item: str | None, intents: Sequence[ev.Intent]
) -> tuple[tuple[ev.Intent, ...], tuple[ev.Event, ...]]:
    """`intents` (the reply already decided) and no event, or for a message with risk
    language: crisis resources first (unless `intents` hold them), a question re-asked
    without "I didn't understand", and the ``RiskLanguage`` event."""
    if not mentions_risk(text):
        return tuple(intents), ()
    sent = any(isinstance(i, ev.CrisisResources) for i in intents)
    crisis = () if sent else (ev.CrisisResources(SUICIDALITY_FLAG, item or ""),)
    return (*crisis, *(_gently(i) for i in intents)), (ev.RiskLanguage(now, item),)


def _gently(intent: ev.Intent) -> ev.Intent:
    if isinstance(intent, ev.Ask) and intent.problem and intent.problem.reason == "unrecognised":
        return replace(intent, problem=replace(intent.problem, reason="how_often"))
    return intent


# ---- matching ------------------------------------------------------------------------------


def _found(said: Words, phrases: Index) -> bool:
    return bool(_spans(said, phrases))


def _spans(said: Words, phrases: Index) -> list[tuple[int, int]]:
    """(start, end) of every place a phrase occurs in `said`, word for word."""
    spans = []
    for start, word in enumerate(said):
        firsts = [f for f in _FUZZY if f in phrases and f != word and _same(word, f)]
        for first in [word, *firsts] if word in phrases else firsts:
            for phrase in phrases[first]:
                end = start + len(phrase)
                rest = zip(said[start + 1 : end], phrase[1:], strict=False)
                if end <= len(said) and all(_same(a, b) for a, b in rest):
                    spans.append((start, end))
    return spans


def _covered(span: tuple[int, int], by: Sequence[tuple[int, int]]) -> bool:
    return any(s <= span[0] and span[1] <= e for s, e in by)


def _same(said: str, listed: str) -> bool:
    if said == listed:
        return True
    if abs(len(said) - len(listed)) > 1:
        return False
    # the Spanish "-me" (myself) must stay: "matarte" (kill you) is not "matarme"
    ending = said[-1] == listed[-1] and (said.endswith("me") or not listed.endswith("me"))
    return listed in _FUZZY and ending and _one_edit(said, listed)


def _one_edit(a: str, b: str) -> bool:
    """At most one letter added, dropped, changed, or two neighbours swapped."""
    if abs(len(a) - len(b)) > 1:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        swapped = a[i : i + 2] == b[i : i + 2][::-1] and a[i + 2 :] == b[i + 2 :]
        return a[i + 1 :] == b[i + 1 :] or swapped
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return longer[i + 1 :] == shorter[i:]
