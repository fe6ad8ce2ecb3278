"""The ``care-gaps`` service (patient-view): measures as data, evaluated against the record.

Each measure of ``knowledge/care_gaps.json`` says whom it is for (an active
Condition with one of its codes, or a minimum age) and what closes the gap (an
Observation or Immunization with one of its codes, within ``within_days`` or since
the start of the season). Each open gap is an info card saying why, with the
evidence (the Condition, and the last closing record if any).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from typing import Any

from hygeia.clinical.cds.model import CdsService, HookCall, Source, card
from hygeia.fhir.datetime import fhir_datetime_range, now_us
from hygeia.fhir.outcome import FhirError

SOURCE = Source("Hygeia care gaps (measures in clinical/cds/knowledge/care_gaps.json)")
DAY_US = 86_400 * 1_000_000
YEAR_US = 365.25 * DAY_US


@cache
def measures() -> list[dict[str, Any]]:
    data = json.loads((files("hygeia.clinical.cds") / "knowledge" / "care_gaps.json")
                      .read_text(encoding="utf-8"))
    return list(data["measures"])


def _prefetch() -> dict[str, str]:
    observation_codes = sorted({code for measure in measures()
                                if measure["closed_by"]["resource"] == "Observation"
                                for code in measure["closed_by"]["codes"]})
    return {"patient": "Patient/{{context.patientId}}",
            "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
            "observations": "Observation?patient={{context.patientId}}&code="
                            + ",".join(observation_codes) + "&_sort=-date",
            "immunizations": "Immunization?patient={{context.patientId}}&_sort=-date"}


def care_gaps_service() -> CdsService:
    return CdsService(
        "care-gaps", "patient-view", "Care gaps",
        "Open care gaps from measures kept as data: " +
        "; ".join(measure["title"] for measure in measures()) + ".",
        _prefetch(), care_gap_cards)


def _codes(resource: dict[str, Any], element: str) -> set[str]:
    concept = resource.get(element) or {}
    return {f"{coding.get('system')}|{coding.get('code')}"
            for coding in concept.get("coding") or [] if isinstance(coding, dict)}


def _time(resource: dict[str, Any]) -> int | None:
    text = resource.get("effectiveDateTime") or resource.get("occurrenceDateTime") or \
        resource.get("issued") or (resource.get("effectivePeriod") or {}).get("start")
    if not isinstance(text, str):
        return None
    try:
        return fhir_datetime_range(text)[0]
    except FhirError:
        return None


def season_start(now: int, month_day: str) -> int:
    """The latest ``MM-DD`` (UTC) at or before ``now``."""
    moment = datetime.fromtimestamp(now / 1_000_000, UTC)
    month, day = (int(part) for part in month_day.split("-"))
    start = datetime(moment.year, month, day, tzinfo=UTC)
    if start > moment:
        start = start.replace(year=moment.year - 1)
    return int(start.timestamp() * 1_000_000)


def _age(patient: dict[str, Any] | None, now: int) -> float | None:
    birth = (patient or {}).get("birthDate")
    if not isinstance(birth, str):
        return None
    try:
        return (now - fhir_datetime_range(birth)[0]) / YEAR_US
    except FhirError:
        return None


def care_gap_cards(call: HookCall) -> list[dict[str, Any]]:
    now = now_us()
    cards = []
    for measure in measures():
        reason = _applies(call, measure, now)
        if reason is None:
            continue
        closing = measure["closed_by"]
        key = "observations" if closing["resource"] == "Observation" else "immunizations"
        since = season_start(now, measure["since_season_start"]) \
            if "since_season_start" in measure else now - int(measure["within_days"] * DAY_US)
        records = [(at, record) for record in call.bundle(key)
                   if _codes(record, "code" if key == "observations" else "vaccineCode")
                   & set(closing["codes"]) and (at := _time(record)) is not None
                   and record.get("status") not in ("entered-in-error", "not-done")]
        if any(at >= since for at, _ in records):
            continue
        last = max(records, key=lambda pair: pair[0], default=None)
        evidence = "none recorded" if last is None else \
            f"the last was {last[1]['resourceType']}/{last[1].get('id')} on " \
            f"{datetime.fromtimestamp(last[0] / 1_000_000, UTC).date().isoformat()}"
        cards.append(card(measure["title"], "info", SOURCE,
                          detail=f"{reason}; {evidence}."))
    return cards


def _applies(call: HookCall, measure: dict[str, Any], now: int) -> str | None:
    """Why the measure is for this patient, or None."""
    if "for_min_age" in measure:
        age = _age(call.resource("patient"), now)
        if age is None or age < measure["for_min_age"]:
            return None
        return f"the patient is {int(age)} years old"
    wanted = set(measure["for_conditions"])
    for condition in call.bundle("conditions"):
        if _codes(condition, "code") & wanted:
            return f"Condition/{condition.get('id')} is active"
    return None
