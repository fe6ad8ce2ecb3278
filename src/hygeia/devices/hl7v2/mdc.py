"""MDC observation codes (ISO/IEEE 11073-10101) and what they become in FHIR.

An OBX-3 coded in MDC keeps its MDC coding (system ``urn:iso:std:iso:11073:10101``,
the context-free code) and gains the LOINC codes of ``tables/mdc_loinc.json``
for vital signs. Codes in a partition's private range (term codes 0xF000-0xFFFF)
mean what their vendor says: ``tables/mdc_private.json`` holds those known, keyed
by sending application.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from hygeia.devices.hl7v2.tables import table

MDC = "urn:iso:std:iso:11073:10101"
LOINC = "http://loinc.org"
PRIVATE_TERMS = range(0xF000, 0x10000)


@dataclass(frozen=True, slots=True)
class MdcTerm:
    """What an MDC code means here: its codings, and the panel it belongs to."""

    codings: list[dict[str, Any]]
    panel_of: str | None = None  # the MDC code of the panel this is a component of
    is_panel: bool = False
    private: bool = False
    known: bool = True
    notes: list[str] = field(default_factory=list)


def is_private(code: str) -> bool:
    """A context-free code whose term code is in the vendor private range."""
    return code.isdigit() and (int(code) & 0xFFFF) in PRIVATE_TERMS


def is_vital_sign(coding: dict[str, Any]) -> bool:
    """A LOINC coding of one of the vital signs the table maps to."""
    return coding.get("system") == LOINC and coding.get("code") in table("mdc_loinc")[
        "loinc_display"]


def loinc_codings(codes: list[str]) -> list[dict[str, Any]]:
    names: dict[str, str] = table("mdc_loinc")["loinc_display"]
    return [{"system": LOINC, "code": code, "display": names[code]} for code in codes]


@lru_cache(maxsize=10_000)
def term(code: str, refid: str, sender_application: str) -> MdcTerm:
    """The codings of an MDC OBX-3 (``150456^MDC_PULS_OXIM_SAT_O2^MDC``).

    Made once per code, text and sender: a monitor names the same codes in every
    message, and building their codings again was a tenth of mapping one. The
    answer is shared between messages and threads (its codings end up in every
    Observation of that code), so it is never changed."""
    codes: dict[str, dict[str, Any]] = table("mdc_loinc")["codes"]
    mdc_coding = {"system": MDC, "code": code, "display": refid or codes.get(code, {}).get(
        "refid", code)}
    if is_private(code):
        return _private(code, mdc_coding, sender_application)
    entry = codes.get(code)
    if entry is None:
        return MdcTerm([mdc_coding], known=False)
    return MdcTerm([mdc_coding, *loinc_codings(entry["loinc"])],
                   panel_of=entry.get("component_of"), is_panel=bool(entry.get("panel")))


def _private(code: str, mdc_coding: dict[str, Any], sender_application: str) -> MdcTerm:
    vendors: dict[str, dict[str, dict[str, str]]] = table("mdc_private")["vendors"]
    known = vendors.get(sender_application, {}).get(code)
    if known is None:
        return MdcTerm([mdc_coding], private=True, known=False, notes=[
            f"MDC code {code} (OBX-3) is in the vendor private range and is not among the "
            f"private codes of {sender_application or 'the sender'} in "
            f"tables/mdc_private.json; kept as sent."])
    mdc_coding["display"] = known["display"]
    standard = known.get("standard")
    if standard is None:
        return MdcTerm([mdc_coding], private=True)
    meaning = term(standard, "", sender_application)
    return MdcTerm([mdc_coding, *meaning.codings], panel_of=meaning.panel_of,
                   is_panel=meaning.is_panel, private=True)
