"""Reading HL7 v2 fields without tripping over what a sender left out.

python-hl7 parses the message; these helpers give an empty string for any part
that is absent (an empty field, a missing component, a segment shorter than the
field asked for), so mapping code reads like the HL7 field tables: ``part(obx,
3, 1)`` is OBX-3.1. Values come back unescaped (``\\T\\`` is ``&``).
"""

from __future__ import annotations

import hl7


def part(segment: hl7.Segment, field: int, component: int = 1, repetition: int = 1,
         subcomponent: int = 1) -> str:
    """Field ``field``, component ``component`` of a segment, "" when absent."""
    try:
        value = segment.extract_field(1, field, repetition, component, subcomponent)
    except IndexError:
        return ""
    return str(value).strip()


def repetition_count(segment: hl7.Segment, field: int) -> int:
    """How many repetitions field ``field`` has (0 when empty or absent)."""
    if field >= len(segment) or not str(segment[field]):
        return 0
    value = segment[field]
    return len(value) if isinstance(value[0], hl7.Repetition) else 1


def segments(message: hl7.Message, name: str) -> list[hl7.Segment]:
    """All segments called ``name``, in message order (none is an empty list)."""
    return [segment for segment in message if str(segment[0]) == name]


def first(message: hl7.Message, name: str) -> hl7.Segment | None:
    """The first segment called ``name``, or None."""
    found = segments(message, name)
    return found[0] if found else None
