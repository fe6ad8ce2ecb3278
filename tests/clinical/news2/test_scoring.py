"""NEWS2 scores against the RCP 2017 chart: every boundary value of every row."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hygeia.clinical.news2.scoring import (
    Band,
    Consciousness,
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


@pytest.mark.parametrize(("value", "score"), [
    (0, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (60, 3),
    (8.4, 3), (8.5, 1), (20.5, 2)])
def test_respiration(value: float, score: int) -> None:
    assert respiration_score(value) == score


@pytest.mark.parametrize(("value", "score"), [
    (50, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0), (91.5, 2)])
@pytest.mark.parametrize("oxygen", [False, True])
def test_spo2_scale_1_ignores_oxygen(value: float, score: int, oxygen: bool) -> None:
    assert spo2_score(value, scale2=False, oxygen=oxygen) == score


@pytest.mark.parametrize(("value", "oxygen", "score"), [
    (70, False, 3), (83, False, 3), (84, False, 2), (85, True, 2), (86, False, 1),
    (87, True, 1), (88, False, 0), (92, True, 0), (93, False, 0), (100, False, 0),
    (93, True, 1), (94, True, 1), (95, True, 2), (96, True, 2), (97, True, 3), (100, True, 3)])
def test_spo2_scale_2(value: float, oxygen: bool, score: int) -> None:
    assert spo2_score(value, scale2=True, oxygen=oxygen) == score


def test_air_or_oxygen() -> None:
    assert (oxygen_score(False), oxygen_score(True)) == (0, 2)


@pytest.mark.parametrize(("value", "score"), [
    (40, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3),
    (300, 3)])
def test_systolic(value: float, score: int) -> None:
    assert systolic_score(value) == score


@pytest.mark.parametrize(("value", "score"), [
    (20, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2),
    (130, 2), (131, 3), (220, 3)])
def test_pulse(value: float, score: int) -> None:
    assert pulse_score(value) == score


@pytest.mark.parametrize(("value", "score"), [
    (30.0, 3), (35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1),
    (39.1, 2), (42.0, 2), (35.04, 3), (35.05, 1), (38.05, 1)])
def test_temperature(value: float, score: int) -> None:
    assert temperature_score(value) == score


@pytest.mark.parametrize(("level", "score"), [
    (Consciousness.ALERT, 0), (Consciousness.NEW_CONFUSION, 3), (Consciousness.VOICE, 3),
    (Consciousness.PAIN, 3), (Consciousness.UNRESPONSIVE, 3)])
def test_consciousness(level: Consciousness, score: int) -> None:
    assert consciousness_score(level) == score


@pytest.mark.parametrize(("scores", "band"), [
    ([0, 0, 0, 0, 0, 0, 0], Band.LOW),
    ([1, 1, 1, 1, 0, 0, 0], Band.LOW),          # 4: still low
    ([2, 2, 0, 0, 0, 0, 0], Band.LOW),
    ([3, 0, 0, 0, 0, 0, 0], Band.LOW_MEDIUM),   # a single 3 with an aggregate under 5
    ([3, 1, 0, 0, 0, 0, 0], Band.LOW_MEDIUM),
    ([2, 2, 1, 0, 0, 0, 0], Band.MEDIUM),       # 5
    ([3, 2, 0, 0, 0, 0, 0], Band.MEDIUM),       # a 3 within 5-6 is medium
    ([2, 2, 2, 0, 0, 0, 0], Band.MEDIUM),       # 6
    ([3, 3, 1, 0, 0, 0, 0], Band.HIGH),         # 7
    ([3, 3, 3, 3, 2, 3, 3], Band.HIGH),
])
def test_bands(scores: list[int], band: Band) -> None:
    assert band_of(scores) is band


@pytest.mark.parametrize(("total", "band", "monitoring"), [
    (0, Band.LOW, "minimum 12-hourly"), (1, Band.LOW, "minimum 4-6-hourly"),
    (4, Band.LOW, "minimum 4-6-hourly"), (3, Band.LOW_MEDIUM, "minimum 1-hourly"),
    (5, Band.MEDIUM, "minimum 1-hourly"), (6, Band.MEDIUM, "minimum 1-hourly"),
    (7, Band.HIGH, "continuous monitoring of vital signs")])
def test_monitoring_frequency(total: int, band: Band, monitoring: str) -> None:
    assert response_of(total, band).monitoring == monitoring


# The chart's rows written as inclusive ranges (an independent reading of the RCP chart),
# checked against the scoring functions for every whole value (tenth of a degree) in range.
CHART: dict[Callable[[float], int], list[tuple[int, int, int]]] = {
    respiration_score: [(0, 8, 3), (9, 11, 1), (12, 20, 0), (21, 24, 2), (25, 80, 3)],
    systolic_score: [(0, 90, 3), (91, 100, 2), (101, 110, 1), (111, 219, 0), (220, 350, 3)],
    pulse_score: [(0, 40, 3), (41, 50, 1), (51, 90, 0), (91, 110, 1), (111, 130, 2),
                  (131, 300, 3)],
}


@pytest.mark.parametrize("row", list(CHART), ids=lambda row: row.__name__)
def test_every_whole_value_of_a_row(row: Callable[[float], int]) -> None:
    for low, high, score in CHART[row]:
        for value in range(low, high + 1):
            assert row(value) == score, (row, value)


def test_every_tenth_of_a_degree() -> None:
    ranges = [(300, 350, 3), (351, 360, 1), (361, 380, 0), (381, 390, 1), (391, 450, 2)]
    for low, high, score in ranges:
        for tenths in range(low, high + 1):
            assert temperature_score(tenths / 10) == score, tenths


def test_every_whole_spo2_on_both_scales() -> None:
    scale_1 = [(50, 91, 3), (92, 93, 2), (94, 95, 1), (96, 100, 0)]
    scale_2_air = [(50, 83, 3), (84, 85, 2), (86, 87, 1), (88, 100, 0)]
    scale_2_oxygen = [(50, 83, 3), (84, 85, 2), (86, 87, 1), (88, 92, 0), (93, 94, 1),
                      (95, 96, 2), (97, 100, 3)]
    for ranges, scale2, oxygen in [(scale_1, False, False), (scale_1, False, True),
                                   (scale_2_air, True, False), (scale_2_oxygen, True, True)]:
        for low, high, score in ranges:
            for value in range(low, high + 1):
                assert spo2_score(value, scale2=scale2, oxygen=oxygen) == score, \
                    (value, scale2, oxygen)
