"""NEWS2 scoring as pure functions, from the Royal College of Physicians 2017 chart.

Each parameter's row of the chart is a table of (highest value, score) steps,
read from the lowest range up; the aggregate is the sum of the parameter scores,
and the clinical risk band follows the chart's thresholds (an aggregate of 5 or 6
is medium, 7 or more high, a 3 in any single parameter low-medium, else low).

The chart's rows are in whole numbers (temperature in tenths of a degree):
a measured value is rounded half up to that precision before it is looked up,
so 20.5 breaths/min scores as 21 and 38.05 °C as 38.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import Enum

# (highest value of the range, score), lowest range first; the last range is open above
Steps = tuple[tuple[Decimal | None, int], ...]


def _steps(*pairs: tuple[str | None, int]) -> Steps:
    return tuple((None if high is None else Decimal(high), score) for high, score in pairs)


RESPIRATION = _steps(("8", 3), ("11", 1), ("20", 0), ("24", 2), (None, 3))
SPO2_SCALE_1 = _steps(("91", 3), ("93", 2), ("95", 1), (None, 0))
# scale 2 below 93 %; at 93 % or more it depends on air or oxygen (SPO2_SCALE_2_OXYGEN)
SPO2_SCALE_2_LOW = _steps(("83", 3), ("85", 2), ("87", 1), ("92", 0))
SPO2_SCALE_2_OXYGEN = _steps(("94", 1), ("96", 2), (None, 3))
SYSTOLIC = _steps(("90", 3), ("100", 2), ("110", 1), ("219", 0), (None, 3))
PULSE = _steps(("40", 3), ("50", 1), ("90", 0), ("110", 1), ("130", 2), (None, 3))
TEMPERATURE = _steps(("35.0", 3), ("36.0", 1), ("38.0", 0), ("39.0", 1), (None, 2))
OXYGEN_SCORE = 2  # "Air or oxygen?": oxygen scores 2, air 0

WHOLE = Decimal("1")
TENTH = Decimal("0.1")


class Consciousness(Enum):
    """ACVPU: alert scores 0; new confusion, voice, pain and unresponsive score 3."""

    ALERT = "A"
    NEW_CONFUSION = "C"
    VOICE = "V"
    PAIN = "P"
    UNRESPONSIVE = "U"


class Band(Enum):
    """The chart's clinical risk bands, lowest first."""

    LOW = "low"
    LOW_MEDIUM = "low-medium"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class Response:
    """What the chart asks for at a score: monitoring frequency and clinical response."""

    monitoring: str
    response: str


def _round(value: float | Decimal, precision: Decimal) -> Decimal:
    return Decimal(str(value)).quantize(precision, rounding=ROUND_HALF_UP)


def _look_up(steps: Steps, value: Decimal) -> int:
    for high, score in steps:
        if high is None or value <= high:
            return score
    raise ValueError(f"{value} is above the last range of the row")  # pragma: no cover


def respiration_score(per_minute: float | Decimal) -> int:
    return _look_up(RESPIRATION, _round(per_minute, WHOLE))


def spo2_score(percent: float | Decimal, *, scale2: bool, oxygen: bool) -> int:
    """SpO2 scale 1, or scale 2 (hypercapnic respiratory failure, a clinician's decision):
    on scale 2, 88-92 % scores 0, and 93 % or more scores 0 on air but 1-3 on oxygen."""
    value = _round(percent, WHOLE)
    if not scale2:
        return _look_up(SPO2_SCALE_1, value)
    if value <= Decimal(92):
        return _look_up(SPO2_SCALE_2_LOW, value)
    return _look_up(SPO2_SCALE_2_OXYGEN, value) if oxygen else 0


def oxygen_score(oxygen: bool) -> int:
    return OXYGEN_SCORE if oxygen else 0


def systolic_score(mm_hg: float | Decimal) -> int:
    return _look_up(SYSTOLIC, _round(mm_hg, WHOLE))


def pulse_score(per_minute: float | Decimal) -> int:
    return _look_up(PULSE, _round(per_minute, WHOLE))


def consciousness_score(level: Consciousness) -> int:
    return 0 if level is Consciousness.ALERT else 3


def temperature_score(celsius: float | Decimal) -> int:
    return _look_up(TEMPERATURE, _round(celsius, TENTH))


def band_of(scores: list[int]) -> Band:
    """The clinical risk band of a complete set of parameter scores."""
    total = sum(scores)
    if total >= 7:
        return Band.HIGH
    if total >= 5:
        return Band.MEDIUM
    if any(score == 3 for score in scores):
        return Band.LOW_MEDIUM
    return Band.LOW


def response_of(total: int, band: Band) -> Response:
    """The chart's monitoring frequency and clinical response for ``total`` in ``band``."""
    if band is Band.HIGH:
        return Response("continuous monitoring of vital signs",
                        "emergency assessment by a team with critical-care competencies")
    if band in (Band.MEDIUM, Band.LOW_MEDIUM):
        return Response("minimum 1-hourly",
                        "urgent review by a clinician skilled in assessing acute illness"
                        if band is Band.LOW_MEDIUM else
                        "urgent response: key threshold for urgent assessment by a "
                        "clinician with competencies in acute illness")
    if total == 0:
        return Response("minimum 12-hourly", "continue routine NEWS monitoring")
    return Response("minimum 4-6-hourly",
                    "inform the registered nurse, who decides whether to increase "
                    "monitoring or escalate care")
