"""The languages the service speaks: it has a patient's and a clinician's templates for
each (templates/<language>/), the words of its commands and numbers
(:mod:`bot.domain.parsing`) and the phrases of risk (:mod:`bot.domain.risk`).

One list for every place that accepts a language (a patient's, a clinician's, a WhatsApp
template's), so adding one is one change here plus its wording, which
tests/test_languages.py checks is all there.
"""

from __future__ import annotations

LANGUAGES = ("en", "es")
