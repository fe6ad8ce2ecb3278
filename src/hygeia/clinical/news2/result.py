"""The NEWS2 result as a FHIR Observation, as the contract defines it.

Code ``http://snomed.info/sct|1104051000000101``, ``valueInteger`` the total, a
component per parameter (its score, or a ``dataAbsentReason`` when it had no
reading: the score is then ``preliminary``), ``derivedFrom`` the vital signs
used, ``effectivePeriod`` the observation set's first and last vital, the band
as ``interpretation`` and the chart's response as a ``note``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from hygeia.clinical.news2.inputs import (
    DISPLAY,
    LOINC,
    NEWS2_SYSTEM,
    NEWS2_TOTAL,
    PARAMETER_LOINC,
    PARAMETERS,
    SNOMED,
)
from hygeia.clinical.news2.score import Score
from hygeia.fhir.datetime import format_instant

BAND_SYSTEM = "urn:hygeia:codesystem:news2-band"
ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
AIR_ASSUMED = "air assumed: no inhaled oxygen observation in the window"
TOTAL_DISPLAY = "Royal College of Physicians National Early Warning Score 2 total score"


def code_token() -> str:
    return f"{SNOMED}|{NEWS2_TOTAL}"


@cache
def component_code(parameter: str) -> dict[str, Any]:
    """The code of a parameter's component (one object per parameter, shared by every
    score: never changed in place)."""
    codings = [{"system": NEWS2_SYSTEM, "code": parameter, "display": DISPLAY[parameter]}]
    if parameter in PARAMETER_LOINC:
        codings.append({"system": LOINC, "code": PARAMETER_LOINC[parameter]})
    return {"coding": codings, "text": f"NEWS2 {DISPLAY[parameter]} score"}


def result_observation(id: str, patient: str, score: Score, start: int,
                       end: int) -> dict[str, Any]:
    """The score Observation ``id`` for ``patient``'s set from ``start`` to ``end`` (µs)."""
    components = []
    for parameter in PARAMETERS:
        value = score.scores[parameter]
        component: dict[str, Any] = {"code": component_code(parameter)}
        if value is None:
            component["dataAbsentReason"] = {"coding": [{"system": ABSENT, "code": "unknown"}],
                                             "text": "no reading in the window"}
        else:
            component["valueInteger"] = value
        components.append(component)
    resource: dict[str, Any] = {
        "resourceType": "Observation", "id": id,
        "status": "final" if score.complete else "preliminary",
        "category": [{"coding": [{"system": CATEGORY, "code": "survey"}]}],
        "code": {"coding": [{"system": SNOMED, "code": NEWS2_TOTAL,
                             "display": TOTAL_DISPLAY}], "text": "NEWS2 total score"},
        "subject": {"reference": patient},
        "effectivePeriod": {"start": format_instant(start), "end": format_instant(end)},
        "valueInteger": score.total,
        "component": components,
    }
    sources = sorted({reading.source for reading in score.used.values()})
    if sources:
        resource["derivedFrom"] = [{"reference": source} for source in sources]
    notes = _notes(score)
    if notes:
        resource["note"] = [{"text": text} for text in notes]
    band = score.band
    if band is not None:
        resource["interpretation"] = [{"coding": [{"system": BAND_SYSTEM,
                                                   "code": band.value}],
                                       "text": f"NEWS2 clinical risk {band.value}"}]
    return resource


def _notes(score: Score) -> list[str]:
    notes = []
    if score.air_assumed:
        notes.append(AIR_ASSUMED)
    if score.scale2:
        notes.append("SpO2 scored on scale 2 (a clinician's decision)")
    response = score.response
    if response is not None:
        notes.append(f"monitoring: {response.monitoring}; response: {response.response}")
    else:
        notes.append("partial score, no clinical risk band: no reading of "
                     + ", ".join(DISPLAY[name] for name in score.missing))
    return notes
