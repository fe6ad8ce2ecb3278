"""OBX-6 units into UCUM, from the MDC unit table or as sent in UCUM."""

from __future__ import annotations

import pytest

from hygeia.devices.hl7v2.units import Unit, ucum_of_mdc, unit_of


@pytest.mark.parametrize(("code", "refid", "ucum"), [
    ("264864", "MDC_DIM_BEAT_PER_MIN", "/min"),
    ("264928", "MDC_DIM_RESP_PER_MIN", "/min"),
    ("262688", "MDC_DIM_PERCENT", "%"),
    ("266016", "MDC_DIM_MMHG", "mm[Hg]"),
    ("268192", "MDC_DIM_DEGC", "Cel"),
    ("266560", "MDC_DIM_FAHR", "[degF]"),
    ("263875", "MDC_DIM_KILO_G", "kg"),
    ("263904", "MDC_DIM_LB", "[lb_av]"),
])
def test_mdc_units_become_ucum(code: str, refid: str, ucum: str) -> None:
    assert unit_of(code, refid, "MDC") == Unit(ucum, ucum)
    assert ucum_of_mdc("", refid) == Unit(ucum, ucum)  # by reference id alone


def test_ucum_units_pass_through_and_unknown_mdc_units_are_unknown() -> None:
    assert unit_of("mm[Hg]", "", "UCUM") == Unit("mm[Hg]", "mm[Hg]")
    assert unit_of("999999", "MDC_DIM_NOPE", "MDC") is None
    assert unit_of("furlong", "furlong", "99LOCAL") is None
