"""What the patient-view services share: the prefetch of vital signs and their readings."""

from __future__ import annotations

from hygeia.clinical.cds.model import HookCall
from hygeia.clinical.news2.inputs import LOINC, VITAL_CODES, Reading, readings_of

GCS_TOTAL = "9269-2"  # Glasgow coma score total: under 15 is altered mentation (qSOFA)
VITALS_SEARCH = ("Observation?patient={{context.patientId}}&code="
                 + ",".join(f"{LOINC}|{code}" for code in (*VITAL_CODES, GCS_TOTAL))
                 + "&_sort=-date")


def recent_readings(call: HookCall, key: str, window_us: int) -> tuple[list[Reading], int | None]:
    """The readings of the latest ``window_us`` before the newest vital, and its time."""
    readings = [reading for observation in call.bundle(key)
                for reading in readings_of(observation)]
    if not readings:
        return [], None
    newest = max(reading.at for reading in readings)
    return [reading for reading in readings if reading.at >= newest - window_us], newest
