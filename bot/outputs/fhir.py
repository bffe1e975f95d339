"""Stored answers and scores as FHIR R4 resources (plain dicts, JSON-ready).

One check-in's answers to one instrument become a ``QuestionnaireResponse`` (the answers
that stand); an answer the patient replaced by going BACK becomes an ``Observation`` with
status ``entered-in-error`` (:func:`superseded_observation`); one score
becomes an ``Observation`` with the instrument's LOINC total code (and the score's place
in the treatment series as two extensions), and, where the instrument has a LOINC panel,
a panel ``Observation`` whose ``hasMember`` is the total. Clinician-rated measures are
:mod:`bot.outputs.fhir_measures`.
The patient is referred to by a pseudonymous identifier (the database id) unless the
operator asks for identifiers, when a ``Patient`` resource with name and telecom is added.
The mapping is documented in docs/EXPORTS.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from bot.domain.instruments import Instrument, Item
from bot.storage.tables import Answer, Patient, Score

LOINC = "http://loinc.org"
PATIENT_SYSTEM = "urn:mbc-checkin:patient"
CODE_SYSTEM = "urn:mbc-checkin:code"  # our own codes, where LOINC has none
BAND_SYSTEM = "urn:mbc-checkin:band"
EXTENSION = "urn:mbc-checkin:extension"  # + ":session-number", ":hours-since-session", ...
ORDINAL_VALUE = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
_NAMESPACE = uuid.UUID("6f1d3c1e-4b0a-5d8e-9c57-2a61d3f0b7a4")
OPEN_STATUSES = frozenset({"pending", "sent", "in_progress", "paused"})

Resource = dict[str, Any]


def full_url(local_id: str) -> str:
    """A stable ``urn:uuid:`` for a resource, so references inside the Bundle resolve."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, local_id)}"


def instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def patient_reference(patient_id: int, identified: bool) -> Resource:
    ref: Resource = {
        "type": "Patient",
        "identifier": {"system": PATIENT_SYSTEM, "value": str(patient_id)},
    }
    if identified:
        ref["reference"] = full_url(f"patient-{patient_id}")
    return ref


def patient_resource(patient: Patient) -> Resource:
    """The Patient with its direct identifiers (only with --include-identifiers)."""
    resource: Resource = {
        "resourceType": "Patient",
        "id": f"patient-{patient.id}",
        "identifier": [{"system": PATIENT_SYSTEM, "value": str(patient.id)}],
        "name": [{"text": patient.display_name}],
        "communication": [{"language": {"coding": [_language(patient.language)]}}],
    }
    telecom = _telecom(patient)
    if telecom:
        resource["telecom"] = [telecom]
    return resource


def _language(code: str) -> Resource:
    return {"system": "urn:ietf:bcp:47", "code": code}


def _telecom(patient: Patient) -> Resource | None:
    if not patient.address:
        return None
    if patient.channel == "sms":
        return {"system": "phone", "value": patient.address, "use": "mobile"}
    if patient.channel == "telegram":
        return {"system": "other", "value": f"telegram:{patient.address}"}
    return None


def questionnaire_response(
    checkin_id: int,
    checkin_status: str,
    instrument_key: str,
    instrument: Instrument | None,
    answers: Sequence[Answer],
    subject: Resource,
) -> Resource:
    """One check-in's answers to one instrument: completed, still open, or stopped (expired
    or cancelled with some answers)."""
    status = {"completed": "completed"}.get(
        checkin_status, "in-progress" if checkin_status in OPEN_STATUSES else "stopped"
    )
    return {
        "resourceType": "QuestionnaireResponse",
        "id": f"qr-{checkin_id}-{instrument_key}",
        "identifier": {
            "system": f"{CODE_SYSTEM}:checkin",
            "value": f"{checkin_id}:{instrument_key}",
        },
        "questionnaire": questionnaire_url(instrument_key, instrument),
        "status": status,
        "subject": subject,
        "authored": instant(max(a.answered_at for a in answers)),
        "item": [_qr_item(a, instrument) for a in answers],
    }


def questionnaire_url(key: str, instrument: Instrument | None) -> str:
    if instrument is not None and instrument.loinc_panel:
        return f"{LOINC}/q/{instrument.loinc_panel}"
    return f"urn:mbc-checkin:questionnaire:{key}"


def link_id(item_key: str, instrument: Instrument | None) -> str:
    """The item's LOINC code inside a LOINC questionnaire, else our stable item key."""
    item = _item(instrument, item_key)
    if instrument is not None and instrument.loinc_panel and item and item.loinc:
        return item.loinc
    return item_key


def _item(instrument: Instrument | None, key: str) -> Item | None:
    if instrument is None:
        return None
    return next((i for i in instrument.items if i.key == key), None)


def _qr_item(answer: Answer, instrument: Instrument | None) -> Resource:
    return {
        "linkId": link_id(answer.item_key, instrument),
        "answer": [_answer_value(answer, _item(instrument, answer.item_key))],
    }


def _answer_value(answer: Answer, item: Item | None) -> Resource:
    if answer.value_int is None:
        return {"valueString": answer.value_text or ""}
    option = item.option(answer.value_int) if item else None
    if option is None or option.loinc is None:
        return {"valueInteger": answer.value_int}
    return {
        "valueCoding": {
            "extension": [{"url": ORDINAL_VALUE, "valueDecimal": option.points}],
            "system": LOINC,
            "code": option.loinc,
            "display": option.label.get("en"),
        }
    }


def superseded_observation(
    answer: Answer, instrument: Instrument | None, subject: Resource
) -> Resource:
    """An answer the patient replaced, kept as given: an ``entered-in-error`` Observation
    of the item (its LOINC code, else our item key) with the value answered then, derived
    from the check-in's response and noting when and by which answer it was replaced."""
    item = _item(instrument, answer.item_key)
    code = (
        {"system": LOINC, "code": item.loinc}
        if item is not None and item.loinc
        else {"system": CODE_SYSTEM, "code": answer.item_key}
    )
    resource: Resource = {
        "resourceType": "Observation",
        "id": f"answer-{answer.id}",
        "identifier": [{"system": f"{CODE_SYSTEM}:answer", "value": str(answer.id)}],
        "status": "entered-in-error",
        "category": [_survey()],
        "code": {"coding": [code], "text": answer.item_key},
        "subject": subject,
        "effectiveDateTime": instant(answer.answered_at),
        "derivedFrom": [{"reference": full_url(f"qr-{answer.checkin_id}-{answer.instrument}")}],
        "note": [{"text": _superseded_note(answer)}],
    }
    return resource | _observation_value(answer, item)


def _superseded_note(answer: Answer) -> str:
    assert answer.superseded_at is not None
    return (
        f"superseded at {instant(answer.superseded_at)} by answer {answer.superseded_by}: "
        "the patient went back and answered this item again"
    )


def _observation_value(answer: Answer, item: Item | None) -> Resource:
    value = _answer_value(answer, item)
    if "valueCoding" in value:
        return {"valueCodeableConcept": {"coding": [value["valueCoding"]]}}
    return value


def score_observations(
    score: Score, instrument: Instrument | None, subject: Resource
) -> list[Resource]:
    """The total-score Observation, and the panel Observation that holds it, if any."""
    total = _total_observation(score, instrument, subject)
    if instrument is None or not instrument.loinc_panel:
        return [total]
    panel = {
        "resourceType": "Observation",
        "id": f"panel-{score.id}",
        "status": "final",
        "category": [_survey()],
        "code": {"coding": [{"system": LOINC, "code": instrument.loinc_panel}]},
        "subject": subject,
        "effectiveDateTime": instant(score.completed_at),
        "hasMember": [{"reference": full_url(total["id"])}],
        "derivedFrom": [{"reference": full_url(f"qr-{score.checkin_id}-{score.instrument}")}],
    }
    return [total, panel]


def _total_observation(score: Score, instrument: Instrument | None, subject: Resource) -> Resource:
    code = (
        {"system": LOINC, "code": instrument.loinc_total}
        if instrument is not None and instrument.loinc_total
        else {"system": CODE_SYSTEM, "code": f"{score.instrument}.total"}
    )
    resource: Resource = {
        "resourceType": "Observation",
        "id": f"score-{score.id}",
        "status": "final",
        "category": [_survey()],
        "code": {"coding": [code], "text": instrument.name if instrument else score.instrument},
        "subject": subject,
        "effectiveDateTime": instant(score.completed_at),
        "derivedFrom": [{"reference": full_url(f"qr-{score.checkin_id}-{score.instrument}")}],
    }
    if extensions := series_extensions(score):
        resource["extension"] = extensions
    if score.valid and score.total is not None:
        resource["valueInteger"] = score.total
    else:
        resource["dataAbsentReason"] = {"coding": [{"system": ABSENT, "code": "unknown"}]}
    if score.band:
        resource["interpretation"] = [{"coding": [{"system": BAND_SYSTEM, "code": score.band}]}]
    if score.prorated:
        resource["method"] = {"text": "prorated for missing items"}
    return resource


def series_extensions(score: Score) -> list[Resource]:
    """Where the score stands in the treatment series, as fixed when it was made: the
    sessions held before it (valueInteger) and the hours since the latest (valueDecimal;
    absent before the first session)."""
    found: list[Resource] = []
    if score.session_number is not None:
        found.append({"url": f"{EXTENSION}:session-number", "valueInteger": score.session_number})
    if score.hours_since_session is not None:
        hours = score.hours_since_session
        found.append({"url": f"{EXTENSION}:hours-since-session", "valueDecimal": hours})
    return found


def _survey() -> Resource:
    return {"coding": [{"system": CATEGORY, "code": "survey"}]}
