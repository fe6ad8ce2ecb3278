"""The engine stores its score Observations without validating them again: every score
it can build must be valid R4, complete or partial, on either SpO2 scale."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from hygeia.clinical.news2.inputs import (
    CONSCIOUSNESS,
    OXYGEN,
    PULSE,
    RESPIRATION,
    SPO2,
    SYSTOLIC,
    TEMPERATURE,
    Reading,
)
from hygeia.clinical.news2.result import result_observation
from hygeia.clinical.news2.score import score_readings
from hygeia.clinical.news2.scoring import Consciousness
from hygeia.fhir.validation import validate

AT = 1_772_359_200_000_000  # 2026-03-01T10:00:00Z
NUMBERS = {RESPIRATION: (4, 40), SPO2: (70, 100), SYSTOLIC: (60, 240), PULSE: (30, 160),
           TEMPERATURE: (33, 41)}

reading = st.one_of(
    *[st.builds(Reading, st.just(name), st.integers(*bounds).map(Decimal), st.just(AT),
                st.just(f"Observation/{name}")) for name, bounds in NUMBERS.items()],
    st.builds(Reading, st.just(CONSCIOUSNESS), st.sampled_from(Consciousness), st.just(AT),
              st.just("Observation/acvpu")),
    st.builds(Reading, st.just(OXYGEN), st.booleans(), st.just(AT), st.just("Observation/o2")))


@settings(max_examples=200, deadline=None)
@given(st.lists(reading, max_size=9), st.booleans(), st.integers(0, 300_000_000))
def test_every_score_the_engine_builds_is_valid(readings: list[Reading], scale2: bool,
                                                 length: int) -> None:
    score = score_readings(readings, scale2=scale2)
    resource = result_observation("score-1", "Patient/p1", score, AT, AT + length)
    assert validate(resource, "Observation") == []
    assert resource["status"] == ("final" if score.complete else "preliminary")
