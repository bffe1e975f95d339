"""One list of languages (bot/domain/languages.py), and each language in it has all it
needs: every template the English one has, the phrases of risk, and a place in the
settings that take a language (a WhatsApp template's, here). Before, the WhatsApp
settings kept their own copy of the list."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config.whatsapp_config import whatsapp_settings
from bot.domain import risk
from bot.domain.errors import ConfigError
from bot.domain.languages import LANGUAGES
from bot.rendering.renderer import TEMPLATES_DIR

SID = "HX" + "0" * 32


def _templates(language: str) -> set[Path]:
    root = TEMPLATES_DIR / language
    return {path.relative_to(root) for path in root.rglob("*") if path.is_file()}


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_language_has_every_template_english_has(language: str) -> None:
    english = _templates("en")
    assert english, "no English templates found"
    assert sorted(map(str, english - _templates(language))) == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_language_has_the_phrases_of_risk(language: str) -> None:
    tables = [risk.NAMED, risk.WISHES, risk.NEGATIONS, risk.ENDORSEMENTS, risk.DENIALS]
    assert [bool(table.get(language)) for table in tables] == [True] * len(tables)


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_whatsapp_template_is_accepted_in_each_language(language: str) -> None:
    settings = whatsapp_settings({"templates": {"alert": {language: SID}}}, "checkin.toml")
    assert settings.templates == {"alert": {language: SID}}


def test_a_whatsapp_template_in_another_language_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError) as refused:
        whatsapp_settings({"templates": {"alert": {"fr": SID}}}, "checkin.toml")
    assert refused.value.key == "whatsapp.templates.alert.fr"
    assert refused.value.problem == f"unknown language ({', '.join(LANGUAGES)})"
