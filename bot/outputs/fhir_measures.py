"""Clinician-rated measures as FHIR R4 Observations (documented in docs/EXPORTS.md).

* MADRS total: LOINC has none we could verify, so our code ``madrs.total`` (system
  ``urn:mbc-checkin:code``); ``valueInteger``, the band as interpretation, the rater as
  ``performer`` (a pseudonymous clinician identifier).
* Blood pressure: category ``vital-signs``, code LOINC 85354-9 (blood pressure panel)
  with components 8480-6 (systolic) and 8462-4 (diastolic) in mm[Hg] (UCUM); the time
  point (``pre``, ``40min``, ``2h``) as an extension.
* Like every score Observation, it carries its place in the series
  (``bot.outputs.fhir.series_extensions``).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain.measures import BLOOD_PRESSURE, MADRS, MADRS_MAX
from bot.outputs.fhir import (
    BAND_SYSTEM,
    CATEGORY,
    CODE_SYSTEM,
    EXTENSION,
    LOINC,
    Resource,
    instant,
    series_extensions,
)
from bot.storage.tables import Score

FLAG_SYSTEM = "urn:mbc-checkin:flag"
CLINICIAN_SYSTEM = "urn:mbc-checkin:clinician"
UCUM = "http://unitsofmeasure.org"
BP_PANEL, SYSTOLIC, DIASTOLIC = "85354-9", "8480-6", "8462-4"


@dataclass(frozen=True)
class MeasureCodes:
    max_total: int | str = ""
    loinc_panel: str = ""
    loinc_total: str = ""


def measure_codes(instrument: str) -> MeasureCodes:
    """The CSV's max_total and LOINC columns for a clinician-rated measure (blank for
    anything else)."""
    if instrument == MADRS:
        return MeasureCodes(max_total=MADRS_MAX)
    if instrument == BLOOD_PRESSURE:
        return MeasureCodes(loinc_panel=BP_PANEL)
    return MeasureCodes()


def measure_observation(score: Score, subject: Resource) -> Resource:
    """A clinician-rated measure (a score without a check-in) as one Observation."""
    resource: Resource = {
        "resourceType": "Observation",
        "id": f"score-{score.id}",
        "identifier": [{"system": f"{CODE_SYSTEM}:score", "value": str(score.id)}],
        "status": "final",
        "subject": subject,
        "effectiveDateTime": instant(score.completed_at),
    }
    extensions = series_extensions(score)
    if score.time_point:
        extensions.append({"url": f"{EXTENSION}:time-point", "valueCode": score.time_point})
    if extensions:
        resource["extension"] = extensions
    if score.rated_by is not None:
        who = {"system": CLINICIAN_SYSTEM, "value": str(score.rated_by)}
        resource["performer"] = [{"type": "Practitioner", "identifier": who}]
    interpretation = [{"system": FLAG_SYSTEM, "code": f} for f in score.flags]
    if score.band:
        interpretation.insert(0, {"system": BAND_SYSTEM, "code": score.band})
    if interpretation:
        resource["interpretation"] = [{"coding": [c]} for c in interpretation]
    if score.instrument == BLOOD_PRESSURE:
        return resource | _blood_pressure(score)
    return resource | _total(score)


def _blood_pressure(score: Score) -> Resource:
    parts = score.components or {}
    return {
        "category": [_category("vital-signs")],
        "code": {"coding": [{"system": LOINC, "code": BP_PANEL}], "text": "Blood pressure"},
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": _mmhg(parts[key]),
            }
            for code, key in ((SYSTOLIC, "systolic"), (DIASTOLIC, "diastolic"))
        ],
    }


def _total(score: Score) -> Resource:
    return {
        "category": [_category("survey")],
        "code": {
            "coding": [{"system": CODE_SYSTEM, "code": f"{score.instrument}.total"}],
            "text": "MADRS total (clinician-rated)"
            if score.instrument == MADRS
            else score.instrument,
        },
        "valueInteger": score.total,
    }


def _mmhg(value: int) -> Resource:
    return {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}


def _category(code: str) -> Resource:
    return {"coding": [{"system": CATEGORY, "code": code}]}
