"""The right crisis lines for the patient: the clinic's per-country configuration (the
example file's Spain and Mexico tables, and the errors that name the key), the lines a
patient's messages carry by their number or time zone, the US Spanish 988 wording, and
the blood-pressure advice, rendered through the real templates."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bot.app.conversations.messages import outbox_rows
from bot.config import Clinic, Settings, settings_from_mapping
from bot.config import settings as config_settings
from bot.domain import events as ev
from bot.domain.crisis import country_of
from bot.domain.errors import ConfigError
from bot.instruments import load_catalog
from bot.rendering.renderer import Renderer
from bot.storage.tables import Patient
from tests.test_dialogs import Chat, verify
from tests.test_services import T0

CATALOG = load_catalog()
EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
SUICIDALITY = ev.CrisisResources("suicidality", "phq9.q9")


def example_with_countries() -> Settings:
    """config.example.toml with its commented Spain and Mexico tables switched on, and the
    clinic's own line set."""
    text = EXAMPLE.read_text(encoding="utf-8")
    start = text.index("# [clinic.countries.ES]")
    end = text.index("[database]")
    block = "\n".join(line.removeprefix("# ") for line in text[start:end].splitlines())
    text = text[:start] + block + "\n" + text[end:]
    text = text.replace('urgent_line = ""', 'urgent_line = "555-0199"', 1)
    return settings_from_mapping(tomllib.loads(text), EXAMPLE)


def patient(channel: str, address: str, timezone: str, language: str) -> Patient:
    return Patient(
        id=1, display_name="P-1", channel=channel, address=address, timezone=timezone,
        language=language, status="active",
    )  # fmt: skip


def crisis_text(clinic: Clinic, who: Patient, intent: ev.Intent = SUICIDALITY) -> str:
    (row,) = outbox_rows(Renderer(CATALOG, clinic), who, [intent], "in:1", T0)
    return row.body


def test_the_example_file_configures_spain_and_mexico() -> None:
    """The documented example loads as the operator would uncomment it."""
    clinic = example_with_countries().clinic
    assert clinic.country == "US" and clinic.emergency_number == "911"
    assert [(c.code, c.emergency_number) for c in clinic.countries] == [
        ("ES", "112"),
        ("MX", "911"),
    ]


@pytest.mark.parametrize(
    ("who", "present", "absent"),
    [
        (  # a Spanish mobile number, Spanish speaker: 024 in Spanish, then 112, then the clinic
            patient("sms", "+34600111222", "Europe/Madrid", "es"),
            [
                "Linea 024 de atencion a la conducta suicida: llame al 024",
                "Emergencias: llame al 112",
                "Lakeside Mood Clinic: 555-0199",
            ],
            ["988", "911"],
        ),
        (  # the same number, English speaker: the English line, same emergency number
            patient("sms", "+34600111222", "America/New_York", "en"),
            [
                "Spain's 024 suicide crisis line: call 024",
                "Emergency: call 112",
                "Lakeside Mood Clinic: 555-0199",
            ],
            ["988", "911"],
        ),
        (  # Telegram has no phone number: a Mexican time zone
            patient("telegram", "4242", "America/Mexico_City", "es"),
            ["Línea de la Vida: llame al 800 911 2000", "Emergencias: llame al 911"],
            ["988", "024"],
        ),
        (  # a US number: the built-in 988 lines
            patient("sms", "+15555550100", "Europe/Madrid", "en"),
            ["988 Suicide &amp; Crisis Lifeline: call or text 988", "Emergency: call 911"],
            ["024", "112"],
        ),
    ],
)
def test_a_patient_gets_their_countrys_lines(
    who: Patient, present: list[str], absent: list[str]
) -> None:
    """The phone prefix, else the time zone, picks the country; the emergency number and
    the clinic's own line are always there."""
    text = crisis_text(example_with_countries().clinic, who)
    if who.channel == "sms":
        text = text.replace("&", "&amp;")  # one expectation for plain text and HTML
    for fragment in present:
        assert fragment in text, (fragment, text)
    for fragment in absent:
        assert fragment not in text, (fragment, text)


def test_help_says_the_patients_emergency_number() -> None:
    """HELP in Spain says 112, not the clinic's 911."""
    who = patient("sms", "+34600111222", "Europe/Madrid", "es")
    text = crisis_text(example_with_countries().clinic, who, ev.Help())
    assert "En una emergencia llame al 112." in text and "911" not in text


def test_spanish_988_is_right_for_calls_and_for_texts() -> None:
    """A US patient reading Spanish: call 988 and press 2, or text AYUDA to 988 (pressing
    2 means nothing in a text message)."""
    text = crisis_text(
        Clinic(name="Lakeside"), patient("sms", "+15555550100", "America/Chicago", "es")
    )
    assert "llame al 988 y marque 2 para español" in text.replace("espanol", "español")
    assert "envie la palabra AYUDA por mensaje de texto al 988" in text
    assert "Emergencias: llame al 911" in text


def test_configured_lines_keep_the_emergency_number() -> None:
    """Setting crisis_lines for the clinic's own country never drops its emergency number."""
    raw = {"clinic": {"crisis_lines": [{"name": "Local line", "how": "call 555-0123"}]}}
    clinic = settings_from_mapping(raw, Path("config.toml")).clinic
    text = crisis_text(clinic, patient("sms", "+15555550100", "America/Chicago", "en"))
    assert "Local line: call 555-0123" in text and "Emergency: call 911" in text
    assert "988" not in text


@pytest.mark.parametrize(
    ("clinic", "key", "words"),
    [
        ({"country": "ES"}, "clinic.emergency_number", "must be set for ES"),
        ({"country": "ES", "emergency_number": "112"}, "clinic.crisis_lines", "988"),
        ({"country": "Spain"}, "clinic.country", "two-letter"),
        ({"emergency_number": ""}, "clinic.emergency_number", "phone number"),
        ({"crisis_lines": [{"name": "X", "how": "call 1", "lang": "es"}]}, "clinic.crisis_lines[0].lang", "unknown key"),
        ({"crisis_lines": [{"name": "X", "how": "call 1", "language": ""}]}, "clinic.crisis_lines[0].language", "language code"),
        ({"countries": {"ES": {"crisis_lines": [{"name": "X", "how": "llame"}]}}}, "clinic.countries.ES.emergency_number", "missing"),
        ({"countries": {"ES": {"emergency_number": "112"}}}, "clinic.countries.ES.crisis_lines", "missing"),
        ({"countries": {"ES": {"emergency_number": "112", "crisis_lines": [{"name": "X"}]}}}, "clinic.countries.ES.crisis_lines[0]", "name and how"),
        ({"countries": {"GB": {"emergency_number": "999", "crisis_lines": [{"name": "S", "how": "call 116 123"}]}}}, "clinic.countries.GB", "phone_prefixes or time_zones"),
        ({"countries": {"GB": {"emergency_number": "999", "crisis_lines": [{"name": "S", "how": "call"}], "phone_prefixes": ["44"]}}}, "clinic.countries.GB.phone_prefixes", "+34"),
        ({"countries": {"GB": {"emergency_number": "999", "crisis_lines": [{"name": "S", "how": "call"}], "time_zones": ["Europe/Londres"]}}}, "clinic.countries.GB.time_zones", "IANA"),
        ({"countries": {"US": {"emergency_number": "911", "crisis_lines": [{"name": "S", "how": "call"}]}}}, "clinic.countries.US", "own country"),
        ({"countries": {"ES": {"emergency_number": "112", "crisis_lines": [{"name": "S", "how": "call"}], "number": "1"}}}, "clinic.countries.ES.number", "unknown key"),
    ],
)  # fmt: skip
def test_crisis_config_errors_name_the_key(clinic: dict[str, object], key: str, words: str) -> None:
    """Each mistake is refused with the file, the key and what is wrong."""
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"clinic": clinic}, Path("config.toml"))
    assert caught.value.key == key and words in caught.value.problem
    assert str(caught.value).startswith(f"config.toml: {key}: ")


def test_a_clinic_elsewhere_with_its_own_lines_loads() -> None:
    """A clinic in Spain sets its country, number and lines; its patients get them."""
    raw = {
        "clinic": {
            "country": "es",
            "emergency_number": "112",
            "crisis_lines": [{"name": "Línea 024", "how": "llame al 024"}],
            "countries": {"GB": {"emergency_number": "999", "phone_prefixes": ["+44"],
                                 "crisis_lines": [{"name": "Samaritans", "how": "call 116 123"}]}},
        }
    }  # fmt: skip
    clinic = settings_from_mapping(raw, Path("config.toml")).clinic
    assert clinic.country == "ES"
    text = crisis_text(clinic, patient("telegram", "77", "Asia/Tokyo", "es"))
    assert "Línea 024: llame al 024" in text and "llame al 112" in text and "988" not in text
    text = crisis_text(clinic, patient("sms", "+447700900123", "Europe/Madrid", "en"))
    assert "Samaritans: call 116 123" in text and "Emergency: call 999" in text


# ---- blood pressure -----------------------------------------------------------------------


def answer_up_to_blood_pressure(chat: Chat) -> None:
    """No red flag, no lingering effect, no urinary problem: the reading is next."""
    chat.start()
    for reply in ["no", "0", "0", "0", "0", "0", "0", "no"]:
        chat.say(reply)


@pytest.mark.parametrize(
    ("language", "reading", "fragments"),
    [
        ("en", "185/100", ["That blood pressure is very high.", "chest pain, shortness of breath, weakness or numbness, a change in your vision, or difficulty speaking, call 911 now", "rest quietly for 5 minutes, check it again, and call Lakeside now: 555-0100"]),
        ("en", "150/112", ["That blood pressure is very high."]),
        ("es", "190/125", ["Esa presión arterial está muy alta.", "dificultad para hablar, llame al 911 ahora", "descanse 5 minutos, vuelva a tomarse la presión y llame ahora a Lakeside: 555-0100"]),
    ],
)  # fmt: skip
def test_a_very_high_reading_tells_the_patient_what_to_do(
    language: str, reading: str, fragments: list[str]
) -> None:
    """At or above the item's threshold (180/110, below the AHA's 180/120) the patient is
    told to re-check after five minutes' rest and call the clinic, or the emergency
    number with symptoms; the alert is raised as before."""
    chat = Chat("side_effects", language=language)
    answer_up_to_blood_pressure(chat)
    verify(chat, [(reading, fragments)])
    assert any(
        isinstance(e, ev.FlagRaised) and e.flag == "blood_pressure_high" for e in chat.events
    )


def test_a_reading_below_the_threshold_brings_no_advice() -> None:
    """179/109 is answered like any other reading."""
    chat = Chat("side_effects")
    answer_up_to_blood_pressure(chat)
    assert "very high" not in chat.say("179/109")


def test_a_crisis_turn_sends_resources_then_the_next_question_then_the_edit() -> None:
    """Rows leave in id order, so their order is the send order: the crisis message first
    (urgent), the next question (what the patient waits for), the edit of the answered
    question last. On SMS there is no edit."""
    intents = [SUICIDALITY, ev.Answered("phq9.q9", 2), ev.Ask("gad7.q1", 1, 7)]
    renderer = Renderer(CATALOG, Clinic(name="Test clinic"))
    telegram = patient("telegram", "123", "America/New_York", "en")
    rows = outbox_rows(renderer, telegram, intents, "in:7", T0)
    assert [r.payload["intent"] for r in rows] == ["CrisisResources", "Ask", "Answered"]
    assert [r.payload.get("edit", False) for r in rows] == [False, False, True]
    assert [r.idempotency_key for r in rows] == ["in:7:0", "in:7:2", "in:7:1"]  # stable
    sms = patient("sms", "+12125550123", "America/New_York", "en")
    rows = outbox_rows(renderer, sms, intents, "in:7", T0)
    assert [r.payload["intent"] for r in rows] == ["CrisisResources", "Ask"]


def test_the_country_a_clinic_remembers_is_the_one_it_would_work_out() -> None:
    """`Clinic.country_of` remembers each number and zone's country: asked again, and asked
    after its memory filled and was emptied, it answers as the pure function does."""
    clinic = example_with_countries().clinic
    asked = [("+34600111222", "America/New_York"), (None, "America/Tijuana"),
             ("+15555550100", "UTC"), (None, "Europe/Madrid"), (None, "Asia/Tokyo")]  # fmt: skip
    countries = [clinic.home, *clinic.countries]
    expected = [country_of(phone, zone, countries, clinic.country) for phone, zone in asked]
    assert expected == ["ES", "MX", "US", "ES", "US"]
    for _ in range(2):  # worked out, then remembered
        assert [clinic.country_of(phone, zone) for phone, zone in asked] == expected
    remembered = config_settings.COUNTRIES_REMEMBERED
    try:
        config_settings.COUNTRIES_REMEMBERED = 2
        assert [clinic.country_of(phone, zone) for phone, zone in asked] == expected
    finally:
        config_settings.COUNTRIES_REMEMBERED = remembered
    assert clinic == example_with_countries().clinic  # the memory is not a field
    assert hash(clinic) == hash(example_with_countries().clinic)
