"""Units of measure (OBX-6) into UCUM.

PCD-01 senders code units in MDC (``264864^MDC_DIM_BEAT_PER_MIN^MDC``); some send
UCUM already (``mm[Hg]^mm[Hg]^UCUM``). Both become a FHIR Quantity's ``unit``,
``system`` (http://unitsofmeasure.org) and ``code``. An MDC unit not in
``tables/mdc_units.json`` is unknown: converting it by guess could turn
kilograms into pounds, so the caller refuses the message instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from hygeia.devices.hl7v2.tables import table

UCUM = "http://unitsofmeasure.org"
UCUM_SYSTEMS = {"UCUM", "UCUM-ISO", "ISO+", "UCUM:ISO"}


@dataclass(frozen=True, slots=True)
class Unit:
    """A UCUM unit: ``code`` for computation, ``unit`` as displayed."""

    code: str
    unit: str


def ucum_of_mdc(code: str, refid: str = "") -> Unit | None:
    """The UCUM unit for an MDC unit given by code (``264864``) or reference id
    (``MDC_DIM_BEAT_PER_MIN``); None when the table does not know it."""
    units: dict[str, dict[str, str]] = table("mdc_units")["units"]
    found = units.get(code)
    if found is None and refid:
        found = next((entry for entry in units.values() if entry["refid"] == refid), None)
    return None if found is None else Unit(found["ucum"], found["ucum"])


@lru_cache(maxsize=1024)  # a monitor sends the same few units in every message
def unit_of(code: str, text: str, system: str) -> Unit | None:
    """The UCUM unit of an OBX-6 (CWE: code, text, coding system); None if unknown.

    >>> unit_of("266016", "MDC_DIM_MMHG", "MDC")
    Unit(code='mm[Hg]', unit='mm[Hg]')
    >>> unit_of("kg", "kilogram", "UCUM")
    Unit(code='kg', unit='kilogram')
    """
    if system.upper() in UCUM_SYSTEMS and code:
        return Unit(code, text or code)
    if system.upper() == "MDC" or code.isdigit() or text.startswith("MDC_DIM"):
        return ucum_of_mdc(code, text)
    return None
