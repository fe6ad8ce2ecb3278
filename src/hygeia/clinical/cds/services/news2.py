"""The ``news2`` service (patient-view): the patient's NEWS2 from the latest vital signs.

The same scoring as the early-warning engine (hygeia.clinical.news2): the latest
reading of each parameter within the window before the newest vital sign. The card's
indicator follows the band (critical for high, warning for medium and low-medium,
info otherwise); a partial score, a patient under 16 or a pregnancy is said so on an
info card, never scored as if complete.
"""

from __future__ import annotations

from typing import Any

from hygeia.clinical.cds.model import CdsService, HookCall, Indicator, Source, card
from hygeia.clinical.cds.services.vitals import VITALS_SEARCH, recent_readings
from hygeia.clinical.news2.inputs import (
    DISPLAY,
    PARAMETERS,
    PREGNANCY,
    SNOMED,
    is_pregnancy,
    is_scale_2_flag,
    under_16,
)
from hygeia.clinical.news2.score import score_readings
from hygeia.clinical.news2.scoring import Band
from hygeia.fhir.datetime import format_instant

SOURCE = Source("Hygeia NEWS2 (Royal College of Physicians, 2017)",
                "https://www.rcp.ac.uk/improving-care/resources/"
                "national-early-warning-score-news-2/")
LINKS = [{"label": "The NEWS2 chart and clinical response (RCP)", "type": "absolute",
          "url": "https://www.rcp.ac.uk/improving-care/resources/"
                 "national-early-warning-score-news-2/"}]
INDICATOR: dict[Band, Indicator] = {Band.HIGH: "critical", Band.MEDIUM: "warning",
                                    Band.LOW_MEDIUM: "warning", Band.LOW: "info"}
PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "vitals": VITALS_SEARCH,
    "flags": "Flag?patient={{context.patientId}}",
    "pregnancy": "Condition?patient={{context.patientId}}&code="
                 f"{SNOMED}|{PREGNANCY}&clinical-status=active",
}


def news2_service(window_seconds: float) -> CdsService:
    window = int(window_seconds * 1_000_000)

    def answer(call: HookCall) -> list[dict[str, Any]]:
        return news2_cards(call, window)

    return CdsService(
        "news2", "patient-view", "NEWS2 early warning score",
        "The National Early Warning Score 2 (RCP 2017) from the patient's latest vital "
        "signs, with the clinical risk band and the chart's recommended response.",
        PREFETCH, answer)


def news2_cards(call: HookCall, window: int) -> list[dict[str, Any]]:
    readings, newest = recent_readings(call, "vitals", window)
    if newest is None:
        return [card("NEWS2: no vital signs recorded", "info", SOURCE,
                     detail="No respiration rate, SpO2, blood pressure, pulse, "
                            "consciousness or temperature is recorded for the patient.")]
    if under_16(call.resource("patient"), newest):
        return [card("NEWS2 does not apply: the patient is under 16", "info", SOURCE,
                     detail="NEWS2 is not validated for children; use a paediatric "
                            "early warning score.")]
    if any(is_pregnancy(condition) for condition in call.bundle("pregnancy")):
        return [card("NEWS2 does not apply in pregnancy", "info", SOURCE,
                     detail="NEWS2 is not validated in pregnancy; use an obstetric early "
                            "warning score.")]
    scale2 = any(is_scale_2_flag(flag) for flag in call.bundle("flags"))
    score = score_readings(readings, scale2=scale2)
    lines = [f"- {DISPLAY[name]}: " + ("no reading" if score.scores[name] is None
                                        else str(score.scores[name]))
             for name in PARAMETERS]
    when = f"Vital signs up to {format_instant(newest)[:19]}Z."
    if score.air_assumed:
        lines.append("- air assumed: no inhaled oxygen recorded")
    band = score.band
    if band is None:
        return [card(f"NEWS2 at least {score.total} (partial: "
                     f"{', '.join(DISPLAY[name] for name in score.missing)} missing)",
                     "info", SOURCE, detail="\n".join([when, *lines]))]
    response = score.response
    assert response is not None
    return [card(f"NEWS2 {score.total}: {band.value} clinical risk", INDICATOR[band], SOURCE,
                 detail="\n".join([when, *lines, "",
                                   f"Monitoring: {response.monitoring}.",
                                   f"Response: {response.response}."]), links=LINKS)]
