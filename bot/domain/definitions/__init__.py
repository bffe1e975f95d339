"""Build :class:`Instrument` values from parsed definition data (a TOML table).

Pure: the caller reads the file and passes the mapping plus its name, so every error names
the file and the field (``gad7.toml: items[2].options: unknown option set 'freq'``).

Licensed instruments ship as structure only (``wording = "operator"``): their item texts and
option labels come from a separate wording mapping an operator supplies; :func:`merge_wording`
folds it in and checks it matches the structure.

* :mod:`.instrument`: the top-level builder, scoring, bands and outcome rules.
* :mod:`.items`: items and their answer options (option sets, flags, conditions).
* :mod:`.wording`: an operator's wording folded into a structure-only definition.
* :mod:`.languages`: a wording file adding languages to an instrument that has its words.
* :mod:`.reader`: typed access to the untrusted mappings, every error with file and field.

The names below are the family's public surface; code outside it imports from here.
"""

from bot.domain.definitions.instrument import instrument_from_mapping
from bot.domain.definitions.items import CRISIS_KINDS
from bot.domain.definitions.languages import add_languages
from bot.domain.definitions.wording import merge_wording, needs_wording

__all__ = [
    "CRISIS_KINDS",
    "add_languages",
    "instrument_from_mapping",
    "merge_wording",
    "needs_wording",
]
