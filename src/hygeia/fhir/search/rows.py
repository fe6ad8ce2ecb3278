"""Index rows: the normalised search values extracted from one resource version.

One list per value type; each maps onto one side table of the store
(``string_index``, ``token_index``...).  Every row starts with the parameter
code.  Dates (and date ranges) are integer microseconds since the epoch, UTC,
half-open ``[low, high)`` (see :mod:`hygeia.fhir.datetime`); open ends use
:data:`MIN_TIME` / :data:`MAX_TIME`.  Numbers and quantity values are closed
float ranges ``[low, high]``: a plain value is the point ``[v, v]``, stored
exactly (the precision of the *search* value decides the range a query
matches, as the spec says); a Range, a Quantity with a comparator or a
SampledData is a wider range, open ends at :data:`MIN_NUMBER` /
:data:`MAX_NUMBER` (see :mod:`hygeia.fhir.search.extract.ranges`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

MIN_TIME = -(2**62)
MAX_TIME = 2**62
# open ends of number/quantity ranges: finite, so sort keys stay valid JSON in cursors
MIN_NUMBER = -sys.float_info.max
MAX_NUMBER = sys.float_info.max

# (param, normalised text, exact text): normalised = lower-case, accents removed
StringRow = tuple[str, str, str]
# (param, system or None, code or None)
TokenRow = tuple[str, str | None, str | None]
# (param, normalised display text) for token :text (CodeableConcept.text, Coding.display...)
TokenTextRow = tuple[str, str]
# (param, target type or None, target id or None, absolute/canonical URL or None, version or None)
ReferenceRow = tuple[str, str | None, str | None, str | None, str | None]
# (param, low, high)
DateRow = tuple[str, int, int]
# (param, low, high): closed, low == high for a plain value
NumberRow = tuple[str, float, float]
# (param, low, high, system or None, code or None, unit or None)
QuantityRow = tuple[str, float, float, str | None, str | None, str | None]
# (param, uri)
UriRow = tuple[str, str]
# (param, group, component index, component row without its param)
CompositeRow = tuple[str, int, int, tuple[object, ...]]


@dataclass(slots=True)
class IndexRows:
    """Everything one resource contributes to the search indexes."""

    strings: list[StringRow] = field(default_factory=list)
    tokens: list[TokenRow] = field(default_factory=list)
    token_texts: list[TokenTextRow] = field(default_factory=list)
    references: list[ReferenceRow] = field(default_factory=list)
    dates: list[DateRow] = field(default_factory=list)
    numbers: list[NumberRow] = field(default_factory=list)
    quantities: list[QuantityRow] = field(default_factory=list)
    uris: list[UriRow] = field(default_factory=list)
    composites: list[CompositeRow] = field(default_factory=list)
