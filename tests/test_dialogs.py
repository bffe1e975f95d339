"""Conversation transcripts, read like a chat: what the patient sends, what comes back.

These drive the pure conversation core and render its intents through the real templates
(console channel), in English and Spanish. The storage-backed path has its own tests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.config import Clinic
from bot.domain import events as ev
from bot.domain.conversation import (
    Conversation,
    Setting,
    begin,
    expire,
    from_json,
    outside,
    remind,
    step,
    to_json,
)
from bot.domain.late import late_reply
from bot.instruments import load_catalog
from bot.rendering.renderer import Renderer

CATALOG = load_catalog()
CLINIC = Clinic(name="Lakeside", contact="555-0100", show_scores=True)
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


class Chat:
    """A patient in a chat with the bot; keeps the state the database would keep."""

    def __init__(self, *instruments: str, language: str = "en") -> None:
        self.setting = Setting({i.key: i for i in CATALOG}, language, show_scores=True)
        self.renderer = Renderer(CATALOG, CLINIC)
        self.language = language
        self.conv: Conversation | None = Conversation(instruments)
        self.opted_out = False
        self.now = T0
        self.events: list[ev.Event] = []

    def render(self, intents: tuple[ev.Intent, ...]) -> str:
        texts = [self.renderer.render(i, "console", self.language) for i in intents]
        return "\n\n".join(t.text for t in texts if t is not None)

    def record(self, events: tuple[ev.Event, ...]) -> None:
        self.events.extend(events)
        for event in events:
            if isinstance(event, ev.OptedOut):
                self.opted_out = True
            if isinstance(event, ev.OptedIn):
                self.opted_out = False

    def start(self) -> str:
        assert self.conv is not None
        t = begin(self.conv, self.setting, self.now)
        self.conv = t.state
        self.record(t.events)
        return self.render(t.intents)

    def say(self, text: str) -> str:
        self.now += timedelta(minutes=1)
        if self.conv is None or not self.conv.is_open:
            intents, events = outside(text, self.language, self.opted_out, self.now)
            self.record(events)
            return self.render(intents)
        t = step(self.conv, text, self.setting, self.now)
        self.conv = t.state
        self.record(t.events)
        return self.render(t.intents)


def verify(chat: Chat, dialog: list[tuple[str, list[str]]]) -> None:
    """Each reply contains the expected fragments, in order."""
    for sent, fragments in dialog:
        reply = chat.say(sent)
        position = 0
        for fragment in fragments:
            found = reply.find(fragment, position)
            assert found >= 0, f"after {sent!r}: {fragment!r} not in:\n{reply}"
            position = found + len(fragment)


def test_complete_phq9_in_english() -> None:
    """A full PHQ-9 with the difficulty item ends with the score shown and stored."""
    chat = Chat("phq9")
    assert chat.start().startswith("Lakeside check-in: PHQ-9, 9 questions.")
    verify(chat, [
        ("1", ["2/10 (last 2 weeks): Feeling down, depressed, or hopeless"]),
        ("several days", ["3/10"]),
        ("2", ["4/10"]), ("0", ["5/10"]), ("1", ["6/10"]), ("0", ["7/10"]), ("1", ["8/10"]),
        ("0", ["9/10 (last 2 weeks): Thoughts that you would be better off dead"]),
        ("0", ["10/10 (last 2 weeks): If you checked off any problems"]),
        ("1", ["Thank you, your check-in is complete.", "PHQ-9: 6 of 27 (Mild)"]),
    ])  # fmt: skip
    scores = [e.result for e in chat.events if isinstance(e, ev.ScoreRecorded)]
    assert [(s.total, s.band, s.flags) for s in scores] == [(6, "mild", ())]


def test_item_9_sends_crisis_resources_before_the_next_question() -> None:
    """Endorsing item 9 brings 988 / 911 at once, then the questionnaire goes on."""
    chat = Chat("phq9")
    chat.start()
    for _ in range(8):
        chat.say("1")
    verify(
        chat,
        [
            (
                "2",
                [
                    "988 Suicide & Crisis Lifeline: call or text 988",
                    "not monitored around the clock",
                    "10/10",
                ],
            )
        ],
    )
    assert any(isinstance(e, ev.FlagRaised) and e.flag == "suicidality" for e in chat.events)


def test_crisis_resources_lead_the_patients_line() -> None:
    """Ahead of the edit of the question just answered: with Telegram's one message a
    second per chat, anything before it would hold the crisis message up by a second."""
    chat = Chat("phq9")
    chat.start()
    for _ in range(8):
        chat.say("1")
    assert chat.conv is not None
    t = step(chat.conv, "2", chat.setting, chat.now)
    assert [type(i) for i in t.intents] == [ev.CrisisResources, ev.Answered, ev.Ask]


def test_side_effect_red_flag_says_call_911() -> None:
    """A red-flag 'yes' on the side-effect check says to call 911 before the details."""
    chat = Chat("side_effects")
    chat.start()
    verify(chat, [("yes", ["call 911 now", "2/15: Chest pain?"])])


def test_back_re_asks_and_replaces_the_answer() -> None:
    """BACK re-asks the previous item; the new answer replaces the old one."""
    chat = Chat("phq9")
    chat.start()
    verify(chat, [
        ("3", ["2/10"]),
        ("back", ["1/10 (last 2 weeks): Little interest"]),
        ("0", ["2/9"]),
    ])  # fmt: skip
    answers = [e for e in chat.events if isinstance(e, ev.AnswerRecorded)]
    assert [(a.item, a.value, a.replaced) for a in answers] == [
        ("phq9.q1", 3, False),
        ("phq9.q1", 0, True),
    ]


def test_item_9_lowered_after_back_is_scored_as_0_and_flagged() -> None:
    """Item 9 = 2, BACK, 0: crisis resources once, the score counts the 0 and carries
    safety_item_changed; the answer event names the 2 it replaced; the state keeps it."""
    chat = Chat("phq9")
    chat.start()
    for _ in range(8):
        chat.say("1")
    verify(chat, [
        ("2", ["988", "10/10"]),
        ("back", ["9/10 (last 2 weeks): Thoughts that you would be better off dead"]),
        ("0", ["10/10"]),
    ])  # fmt: skip
    assert chat.conv is not None and from_json(to_json(chat.conv)).lowered == ("phq9.q9",)
    reply = chat.say("1")
    assert "988" not in reply and "PHQ-9: 8 of 27" in reply
    answers = [e for e in chat.events if isinstance(e, ev.AnswerRecorded) and e.item == "phq9.q9"]
    assert [(a.value, a.replaced, a.previous) for a in answers] == [(2, False, None), (0, True, 2)]
    (result,) = [e.result for e in chat.events if isinstance(e, ev.ScoreRecorded)]
    assert (result.total, result.flags) == (8, ("safety_item_changed",))


def test_back_twice_then_forward_reaches_every_item() -> None:
    """BACK, BACK, a new answer to item 1, then BACK from item 3 returns to item 2 (not 1)."""
    chat = Chat("phq9")
    chat.start()
    verify(chat, [
        ("1", ["2/10"]), ("1", ["3/10"]),
        ("back", ["2/10"]), ("back", ["1/10"]),
        ("2", ["3/10"]),
        ("back", ["2/10 (last 2 weeks): Feeling down"]),
        ("3", ["3/10"]),
    ])  # fmt: skip
    assert chat.conv is not None and dict(chat.conv.answers) == {"phq9.q1": 2, "phq9.q2": 3}


def test_back_on_the_first_item_stays_there() -> None:
    """BACK before any answer re-asks the first item."""
    chat = Chat("phq9")
    chat.start()
    verify(chat, [("back", ["1/9"])])


def test_invalid_replies_are_re_asked_then_help() -> None:
    """A reply that fits no option is re-asked with the reason; the third in a row adds help."""
    chat = Chat("phq9")
    chat.start()
    verify(chat, [
        ("7", ['"7" isn\'t one of the choices.', "1/9", "Reply 0-3, SKIP, or HELP."]),
        ("0-1", ['"0-1" could mean 0 (Not at all) or 1 (Several days).', "1/9"]),
        ("I don't know", ["Let's try again.", "BACK: previous question", "Sorry, I didn't understand that.", "1/9"]),
        ("maybe", ["Sorry, I didn't understand that.", "1/9"]),
    ])  # fmt: skip


def test_item_9_cannot_be_skipped() -> None:
    """SKIP moves on from an ordinary item but never from item 9."""
    chat = Chat("phq9")
    chat.start()
    verify(chat, [("skip", ["2/9"])])
    for _ in range(7):
        chat.say("0")
    verify(chat, [("skip", ["This question can't be skipped", "9/9"])])


def test_pause_and_resume_at_the_same_item() -> None:
    """LATER pauses; the next message resumes at the same item with earlier answers kept."""
    chat = Chat("phq9")
    chat.start()
    verify(chat, [
        ("1", ["2/10"]),
        ("later", ["Paused. Reply any time"]),
        ("hi again", ["2/10 (last 2 weeks): Feeling down"]),
        ("2", ["3/10"]),
    ])  # fmt: skip
    assert chat.conv is not None and dict(chat.conv.answers) == {"phq9.q1": 1, "phq9.q2": 2}


def test_a_reminder_resumes_a_paused_check_in() -> None:
    """A scheduled reminder re-asks the waiting item and says it is a reminder."""
    chat = Chat("phq9")
    chat.start()
    chat.say("1")
    chat.say("pause")
    assert chat.conv is not None
    t = remind(chat.conv, chat.setting, T0 + timedelta(hours=4))
    assert "Reminder: your check-in is waiting." in chat.render(t.intents)
    assert t.state.status == "asking" and t.state.current == "phq9.q2"


def test_stop_and_start() -> None:
    """STOP ends the check-in (answers kept) and opts out; START opts back in."""
    chat = Chat("phq9")
    chat.start()
    verify(chat, [
        ("2", ["2/10"]),
        ("STOP", ["You will get no more check-ins from Lakeside. Reply START to resume."]),
        ("START", ["Welcome back"]),
        ("hello?", ["There is no check-in open right now."]),
    ])  # fmt: skip
    assert chat.conv is not None and chat.conv.status == "cancelled"
    assert dict(chat.conv.answers) == {"phq9.q1": 2}
    partial = [e for e in chat.events if isinstance(e, ev.ScoreRecorded)]
    assert [(p.partial, p.result.instrument) for p in partial] == [(True, "phq9")]


def test_after_stop_only_start_and_help_get_a_reply() -> None:
    """An opted-out patient gets one confirmation, then silence except for START and HELP."""
    chat = Chat("phq2")
    chat.start()
    assert "no more check-ins" in chat.say("STOP")
    assert chat.say("hello?") == ""
    assert chat.say("STOP") == ""
    assert "STOP: no more check-ins" in chat.say("HELP")
    assert "Welcome back" in chat.say("START")


def test_help_explains_and_re_asks() -> None:
    """HELP lists the replies and the clinic's contact, then repeats the question."""
    chat = Chat("phq9")
    chat.start()
    verify(
        chat,
        [
            (
                "help",
                [
                    "BACK: previous question",
                    "Lakeside: 555-0100",
                    "Not monitored around the clock",
                    "1/9",
                ],
            )
        ],
    )


def test_expiry_keeps_partial_answers_and_scores_them() -> None:
    """A check-in that expires part-way keeps its answers, scored and marked partial."""
    chat = Chat("phq9")
    chat.start()
    for _ in range(7):
        chat.say("2")
    assert chat.conv is not None
    t = expire(chat.conv, chat.setting, T0 + timedelta(days=2))
    recorded = [e for e in t.events if isinstance(e, ev.ScoreRecorded)]
    assert t.state.status == "expired"
    assert [(r.partial, r.result.total, r.result.flags) for r in recorded] == [
        (True, None, ("safety_item_missing",))
    ]
    assert isinstance(t.events[-1], ev.CheckinExpired) and t.events[-1].partial


def test_bundle_moves_from_one_instrument_to_the_next() -> None:
    """Two instruments in one check-in: the second gets its own introduction."""
    chat = Chat("phq2", "side_effects")
    chat.start()
    verify(chat, [("0", ["2/2"]), ("0", ["Side-effect check", "1/9: Since your session"])])


# ---- Spanish ---------------------------------------------------------------------------


def test_complete_side_effect_check_in_spanish() -> None:
    """The side-effect checklist, start to end, in Spanish with Spanish replies."""
    chat = Chat("side_effects", language="es")
    assert "Cuestionario de Lakeside: Side-effect check." in chat.start()
    verify(chat, [
        ("no", ["2/9: Hoy, ¿todavía se siente irreal"]),
        ("leve", ["3/9"]), ("nada", ["4/9"]), ("0", ["5/9"]), ("0", ["6/9"]), ("0", ["7/9"]),
        ("no", ["8/9"]),
        ("no", ["9/9: Si se tomó la presión"]),
        ("128/84", ["Gracias, su cuestionario está completo."]),
    ])  # fmt: skip


def test_complete_phq9_in_spanish() -> None:
    """A Spanish PHQ-9 from the first question to the score: the official Spanish stem,
    items, options and difficulty item, Spanish frames and replies, the same scoring."""
    chat = Chat("phq9", language="es")
    assert chat.start() == (
        "Cuestionario de Lakeside: PHQ-9, 9 preguntas.\n"
        "Durante las últimas 2 semanas, ¿qué tan seguido ha tenido molestias debido a los "
        "siguientes problemas?\n"
        "Responda AYUDA para ver las opciones.\n\n"
        "1/9 (últimas 2 semanas): Poco interés o placer en hacer cosas\n"
        "0 Ningún día\n1 Varios días\n2 Más de la mitad de los días\n3 Casi todos los días"
    )
    verify(chat, [
        ("1", ["2/10 (últimas 2 semanas): Se ha sentido decaído(a), deprimido(a) o sin "
               "esperanzas", "0 Ningún día", "3 Casi todos los días"]),
        ("varios días", ["3/10 (últimas 2 semanas): Ha tenido dificultad para quedarse o "
                         "permanecer dormido(a), o ha dormido demasiado"]),
        ("2", ["4/10 (últimas 2 semanas): Se ha sentido cansado(a) o con poca energía"]),
        ("nada", ["5/10 (últimas 2 semanas): Sin apetito o ha comido en exceso"]),
        ("1", ["6/10 (últimas 2 semanas): Se ha sentido mal con usted mismo(a) – o que es un "
               "fracaso o que ha quedado mal con usted mismo(a) o con su familia"]),
        ("Ningún día", ["7/10 (últimas 2 semanas): Ha tenido dificultad para concentrarse en "
                        "ciertas actividades, tales como leer el periódico o ver la televisión"]),
        ("1", ["8/10 (últimas 2 semanas): ¿Se ha movido o hablado tan lento que otras personas "
               "podrían haberlo notado? o lo contrario – muy inquieto(a) o agitado(a) que ha "
               "estado moviéndose mucho más de lo normal"]),
        ("9", ['"9" no es una de las opciones.', "8/10", "Responda 0-3, SALTAR o AYUDA."]),
        ("1", ["9/10 (últimas 2 semanas): Pensamientos de que estaría mejor muerto(a) o de "
               "lastimarse de alguna manera"]),
        ("saltar", ["Esta pregunta no se puede saltar", "9/10"]),
        ("0", ["10/10 (últimas 2 semanas): Si marcó cualquiera de los problemas, ¿qué tanta "
               "dificultad le han dado estos problemas para hacer su trabajo, encargarse de las "
               "tareas del hogar, o llevarse bien con otras personas?",
               "0 No ha sido difícil\n1 Un poco difícil\n2 Muy difícil\n"
               "3 Extremadamente difícil"]),
        ("un poco difícil", ["Gracias, su cuestionario está completo.", "PHQ-9: 7 de 27 (Leve)",
                             "Su equipo de atención revisará sus respuestas."]),
    ])  # fmt: skip
    scores = [e.result for e in chat.events if isinstance(e, ev.ScoreRecorded)]
    assert [(s.total, s.band, s.flags) for s in scores] == [(7, "mild", ())]
    answers = {e.item: e.value for e in chat.events if isinstance(e, ev.AnswerRecorded)}
    assert answers["phq9.q2"] == 1 and answers["phq9.q10"] == 1


def test_spanish_item_9_sends_spanish_crisis_resources() -> None:
    """Endorsing the Spanish item 9 brings the 988 line in Spanish at once, then item 10."""
    chat = Chat("phq9", language="es")
    chat.start()
    for _ in range(8):
        chat.say("0")
    verify(chat, [("varios días", ["Línea 988 de Prevención del Suicidio y Crisis",
                                   "Estos mensajes no se vigilan las 24 horas.", "10/10"])])  # fmt: skip
    assert any(isinstance(e, ev.FlagRaised) and e.flag == "suicidality" for e in chat.events)


def test_spanish_pause_back_invalid_help_stop_start() -> None:
    """Spanish commands and messages: LUEGO, ATRAS, invalid input, AYUDA, STOP and START."""
    chat = Chat("side_effects", language="es")
    chat.start()
    verify(chat, [
        ("no", ["2/9"]),
        ("luego", ["En pausa."]),
        ("hola", ["2/9"]),
        ("atrás", ["1/9"]),
        ("no", ["2/9"]),
        ("9", ['"9" no es una de las opciones.', "Responda 0-3, SALTAR o AYUDA."]),
        ("ayuda", ["ATRAS: pregunta anterior", "Lakeside: 555-0100", "2/9"]),
        ("STOP", ["No recibirá más cuestionarios de Lakeside."]),
        ("START", ["Bienvenido de nuevo"]),
    ])  # fmt: skip


@pytest.mark.parametrize("language", ["en", "es"])
def test_duplicate_reply_after_completion_changes_nothing(language: str) -> None:
    """A reply after the check-in closed does not reopen it or add an answer."""
    chat = Chat("phq2", language=language)
    chat.start()
    chat.say("1")
    chat.say("1")
    answers = len([e for e in chat.events if isinstance(e, ev.AnswerRecorded)])
    chat.say("1")
    assert len([e for e in chat.events if isinstance(e, ev.AnswerRecorded)]) == answers == 2


# ---- risk language, however it is said ---------------------------------------------------

CRISIS_EN = "988 Suicide & Crisis Lifeline: call or text 988"
CRISIS_ES = "Línea 988 de Prevención del Suicidio y Crisis"


def at_item_9(language: str = "en") -> Chat:
    chat = Chat("phq9", language=language)
    chat.start()
    for _ in range(8):
        chat.say("1")
    return chat


@pytest.mark.parametrize("reply", ["yes", "everyday", "I want to die"])
def test_item_9_endorsed_in_words_brings_crisis_resources_then_asks_again(reply: str) -> None:
    """Not a value, but a yes: crisis resources at once, then item 9 again for its value;
    the value moves on as usual (issue 19: these got a bare re-ask)."""
    chat = at_item_9()
    verify(chat, [
        (reply, [CRISIS_EN, "not monitored around the clock",
                 "Please also choose the answer below that fits best", "9/10"]),
        ("2", ["10/10"]),
    ])  # fmt: skip
    endorsed = [e for e in chat.events if isinstance(e, ev.SafetyEndorsed)]
    assert [e.item for e in endorsed] == ["phq9.q9"]


def test_item_9_endorsed_in_spanish_words() -> None:
    """ "todos los días" at item 9 in Spanish: the Spanish crisis lines, then item 9 again."""
    chat = at_item_9("es")
    verify(chat, [("todos los días", [CRISIS_ES, "Elija también la respuesta", "9/10"])])


@pytest.mark.parametrize(
    ("language", "text", "crisis"),
    [("en", "I want to kill myself", CRISIS_EN), ("es", "ya no quiero vivir", CRISIS_ES)],
)
def test_risk_language_during_another_item(language: str, text: str, crisis: str) -> None:
    """Risk language at item 2: crisis resources in the patient's language, then item 2
    again, without "I didn't understand"."""
    chat = Chat("phq9", language=language)
    chat.start()
    chat.say("0")
    reply = chat.say(text)
    assert crisis in reply and "2/9" in reply.split(crisis, 1)[1]
    assert "understand" not in reply and "entendí" not in reply
    assert [e for e in chat.events if isinstance(e, ev.RiskLanguage)]


@pytest.mark.parametrize(
    ("language", "text", "crisis"),
    [
        ("en", "i dont want to live anymore", CRISIS_EN),
        ("en", "thinking about sucide", CRISIS_EN),
        ("es", "Quiero quitarme la vida", CRISIS_ES),
        ("es", "pienso en matarme", CRISIS_ES),
    ],
)
def test_risk_language_with_no_check_in_open(language: str, text: str, crisis: str) -> None:
    """No check-in open, or one already finished: crisis resources, not "nothing open"."""
    chat = Chat("phq2", language=language)
    chat.start()
    chat.say("0")
    chat.say("0")
    reply = chat.say(text)
    assert crisis in reply and "check-in" not in reply.lower()
    assert isinstance(chat.events[-1], ev.RiskLanguage)


def test_risk_language_after_stop_still_gets_crisis_resources() -> None:
    """Opted out, the core still answers risk language (the shell drops it where the
    carrier would block it: SMS after STOP)."""
    chat = Chat("phq2")
    chat.start()
    chat.say("STOP")
    assert CRISIS_EN in chat.say("I want to die")
    assert chat.say("hello?") == ""


@pytest.mark.parametrize(
    ("language", "text"), [("en", "I don't want to die"), ("es", "no quiero morir")]
)
def test_a_clear_negation_of_a_wish_is_not_risk_language(language: str, text: str) -> None:
    """ "I don't want to die" with nothing open gets the usual answer, no crisis message."""
    chat = Chat("phq2", language=language)
    chat.conv = None
    reply = chat.say(text)
    assert "988" not in reply and not chat.events


def test_a_late_item_9_answer_after_expiry_is_not_lost() -> None:
    """The check-in expired at item 9; "3" an hour later gets crisis resources and the
    late-answer event, the closed check-in untouched."""
    chat = at_item_9()
    assert chat.conv is not None
    chat.conv = expire(chat.conv, chat.setting, chat.now).state
    t = late_reply(chat.conv, "3", chat.setting, chat.now + timedelta(hours=1))
    assert t is not None and CRISIS_EN in chat.render(t.intents)
    assert [type(e) for e in t.events] == [ev.LateAnswer] and t.state == chat.conv
