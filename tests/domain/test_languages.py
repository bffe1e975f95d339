"""Languages of an instrument: the Spanish PHQ-9 and PHQ-2 ship word for word from the
official Spanish (US) form; an instrument has a language only when every text has it; a
wording file adds a language to a shipped instrument (the clinic's Spanish GAD-7), and a
malformed one is refused with the file and the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from bot.domain.definitions import instrument_from_mapping
from bot.domain.errors import DefinitionError
from bot.instruments import BUILTIN_DIR, Catalog, load_catalog, read_toml

# The official Spanish (United States) PHQ-9, transcribed character for character.
STEM_ES = (
    "Durante las últimas 2 semanas, ¿qué tan seguido ha tenido molestias debido a los "
    "siguientes problemas?"
)
PHQ9_ES = [
    "Poco interés o placer en hacer cosas",
    "Se ha sentido decaído(a), deprimido(a) o sin esperanzas",
    "Ha tenido dificultad para quedarse o permanecer dormido(a), o ha dormido demasiado",
    "Se ha sentido cansado(a) o con poca energía",
    "Sin apetito o ha comido en exceso",
    "Se ha sentido mal con usted mismo(a) \u2013 o que es un fracaso o que ha quedado mal con "
    "usted mismo(a) o con su familia",
    "Ha tenido dificultad para concentrarse en ciertas actividades, tales como leer el "
    "periódico o ver la televisión",
    "¿Se ha movido o hablado tan lento que otras personas podrían haberlo notado? o lo "
    "contrario \u2013 muy inquieto(a) o agitado(a) que ha estado moviéndose mucho más de lo "
    "normal",
    "Pensamientos de que estaría mejor muerto(a) o de lastimarse de alguna manera",
    "Si marcó cualquiera de los problemas, ¿qué tanta dificultad le han dado estos problemas "
    "para hacer su trabajo, encargarse de las tareas del hogar, o llevarse bien con otras "
    "personas?",
]
FREQUENCY_ES = ["Ningún día", "Varios días", "Más de la mitad de los días", "Casi todos los días"]
DIFFICULTY_ES = ["No ha sido difícil", "Un poco difícil", "Muy difícil", "Extremadamente difícil"]


def test_phq9_spanish_is_the_official_form_exactly(catalog: Catalog) -> None:
    """Stem, the nine items, the difficulty item and both option sets, character for
    character (accents, (a) endings, the en dashes of items 6 and 8)."""
    phq9 = catalog.get("phq9")
    assert phq9.intro is not None and phq9.intro.texts["es"] == STEM_ES
    assert [i.text.texts["es"] for i in phq9.items] == PHQ9_ES
    for item in phq9.items[:9]:
        assert [o.label.texts["es"] for o in item.options] == FREQUENCY_ES
    assert [o.label.texts["es"] for o in phq9.item("phq9.q10").options] == DIFFICULTY_ES
    assert [o.value for o in phq9.item("phq9.q10").options] == [0, 1, 2, 3]
    assert phq9.languages == {"en", "es"}


def test_phq2_spanish_is_phq9_items_1_and_2(catalog: Catalog) -> None:
    """PHQ-2 in Spanish: the PHQ-9's first two items, with the same stem and options."""
    phq2 = catalog.get("phq2")
    assert phq2.intro is not None and phq2.intro.texts["es"] == STEM_ES
    assert [i.text.texts["es"] for i in phq2.items] == PHQ9_ES[:2]
    assert [o.label.texts["es"] for o in phq2.items[1].options] == FREQUENCY_ES
    assert phq2.languages == {"en", "es"}


def test_shipped_languages(catalog: Catalog) -> None:
    """No Spanish GAD-7 ships: its item texts are English only, so it is English only."""
    assert {i.key: sorted(i.languages) for i in catalog} == {
        "gad7": ["en"],
        "phq2": ["en", "es"],
        "phq9": ["en", "es"],
        "side_effects": ["en", "es"],
    }


def _phq2_with_spanish() -> dict[str, Any]:
    data = read_toml(BUILTIN_DIR / "phq2.toml")
    assert instrument_from_mapping(data, "phq2.toml").languages == {"en", "es"}
    return data


def _drop_es(data: dict[str, Any], where: str) -> None:
    if where == "intro":
        del data["intro"]["es"]
    elif where == "recall":
        del data["recall"]["es"]
    elif where == "item text":
        del data["items"][1]["text"]["es"]
    elif where == "one option label":
        del data["option_sets"]["frequency"][2]["label"]["es"]
    elif where == "band label":
        del data["bands"][1]["label"]["es"]


@pytest.mark.parametrize(
    "where", ["intro", "recall", "item text", "one option label", "band label"]
)
def test_a_language_needs_every_text(where: str) -> None:
    """Spanish item texts with one stem, recall tag, option or band label left in English
    is not Spanish: the patient would read a mix."""
    data = copy.deepcopy(_phq2_with_spanish())
    _drop_es(data, where)
    instrument = instrument_from_mapping(data, "phq2.toml")
    assert instrument.languages == {"en"}
    assert instrument.missing_texts("es")


# ---- a wording file adding a language to a shipped instrument --------------------------

GAD7 = read_toml(BUILTIN_DIR / "gad7.toml")
BANDS = [b["key"] for b in GAD7["bands"]]


def gad7_spanish(
    *, skip_item: str = "", values: tuple[int, ...] = (0, 1, 2, 3), extra: str = ""
) -> str:
    """A gad7.wording.toml adding placeholder Spanish (never a real translation)."""

    def options(words: str) -> str:
        return ", ".join(f'{{ value = {v}, label = {{ es = "{words} {v}" }} }}' for v in values)

    lines = [
        'key = "gad7"',
        'intro = { es = "Enunciado de prueba" }',
        extra,
        "[option_sets]",
        f"frequency = [{options('Frecuencia')}]",
        f"difficulty = [{options('Dificultad')}]",
        "[bands]",
        *(f'{b} = {{ es = "Banda {b}" }}' for b in BANDS),
    ]
    for item in GAD7["items"]:
        if item["key"] != skip_item:
            lines += [f'[items."{item["key"]}"]', f'text = {{ es = "Texto de {item["key"]}" }}']
    return "\n".join(lines) + "\n"


def load_with(tmp_path: Path, text: str, name: str = "gad7.wording.toml") -> Catalog:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return load_catalog([tmp_path])


def test_wording_file_adds_spanish_to_the_shipped_gad7(tmp_path: Path) -> None:
    """The clinic's gad7.wording.toml makes GAD-7 Spanish; the English stays as shipped."""
    gad7 = load_with(tmp_path, gad7_spanish()).get("gad7")
    shipped = load_catalog().get("gad7")
    assert gad7.languages == {"en", "es"}
    assert gad7.item("gad7.q3").text.get("es") == "Texto de gad7.q3"
    assert gad7.item("gad7.q8").options[3].label.get("es") == "Dificultad 3"
    assert [i.text.get("en") for i in gad7.items] == [i.text.get("en") for i in shipped.items]
    assert gad7.recall is not None and gad7.recall.get("es") == "últimas 2 semanas"
    assert (gad7.max_total, gad7.bands[0].label.get("en")) == (21, shipped.bands[0].label.get("en"))


def test_wording_file_may_add_replies(tmp_path: Path) -> None:
    """An option's Spanish replies join the shipped ones."""
    extra = (
        '[items."gad7.q1"]\ntext = { es = "Uno" }\noptions = ['
        + ", ".join(
            f'{{ value = {v}, label = {{ es = "Op {v}" }}, synonyms = {{ es = ["r{v}"] }} }}'
            for v in range(4)
        )
        + "]"
    )
    text = gad7_spanish(skip_item="gad7.q1") + extra + "\n"
    option = load_with(tmp_path, text).get("gad7").item("gad7.q1").options[0]
    assert option.label.get("es") == "Op 0"
    assert option.synonyms["es"] == ("nada", "nunca", "ninguno", "r0")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (gad7_spanish(skip_item="gad7.q3"), r"gad7\.wording\.toml: es: is incomplete: no 'es' "
         r"text for gad7\.q3 text"),
        (gad7_spanish(extra='itmes = {}'), r"gad7\.wording\.toml: itmes: unknown key"),
        (gad7_spanish() + '[items."gad7.q9"]\ntext = { es = "x" }\n',
         r"items\.\"gad7\.q9\": unknown item"),
        (gad7_spanish(values=(0, 1, 2)), r"option_sets\.frequency: values must be exactly "
         r"\[0, 1, 2, 3\]"),
        (gad7_spanish(values=(1, 2, 3, 4)), r"option_sets\.frequency: values must be exactly"),
        (gad7_spanish(extra='recall = { es = "otra" }'), r"recall\.es: is shipped already"),
        (gad7_spanish(skip_item="gad7.q2") + '[items."gad7.q2"]\ntext = "Texto"\n',
         r"items\.\"gad7\.q2\"\.text: must be a table of language = text"),
        ('key = "gad7"\n[items."gad7.q1"]\ntext = { en = "Feeling edgy" }\n',
         r"items\.\"gad7\.q1\"\.text\.en: is shipped already"),
        ('key = "phq9"\n', r"gad7\.wording\.toml: key: must be 'gad7'"),
        ('key = "gad7"\n', r"adds no language"),
    ],
)  # fmt: skip
def test_a_malformed_wording_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    """A missing item, an unknown key or item, wrong option values, a shipped text
    replaced, a file adding nothing: refused with the file and the field."""
    with pytest.raises(DefinitionError, match=message):
        load_with(tmp_path, text)


def test_a_wording_file_for_no_instrument_is_refused(tmp_path: Path) -> None:
    """gad9.wording.toml (a typo) names no instrument: refused, not quietly ignored."""
    with pytest.raises(DefinitionError, match=r"gad9\.wording\.toml: key: no instrument 'gad9'"):
        load_with(tmp_path, gad7_spanish(), name="gad9.wording.toml")
