"""Risk language and typed endorsements, in the pure core: the matcher's tables (what
must trigger, what must not), the conversation at a safety item and outside a check-in,
a late answer after expiry, and the alert triggers with their protection."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain import events as ev
from bot.domain.alerts import (
    CLINICIAN_CLOSES,
    DEFAULT_RULES,
    SYSTEM,
    AlertResolutionRefused,
    clinician,
    on_endorsed,
    on_late_answer,
    on_risk_language,
    raise_or_update,
    resolve,
    rules_from_mapping,
)
from bot.domain.conversation import Conversation, Setting, begin, expire, outside, step
from bot.domain.errors import ConfigError
from bot.domain.late import late_reply
from bot.domain.risk import endorses, mentions_risk, words
from bot.instruments import Catalog

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)

# ---- the matcher -------------------------------------------------------------------------

RISK = [
    # English, as written
    "I want to die", "i just want to die", "I wanna die", "I'm going to kill myself",
    "thinking about suicide", "feeling suicidal today", "I want to end my life",
    "I might take my own life", "I keep wanting to hurt myself", "self-harm again",
    "I'd be better off dead", "I don't want to live anymore", "nothing to live for",
    "I took an overdose",
    # case, punctuation, apostrophes, emphasis
    "KILL MYSELF!!!", "want...to...die", "I don’t want to live", "kill   myself",
    # misspellings
    "suicde", "sucide", "suiside", "sucidal thoughts", "kil myself", "killl myself",
    "kill myslef", "i want to diee",
    # Spanish, with and without accents
    "quiero morir", "Quiero morirme", "me quiero morir", "no quiero vivir",
    "no quiero seguir viviendo", "quitarme la vida", "voy a quitarme la vida",
    "pienso en matarme", "me voy a matar", "pensamientos de suicidio", "estoy suicida",
    "tengo ganas de morirme", "estaría mejor muerta", "quiero hacerme daño",
    "QUIERO MORIR", "quiero morír", "suicidarme", "sucidarme",
    # a wish not covered by a listed negation still counts
    "I don't really want to die but", "no, no quiero vivir",
    "I don't want to die but I don't want to live either",
    # naming suicide counts even negated or about someone else (documented choice)
    "I'm not suicidal", "I would never kill myself", "no pienso en el suicidio",
    "my friend died by suicide",
    # item 9's own words, accident or not: the matcher cannot tell (documented)
    "I hurt myself at the gym",
    # found in review: pills, the online euphemism, Spanish phrasings around "vivir"/"vida"
    "I took all my pills", "thinking of taking all my pills", "I want to unalive myself",
    "me voy a quitar la vida", "me quiero quitar la vida", "sin ganas de vivir",
    "no tengo ganas de vivir",
]  # fmt: skip

NOT_RISK = [
    # figures of speech: a judgement call, see docs/ALERTS.md
    "this headache is killing me", "my back is killing me", "I'm dying to see you",
    "I'd die for a coffee", "me muero de risa", "me mata el dolor de cabeza",
    "me muero de ganas de verte", "mi mamá me mataría", "tengo que acabar con todo el trabajo",
    # clear negations of a wish
    "I don't want to die", "I do not want to die", "I never want to die",
    "no quiero morir", "No me quiero morir", "no tengo ganas de morirme",
    # near misses that are other words
    "voy a matarte", "no quiero seguir viniendo a las sesiones", "I want to dye my hair",
    "I died laughing", "my phone died", "the plant is dead", "decide", "side effects",
    # ordinary replies
    "", "2", "yes", "every day", "a veces", "help", "STOP", "tengo ganas de vivir",
]  # fmt: skip


@pytest.mark.parametrize("text", RISK)
def test_risk_language_is_recognised(text: str) -> None:
    """Each of these speaks of suicide, self-harm or a wish to die."""
    assert mentions_risk(text)


@pytest.mark.parametrize("text", NOT_RISK)
def test_what_is_not_risk_language(text: str) -> None:
    """Figures of speech, clear negations of a wish and near misses do not trigger."""
    assert not mentions_risk(text)


ENDORSING = [
    "yes", "Yes.", "yeah", "yep", "sometimes", "every day", "everyday", "all the time",
    "maybe", "a little", "yes, sometimes", "not every day", "once last week",
    "sí", "Si", "todos los días", "todos los dias", "a veces", "de vez en cuando",
    "un poco", "siempre", "creo que sí",
]  # fmt: skip
NOT_ENDORSING = [
    "", "what?", "I don't know", "not sure", "hmm", "not once", "ni una vez", "no se",
    "next question", "banana",
]  # fmt: skip


@pytest.mark.parametrize("text", ENDORSING)
def test_endorsements_in_words(text: str) -> None:
    """Each of these says yes, or how often, without being an option's value."""
    assert endorses(text)


@pytest.mark.parametrize("text", NOT_ENDORSING)
def test_what_is_not_an_endorsement(text: str) -> None:
    """Questions, doubt and denials are not endorsements."""
    assert not endorses(text)


def test_words_are_normalized_for_comparison() -> None:
    """Case, accents, apostrophes and punctuation go; doubled letters count once."""
    assert words("Don’t KILLL  myself!!") == ("dont", "kil", "myself")
    assert words("¿Sí? Quitarme-la-vida") == ("si", "quitarme", "la", "vida")


# ---- the conversation ----------------------------------------------------------------------


def at_item(catalog: Catalog, key: str, language: str = "en") -> tuple[Conversation, Setting]:
    """A check-in of `key`'s instrument with every item before it answered 1."""
    setting = Setting({i.key: i for i in catalog}, language)
    instrument = key.split(".", 1)[0]
    conv = begin(Conversation((instrument,)), setting, T0).state
    while conv.current != key:
        conv = step(conv, "1", setting, T0).state
    return conv, setting


@pytest.mark.parametrize("reply", ["yes", "everyday", "sometimes", "I want to die", "sí"])
def test_a_safety_item_endorsed_in_words(catalog: Catalog, reply: str) -> None:
    """At PHQ-9 item 9, a typed yes brings crisis resources and the crisis alert's event,
    then the same item again for its value; nothing is recorded as an answer."""
    conv, setting = at_item(catalog, "phq9.q9")
    t = step(conv, reply, setting, T0)
    assert type(t.intents[0]) is ev.CrisisResources and t.intents[0].flag == "suicidality"
    (ask,) = [i for i in t.intents if isinstance(i, ev.Ask)]
    assert ask.item == "phq9.q9" and ask.problem is not None
    assert ask.problem.reason == "how_often"
    assert ev.SafetyEndorsed("phq9.q9", "phq9", T0) in t.events
    assert not [e for e in t.events if isinstance(e, ev.AnswerRecorded)]
    assert t.state.current == "phq9.q9" and "suicidality" in t.state.crisis_sent


def test_the_qids_safety_item_is_endorsed_in_words_too(full_catalog: Catalog) -> None:
    """QIDS-SR16 item 12 is treated as PHQ-9 item 9."""
    conv, setting = at_item(full_catalog, "qids_sr16.q12")
    t = step(conv, "yes", setting, T0)
    assert ev.SafetyEndorsed("qids_sr16.q12", "qids_sr16", T0) in t.events
    assert isinstance(t.intents[0], ev.CrisisResources)


def test_a_yes_at_an_ordinary_item_is_only_re_asked(catalog: Catalog) -> None:
    """Item 3 is not a safety item: "yes" there is an unclear reply, nothing more."""
    conv, setting = at_item(catalog, "phq9.q3")
    t = step(conv, "yes", setting, T0)
    assert [type(i) for i in t.intents] == [ev.Ask] and t.events == ()


def test_then_the_value_moves_on_without_a_second_crisis_message(catalog: Catalog) -> None:
    """After the typed yes, the value is taken; crisis resources went once this check-in."""
    conv, setting = at_item(catalog, "phq9.q9")
    conv = step(conv, "yes", setting, T0).state
    t = step(conv, "2", setting, T0)
    assert not [i for i in t.intents if isinstance(i, ev.CrisisResources)]
    assert t.state.answers["phq9.q9"] == 2


def test_risk_language_at_an_ordinary_item(catalog: Catalog) -> None:
    """Risk language during another item: crisis resources first, the event with the item,
    and the item re-asked as for any unclear reply."""
    conv, setting = at_item(catalog, "phq9.q3", language="es")
    t = step(conv, "no quiero vivir", setting, T0)
    assert isinstance(t.intents[0], ev.CrisisResources)
    assert [i.item for i in t.intents if isinstance(i, ev.Ask)] == ["phq9.q3"]
    assert t.events == (ev.RiskLanguage(T0, "phq9.q3"),)


def test_risk_language_with_a_valid_answer_keeps_the_answer(catalog: Catalog) -> None:
    """A value with risk words beside it is taken, and the words still count."""
    conv, setting = at_item(catalog, "phq9.q2")
    t = step(conv, "3 - I want to die", setting, T0)
    assert t.state.answers["phq9.q2"] == 3 and isinstance(t.intents[0], ev.CrisisResources)
    assert ev.RiskLanguage(T0, "phq9.q2") in t.events


def test_a_paused_check_in_resumes_on_a_typed_yes_at_item_9(catalog: Catalog) -> None:
    """PAUSE at item 9, then "yes": resumed, crisis resources, item 9 again."""
    conv, setting = at_item(catalog, "phq9.q9")
    conv = step(conv, "pause", setting, T0).state
    t = step(conv, "yes", setting, T0)
    assert t.state.status == "asking" and isinstance(t.events[0], ev.CheckinResumed)
    assert isinstance(t.intents[0], ev.CrisisResources)


@pytest.mark.parametrize("opted_out", [False, True])
@pytest.mark.parametrize("text", ["I want to kill myself", "quiero quitarme la vida"])
def test_risk_language_with_no_check_in_open(text: str, opted_out: bool) -> None:
    """No check-in open, opted out or not: crisis resources and the event, in one reply."""
    intents, events = outside(text, "en", opted_out, T0)
    assert intents == (ev.CrisisResources("suicidality", ""),)
    assert events == (ev.RiskLanguage(T0),)


# ---- a late answer -------------------------------------------------------------------------


def expired_at(catalog: Catalog, key: str) -> tuple[Conversation, Setting]:
    conv, setting = at_item(catalog, key)
    return expire(conv, setting, T0 + timedelta(days=2)).state, setting


def test_expiry_remembers_the_item_it_was_asking(catalog: Catalog) -> None:
    """last_asked survives storage; `current` is cleared as before."""
    conv, _ = expired_at(catalog, "phq9.q9")
    assert (conv.status, conv.current, conv.last_asked) == ("expired", None, "phq9.q9")


@pytest.mark.parametrize(
    ("reply", "event"),
    [
        ("2", ev.LateAnswer("phq9.q9", "phq9", 2, T0)),
        ("Several days", ev.LateAnswer("phq9.q9", "phq9", 1, T0)),
        ("yes", ev.SafetyEndorsed("phq9.q9", "phq9", T0)),
    ],
)
def test_a_late_answer_at_the_threshold_is_not_lost(
    catalog: Catalog, reply: str, event: ev.Event
) -> None:
    """After expiry at item 9, a value that raises the flag, or a typed yes, gets crisis
    resources and the event; the check-in stays closed."""
    conv, setting = expired_at(catalog, "phq9.q9")
    t = late_reply(conv, reply, setting, T0)
    assert t is not None and t.state == conv
    assert t.intents == (ev.CrisisResources("suicidality", "phq9.q9"),)
    assert t.events == (event,)


@pytest.mark.parametrize("reply", ["0", "no", "hello", "7"])
def test_a_late_reply_below_the_threshold_is_left_to_the_usual_answer(
    catalog: Catalog, reply: str
) -> None:
    """ "0", words, or an out-of-range number: not a late safety answer (None)."""
    conv, setting = expired_at(catalog, "phq9.q9")
    assert late_reply(conv, reply, setting, T0) is None


def test_a_late_reply_to_an_ordinary_item_is_not_a_safety_answer(catalog: Catalog) -> None:
    """Expired at item 3: "3" after that is not heard as anything."""
    conv, setting = expired_at(catalog, "phq9.q3")
    assert late_reply(conv, "3", setting, T0) is None


def test_a_late_red_flag_gets_the_medical_message(catalog: Catalog) -> None:
    """Expired at the side-effect red-flag question: a late "yes" gets the call-911 words."""
    conv, setting = expired_at(catalog, "side_effects.red_flags")
    t = late_reply(conv, "yes", setting, T0)
    assert t is not None and t.intents == (ev.CrisisResources("medical", "side_effects.red_flags"),)
    assert t.events == (ev.LateAnswer("side_effects.red_flags", "side_effects", 1, T0),)


# ---- the alerts ----------------------------------------------------------------------------


def test_an_endorsement_in_words_is_a_crisis_suicidality_alert(catalog: Catalog) -> None:
    """How often is unknown: the alert is raised at crisis, with numbers only."""
    (trigger,) = on_endorsed(catalog.get("phq9"), "phq9.q9", DEFAULT_RULES, T0)
    assert (trigger.rule, trigger.level) == ("suicidality", "crisis")
    assert trigger.detail == {
        "instrument": "phq9", "item": "phq9.q9", "item_number": 9, "endorsed": True,
    }  # fmt: skip


def test_a_late_answer_alerts_as_an_answer_would(catalog: Catalog) -> None:
    """Item 9 = 2 late: crisis, as on time, the detail marked late."""
    (trigger,) = on_late_answer(catalog.get("phq9"), "phq9.q9", 2, DEFAULT_RULES, T0)
    assert (trigger.rule, trigger.level, trigger.detail["late"]) == ("suicidality", "crisis", True)


def test_risk_language_is_an_urgent_alert_without_the_words() -> None:
    """The trigger says risk language was detected, when, and whether a check-in was open."""
    (trigger,) = on_risk_language(DEFAULT_RULES, T0, in_checkin=False)
    assert (trigger.rule, trigger.level, trigger.at) == ("risk_language", "urgent", T0)
    assert trigger.detail == {"in_checkin": False}


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("enabled = false", "alerts.rules.risk_language.enabled"),
        ('level = "routine"', "alerts.rules.risk_language.level"),
    ],
)
def test_risk_language_is_a_protected_rule(table: str, key: str) -> None:
    """Never disabled, never below urgent."""
    raw = tomllib.loads(f"[rules.risk_language]\n{table}")
    with pytest.raises(ConfigError) as caught:
        rules_from_mapping(raw, "config.toml")
    assert caught.value.key == key


def test_risk_language_may_be_raised_to_crisis() -> None:
    """An operator may raise it above urgent."""
    rules = rules_from_mapping({"rules": {"risk_language": {"level": "crisis"}}}, "c")
    assert rules.risk_language.level == "crisis"


def test_only_a_clinician_closes_a_risk_language_alert() -> None:
    """Even at urgent, the system's attempt to resolve it is refused; a clinician's is not."""
    assert "risk_language" in CLINICIAN_CLOSES
    (trigger,) = on_risk_language(DEFAULT_RULES, T0, in_checkin=True)
    alert = raise_or_update([], trigger, T0, DEFAULT_RULES, 1, "ABC234").alert
    refused = resolve(alert, SYSTEM, T0 + timedelta(minutes=1))
    assert isinstance(refused.event, AlertResolutionRefused)
    done = resolve(replace(alert), clinician(1), T0 + timedelta(minutes=1))
    assert done.alert.status == "resolved"
