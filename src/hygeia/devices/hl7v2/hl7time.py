"""HL7 v2 date/times (DTM, TS) into FHIR dateTime.

``YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]``: the precision the sender
gave is kept; the UTC offset is kept as written. FHIR requires an offset once
there is a time of day, so a time without one is read as UTC and the caller is
told (``assumed_utc``) so it can note it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

_DTM = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?"
                  r"(?:([+-])(\d{2})(\d{2}))?")


@dataclass(frozen=True, slots=True)
class FhirTime:
    """A FHIR dateTime string, and whether its offset was assumed rather than sent."""

    value: str
    assumed_utc: bool = False


@lru_cache(maxsize=1024)  # a message's OBR-7 and OBX-14 rows nearly always say one time
def fhir_datetime(text: str) -> FhirTime | None:
    """The FHIR dateTime of an HL7 DTM, or None if it is not one.

    >>> fhir_datetime("20240131083015.25-0500").value
    '2024-01-31T08:30:15.25-05:00'
    >>> fhir_datetime("202401").value
    '2024-01'
    """
    found = _DTM.fullmatch(text.strip())
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = found.groups()
    if not _real(year, month, day, hour, minute, second, off_h, off_m):
        return None
    if month is None:
        return FhirTime(year)
    if day is None:
        return FhirTime(f"{year}-{month}")
    if hour is None:
        return FhirTime(f"{year}-{month}-{day}")
    clock = f"{hour}:{minute or '00'}:{second or '00'}{(fraction or '') if second else ''}"
    offset = f"{sign}{off_h}:{off_m}" if sign else "+00:00"
    return FhirTime(f"{year}-{month}-{day}T{clock}{offset}", assumed_utc=not sign)


def _real(year: str, month: str | None, day: str | None, hour: str | None,
          minute: str | None, second: str | None, off_h: str | None, off_m: str | None) -> bool:
    """The date exists (no 31 February, no hour 25) and the offset is within ±14:59."""
    try:
        datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                 int(second or 0))
    except ValueError:
        return False
    return off_h is None or (int(off_h) <= 14 and int(off_m or 0) < 60)
