"""A NEWS2 score from a patient's readings: the latest of each parameter, scored.

Pure: the engine and the CDS service both call :func:`score_readings` with the
readings they gathered. A parameter without a reading has no score (a partial
score, which never sets a band); no inhaled-oxygen reading means air, and the
score says the air was assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from hygeia.clinical.news2.inputs import (
    CONSCIOUSNESS,
    OXYGEN,
    PARAMETERS,
    PULSE,
    RESPIRATION,
    SPO2,
    SYSTOLIC,
    TEMPERATURE,
    Reading,
)
from hygeia.clinical.news2.scoring import (
    Band,
    Consciousness,
    Response,
    band_of,
    consciousness_score,
    oxygen_score,
    pulse_score,
    respiration_score,
    response_of,
    spo2_score,
    systolic_score,
    temperature_score,
)


@dataclass(frozen=True, slots=True)
class Score:
    """One NEWS2 score: each parameter's score (None: no reading), the readings used."""

    scores: dict[str, int | None]
    used: dict[str, Reading]
    air_assumed: bool
    scale2: bool

    @property
    def total(self) -> int:
        return sum(score for score in self.scores.values() if score is not None)

    @property
    def complete(self) -> bool:
        return all(score is not None for score in self.scores.values())

    @property
    def missing(self) -> list[str]:
        return [name for name, score in self.scores.items() if score is None]

    @property
    def band(self) -> Band | None:
        """The clinical risk band; None for a partial score (it never sets one)."""
        if not self.complete:
            return None
        return band_of([score for score in self.scores.values() if score is not None])

    @property
    def response(self) -> Response | None:
        band = self.band
        return None if band is None else response_of(self.total, band)


def latest(readings: list[Reading]) -> dict[str, Reading]:
    """The latest reading of each parameter (the later-listed one wins a tie)."""
    chosen: dict[str, Reading] = {}
    for reading in readings:
        if reading.parameter not in chosen or reading.at >= chosen[reading.parameter].at:
            chosen[reading.parameter] = reading
    return chosen


def score_readings(readings: list[Reading], *, scale2: bool = False) -> Score:
    """Score the latest reading of each parameter among ``readings``."""
    used = latest(readings)
    oxygen_reading = used.get(OXYGEN)
    on_oxygen = bool(oxygen_reading.value) if oxygen_reading is not None else False
    scores: dict[str, int | None] = {}
    for parameter in PARAMETERS:
        reading = used.get(parameter)
        if parameter == OXYGEN:
            scores[OXYGEN] = oxygen_score(on_oxygen)
        elif reading is None:
            scores[parameter] = None
        else:
            scores[parameter] = _score_one(parameter, reading.value, scale2, on_oxygen)
    return Score(scores, used, oxygen_reading is None, scale2)


def _score_one(parameter: str, value: Decimal | Consciousness | bool, scale2: bool,
               oxygen: bool) -> int:
    if parameter == CONSCIOUSNESS:
        assert isinstance(value, Consciousness)
        return consciousness_score(value)
    assert isinstance(value, Decimal)
    if parameter == SPO2:
        return spo2_score(value, scale2=scale2, oxygen=oxygen)
    return {RESPIRATION: respiration_score, SYSTOLIC: systolic_score, PULSE: pulse_score,
            TEMPERATURE: temperature_score}[parameter](value)
