"""Instrument definitions: the shipped files say exactly what the published forms say, and
a broken file is refused with an error naming the file and the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from bot.domain.definitions import instrument_from_mapping, merge_wording
from bot.domain.errors import DefinitionError, UnknownInstrument, WordingRequired
from bot.domain.scoring import score
from bot.instruments import BUILTIN_DIR, Catalog, load_catalog, read_toml

PHQ9_ITEMS = [
    ("phq9.q1", "Little interest or pleasure in doing things", "44250-9"),
    ("phq9.q2", "Feeling down, depressed, or hopeless", "44255-8"),
    ("phq9.q3", "Trouble falling or staying asleep, or sleeping too much", "44259-0"),
    ("phq9.q4", "Feeling tired or having little energy", "44254-1"),
    ("phq9.q5", "Poor appetite or overeating", "44251-7"),
    ("phq9.q6", "Feeling bad about yourself — or that you are a failure or have let yourself "
     "or your family down", "44258-2"),
    ("phq9.q7", "Trouble concentrating on things, such as reading the newspaper or watching "
     "television", "44252-5"),
    ("phq9.q8", "Moving or speaking so slowly that other people could have noticed? Or the "
     "opposite — being so fidgety or restless that you have been moving around a lot more "
     "than usual", "44253-3"),
    ("phq9.q9", "Thoughts that you would be better off dead or of hurting yourself in some way",
     "44260-8"),
    ("phq9.q10", "If you checked off any problems, how difficult have these problems made it for "
     "you to do your work, take care of things at home, or get along with other people?",
     "69722-7"),
]  # fmt: skip

GAD7_ITEMS = [
    ("gad7.q1", "Feeling nervous, anxious, or on edge", "69725-0"),
    ("gad7.q2", "Not being able to stop or control worrying", "68509-9"),
    ("gad7.q3", "Worrying too much about different things", "69733-4"),
    ("gad7.q4", "Trouble relaxing", "69734-2"),
    ("gad7.q5", "Being so restless that it is hard to sit still", "69735-9"),
    ("gad7.q6", "Becoming easily annoyed or irritable", "69689-8"),
    ("gad7.q7", "Feeling afraid, as if something awful might happen", "69736-7"),
]
FREQUENCY = ["Not at all", "Several days", "More than half the days", "Nearly every day"]


def test_shipped_catalog(catalog: Catalog) -> None:
    """All six keys exist; the two licensed ones wait for operator wording."""
    assert catalog.keys == ("gad7", "madrs_s", "phq2", "phq9", "qids_sr16", "side_effects")
    assert sorted(catalog.unavailable) == ["madrs_s", "qids_sr16"]


def test_phq9_wording_codes_and_structure(catalog: Catalog) -> None:
    """PHQ-9 items, options and LOINC codes are the official form's, item 9 is the safety item."""
    phq9 = catalog.get("phq9")
    assert [(i.key, i.text.get("en"), i.loinc) for i in phq9.items] == PHQ9_ITEMS
    assert [o.label.get("en") for o in phq9.item("phq9.q1").options] == FREQUENCY
    assert [i.key for i in phq9.safety_items] == ["phq9.q9"]
    assert not phq9.item("phq9.q9").skippable
    assert not phq9.item("phq9.q10").scored
    assert (phq9.loinc_panel, phq9.loinc_total, phq9.max_total) == ("44249-1", "44261-6", 27)
    assert phq9.intro is not None
    assert phq9.intro.get("en") == (
        "Over the last 2 weeks, how often have you been bothered by any of the following problems?"
    )
    assert "No permission required to reproduce" in phq9.attribution


def test_gad7_wording_codes_and_structure(catalog: Catalog) -> None:
    """GAD-7 items are the form's, its 0 option is 'Not at all' (not '... sure'), 0-21."""
    gad7 = catalog.get("gad7")
    assert [(i.key, i.text.get("en"), i.loinc) for i in gad7.scored_items] == GAD7_ITEMS
    assert [o.label.get("en") for o in gad7.item("gad7.q1").options] == FREQUENCY
    assert (gad7.loinc_panel, gad7.loinc_total, gad7.max_total) == ("69737-5", "70274-6", 21)


def test_phq2_is_the_first_two_phq9_items(catalog: Catalog) -> None:
    """PHQ-2 asks PHQ-9 items 1 and 2 with the same wording and codes, range 0-6."""
    phq2, phq9 = catalog.get("phq2"), catalog.get("phq9")
    assert [(i.text, i.loinc) for i in phq2.items] == [(i.text, i.loinc) for i in phq9.items[:2]]
    assert phq2.max_total == 6


def test_side_effect_check_is_labelled_a_checklist(catalog: Catalog) -> None:
    """Our side-effect check says it is a checklist, has no total, and asks red flags first."""
    checklist = catalog.get("side_effects")
    assert checklist.kind == "checklist" and checklist.max_total is None
    assert "not a validated scale" in checklist.title
    assert checklist.items[0].key == "side_effects.red_flags" and checklist.items[0].safety
    assert checklist.languages == {"en", "es"}


def test_licensed_instruments_refuse_to_load_without_wording(catalog: Catalog) -> None:
    """Using QIDS-SR16 without the operator's wording file says exactly what to supply."""
    with pytest.raises(WordingRequired, match=r"supply it in qids_sr16\.wording\.toml"):
        catalog.get("qids_sr16")


def test_licensed_instruments_load_with_wording(full_catalog: Catalog) -> None:
    """With a wording file, QIDS-SR16 (0-27, nine domains) and MADRS-S (0-54) load."""
    qids, madrs = full_catalog.get("qids_sr16"), full_catalog.get("madrs_s")
    assert (qids.max_total, len(qids.scoring.domains), len(qids.items)) == (27, 9, 16)
    assert (madrs.max_total, len(madrs.items)) == (54, 9)
    assert qids.item("qids_sr16.q12").safety


def test_unknown_instrument(catalog: Catalog) -> None:
    """An unknown key lists the known ones."""
    with pytest.raises(UnknownInstrument, match="known: gad7, madrs_s"):
        catalog.get("bdi")


def phq9_data() -> dict[str, Any]:
    return read_toml(BUILTIN_DIR / "phq9.toml")


def broken(edit: Any) -> dict[str, Any]:
    data = copy.deepcopy(phq9_data())
    edit(data)
    return data


BROKEN = [
    (lambda d: d.pop("key"), "phq9.toml: key: is missing"),
    (lambda d: d.update(key="PHQ 9"), "phq9.toml: key: 'PHQ 9' must be lower-case"),
    (lambda d: d["items"][2].update(options="freq"), "phq9.toml: items[2].options: unknown option set 'freq'"),
    (lambda d: d["items"][3].pop("text"), "phq9.toml: items[3].text: is missing"),
    (lambda d: d["items"][3].update(key="gad7.q4"), "phq9.toml: items[3].key: 'gad7.q4' must look like 'phq9.q1'"),
    (lambda d: d["items"][1].update(key="phq9.q1"), "phq9.toml: items: 'phq9.q1' appears twice"),
    (lambda d: d["items"][8].update(skippable=True), "phq9.toml: items[8].skippable: a safety item can never be skipped"),
    (lambda d: d["items"][0].update(loinc="4425"), "phq9.toml: items[0].loinc: '4425' is not a LOINC code"),
    (lambda d: d["bands"][0].update(max=3), "phq9.toml: bands[1]: starts at 5; expected 4"),
    (lambda d: d["bands"][0].update(min=1), "phq9.toml: bands[0]: starts at 1; expected 0"),
    (lambda d: d["bands"][4].update(max=26), "phq9.toml: bands: end at 26; the highest possible total is 27"),
    (lambda d: d["scoring"].update(max_missing="two"), "phq9.toml: scoring.max_missing: must be an integer"),
    (lambda d: d["scoring"].update(method="mean"), "phq9.toml: scoring.method: 'mean' is not one of"),
    (lambda d: d["scoring"].update(never_impute=["phq9.q99"]), "phq9.toml: scoring.never_impute: unknown item 'phq9.q99'"),
    (lambda d: d["outcomes"].update(remision_max=4), "phq9.toml: outcomes.remision_max: unknown setting"),
    (lambda d: d["option_sets"]["frequency"][1].update(value=0), "phq9.toml: option_sets.frequency values: 0 appears twice"),
    (lambda d: d["items"][9]["when"].update(any_of=["phq9.q11"]), "phq9.toml: items[9].when.any_of: 'phq9.q11' must be an earlier item"),
    (lambda d: d["items"][8]["flags"][0].pop("at_least"), "phq9.toml: items[8].flags[0].at_least: is missing"),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "message"), BROKEN)
def test_broken_definitions_name_file_and_field(edit: Any, message: str) -> None:
    """Every malformed field is refused with the file name and the field's path."""
    with pytest.raises(DefinitionError) as caught:
        instrument_from_mapping(broken(edit), "phq9.toml")
    assert str(caught.value).startswith(message)


def with_domain(**domain: Any) -> Any:
    """An edit that scores phq9 by one max-domain over items 1-9 with `domain`'s settings."""
    keys = [f"phq9.q{n}" for n in range(1, 10)]
    table = {"key": "all", "items": keys, "method": "max", **domain}
    return lambda d: d["scoring"].update(method="domains", domains=[table], never_impute=[])


@pytest.mark.parametrize(
    ("domain", "message"),
    [
        ({"one_of": [["phq9.q1"]]}, "scoring.domains[0].one_of[0]: must be a list of two or more"),
        ({"one_of": [["phq9.q1", "phq9.q10"]]}, "scoring.domains[0].one_of[0]: 'phq9.q10' is not"),
        (
            {"one_of": [["phq9.q1", "phq9.q2"], ["phq9.q2", "phq9.q3"]]},
            "scoring.domains[0].one_of[1]: 'phq9.q2' is not",
        ),
        (
            {"one_of": [["phq9.q1", "phq9.q2", "phq9.q3", "phq9.q4", "phq9.q5", "phq9.q6",
                         "phq9.q7", "phq9.q8", "phq9.q9"]], "max_missing": 1},
            "scoring.domains[0].max_missing: must be 0 to 0",
        ),
    ],
)  # fmt: skip
def test_one_of_groups_are_checked(domain: dict[str, Any], message: str) -> None:
    """A one_of group needs two of the domain's own items, each in one group; max_missing
    counts a group as one answer."""
    with pytest.raises(DefinitionError) as caught:
        instrument_from_mapping(broken(with_domain(**domain)), "phq9.toml")
    assert str(caught.value).startswith(f"phq9.toml: {message}")


def test_a_one_of_group_counts_as_one_answer() -> None:
    """Items 1 and 2 as a one_of group: answering either completes it."""
    data = broken(with_domain(one_of=[["phq9.q1", "phq9.q2"]], max_missing=0, method="sum"))
    data["bands"] = []
    instrument = instrument_from_mapping(data, "phq9.toml")
    answers = {f"phq9.q{n}": 1 for n in range(2, 10)}
    assert score(instrument, answers).valid
    assert not score(instrument, {k: v for k, v in answers.items() if k != "phq9.q2"}).valid


def test_invalid_toml_in_an_operator_directory(tmp_path: Path) -> None:
    """A file that is not TOML stops loading and names the file."""
    (tmp_path / "mine.toml").write_text("key = \n", encoding="utf-8")
    with pytest.raises(DefinitionError, match=r"^mine\.toml: is not valid TOML"):
        load_catalog([tmp_path])


def test_operator_cannot_silently_replace_a_shipped_instrument(tmp_path: Path) -> None:
    """A second definition of phq9 is refused rather than shadowing the published one."""
    (tmp_path / "phq9_local.toml").write_text(
        (BUILTIN_DIR / "phq9.toml").read_text(), encoding="utf-8"
    )
    with pytest.raises(DefinitionError, match=r"'phq9' is already defined in phq9\.toml"):
        load_catalog([tmp_path])


def test_operator_adds_an_instrument(tmp_path: Path) -> None:
    """An operator's own instrument file in a configured directory is loaded and validated."""
    data = (BUILTIN_DIR / "phq2.toml").read_text().replace('"phq2', '"mood2')
    (tmp_path / "mood2.toml").write_text(data, encoding="utf-8")
    assert load_catalog([tmp_path]).get("mood2").max_total == 6


def test_wording_values_must_match_the_structure() -> None:
    """An operator's wording with a missing option value is refused, naming the item."""
    structure = read_toml(BUILTIN_DIR / "qids_sr16.toml")
    items = {
        i["key"]: {"text": "t", "options": [{"value": v, "label": "l"} for v in i["values"]]}
        for i in structure["items"]
    }
    items["qids_sr16.q3"]["options"].pop()
    with pytest.raises(DefinitionError, match=r"qids_sr16\.wording\.toml: items\.qids_sr16\.q3"):
        merge_wording(structure, {"key": "qids_sr16", "items": items}, "qids_sr16.wording.toml")


def test_wording_must_cover_every_item() -> None:
    """A wording file that leaves an item out names the item."""
    structure = read_toml(BUILTIN_DIR / "madrs_s.toml")
    with pytest.raises(DefinitionError, match=r"items\.madrs_s\.q1: is missing"):
        merge_wording(structure, {"key": "madrs_s", "items": {}}, "madrs_s.wording.toml")
