"""The ``qsofa`` service (patient-view): quick SOFA in a patient with suspected infection.

Sepsis-3 (Singer et al., JAMA 2016): one point each for a respiratory rate of 22/min
or more, altered mentation (ACVPU other than alert, or a Glasgow coma score under
15) and a systolic pressure of 100 mmHg or less; 2 or more flags a high risk of a
poor outcome. It answers only when the record suggests infection: an active
Condition with one of the SNOMED CT codes in ``INFECTION_CODES``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hygeia.clinical.cds.model import CdsService, HookCall, Source, card
from hygeia.clinical.cds.services.vitals import GCS_TOTAL, VITALS_SEARCH, recent_readings
from hygeia.clinical.news2.inputs import (
    CONSCIOUSNESS,
    RESPIRATION,
    SNOMED,
    SYSTOLIC,
    effective_us,
    loinc_codes,
)
from hygeia.clinical.news2.score import latest
from hygeia.clinical.news2.scoring import Consciousness

SOURCE = Source("Hygeia qSOFA (Sepsis-3, Singer et al., JAMA 2016)",
                "https://doi.org/10.1001/jama.2016.0287")
# suspected infection: infectious disease, sepsis, pneumonia, urinary tract infection,
# cellulitis, acute bronchitis, viral sinusitis, streptococcal sore throat
INFECTION_CODES = ("40733004", "91302008", "233604007", "68566005", "128045006",
                   "10509002", "444814009", "43878008")
PREFETCH = {
    "vitals": VITALS_SEARCH,
    "infections": "Condition?patient={{context.patientId}}&clinical-status=active&code="
                  + ",".join(f"{SNOMED}|{code}" for code in INFECTION_CODES),
}


def qsofa_service(window_seconds: float) -> CdsService:
    window = int(window_seconds * 1_000_000)

    def answer(call: HookCall) -> list[dict[str, Any]]:
        return qsofa_cards(call, window)

    return CdsService(
        "qsofa", "patient-view", "qSOFA in suspected infection",
        "Quick SOFA (Sepsis-3) from the latest respiratory rate, mentation and systolic "
        "pressure, for patients with an active infection in their record.",
        PREFETCH, answer)


def _infected(call: HookCall) -> bool:
    for condition in call.bundle("infections"):
        status = [c.get("code") for c in
                  (condition.get("clinicalStatus") or {}).get("coding") or []]
        codes = [c.get("code") for c in (condition.get("code") or {}).get("coding") or []
                 if c.get("system") == SNOMED]
        if "active" in status and any(code in INFECTION_CODES for code in codes):
            return True
    return False


def _gcs(call: HookCall, since: int) -> Decimal | None:
    """The latest Glasgow coma score total since ``since``, if any."""
    best: tuple[int, Decimal] | None = None
    for observation in call.bundle("vitals"):
        value = (observation.get("valueQuantity") or {}).get("value")
        at = effective_us(observation)
        if GCS_TOTAL in loinc_codes(observation.get("code")) and at is not None and \
                at >= since and isinstance(value, int | float) and \
                (best is None or at > best[0]):
            best = (at, Decimal(str(value)))
    return None if best is None else best[1]


def qsofa_cards(call: HookCall, window: int) -> list[dict[str, Any]]:
    if not _infected(call):
        return []
    readings, newest = recent_readings(call, "vitals", window)
    used = latest(readings)
    points: list[str] = []
    missing: list[str] = []
    respiration, systolic = used.get(RESPIRATION), used.get(SYSTOLIC)
    if respiration is None:
        missing.append("respiratory rate")
    elif isinstance(respiration.value, Decimal) and respiration.value >= 22:
        points.append(f"respiratory rate {respiration.value}/min (>= 22)")
    if systolic is None:
        missing.append("systolic pressure")
    elif isinstance(systolic.value, Decimal) and systolic.value <= 100:
        points.append(f"systolic pressure {systolic.value} mmHg (<= 100)")
    level = used.get(CONSCIOUSNESS)
    gcs = _gcs(call, newest - window) if newest is not None else None
    if level is None and gcs is None:
        missing.append("mentation")
    elif (level is not None and level.value is not Consciousness.ALERT) or \
            (gcs is not None and gcs < 15):
        points.append("altered mentation")
    detail = "\n".join([*(f"- {point}" for point in points),
                        *(f"- no recent {name}" for name in missing)])
    if len(points) >= 2:
        return [card(f"qSOFA {len(points)}: high risk of poor outcome in suspected infection",
                     "critical" if len(points) == 3 else "warning", SOURCE, detail=detail)]
    if missing:
        return [card(f"qSOFA at least {len(points)}: {', '.join(missing)} not recorded",
                     "info", SOURCE, detail=detail)]
    return [card(f"qSOFA {len(points)} in suspected infection", "info", SOURCE,
                 detail=detail or "No qSOFA criterion is met.")]
