"""Reading HL7 v2 fields without tripping over what a sender left out.

python-hl7 parses the message; these helpers give an empty string for any part
that is absent (an empty field, a missing component, a segment shorter than the
field asked for), so mapping code reads like the HL7 field tables: ``part(obx,
3, 1)`` is OBX-3.1. Values come back unescaped (``\\T\\`` is ``&``).
"""

from __future__ import annotations

import hl7
from hl7.util import unescape

_SEPARATOR_FIELDS = (1, 2)  # MSH-1 and MSH-2 are the separators themselves: never unescaped


def part(segment: hl7.Segment, field: int, component: int = 1, repetition: int = 1,
         subcomponent: int = 1) -> str:
    """Field ``field``, component ``component`` of a segment, "" when absent.

    The same value as python-hl7's ``Segment.extract_field`` (a path that goes past a
    leaf is read at the leaf only when the rest of it is all 1s), by indexing the
    parsed containers directly: mapping a monitor message reads a hundred fields, and
    ``extract_field`` builds an accessor and error text for each (measured: 1.4 of the
    8.5 ms a PCD-01 message took).
    """
    return text(segment, field, component, repetition, subcomponent).strip()


def text(segment: hl7.Segment, field: int, component: int = 1, repetition: int = 1,
         subcomponent: int = 1) -> str:
    """As :func:`part`, without stripping surrounding spaces."""
    try:
        if component == 1 and repetition == 1 and subcomponent == 1 and \
                0 < field < len(segment):
            value = _first_leaf(segment, field)  # most reads: a field's first value
        else:
            value = _leaf(segment, field, component, repetition, subcomponent)
    except IndexError:
        return ""
    if segment.esc not in value:  # nothing escaped (nearly always): as it is
        return value
    if field in _SEPARATOR_FIELDS and named(segment, "MSH"):
        return str(value)
    return str(unescape(segment, value))


def _first_leaf(segment: hl7.Segment, field: int) -> str:
    """:func:`_leaf` of the first repetition, component and subcomponent of an existing
    field: the first child down to a string (a field holds a string or repetitions, a
    repetition a string or components, a component strings; none is empty)."""
    value = _item(_item(segment, field), 0)
    while type(value) is not str:
        value = _item(value, 0)
    return value


def _leaf(segment: hl7.Segment, field: int, component: int, repetition: int,
          subcomponent: int) -> str:
    """The leaf at that path (IndexError when the path leaves the tree); 0 means 1, as
    for ``extract_field``.

    Indexes with ``list.__getitem__``: python-hl7's containers override ``__getitem__``
    (in Python, for slices), and this is called for every field a mapping reads
    (measured: a quarter of the field-reading time of a PCD-01 message)."""
    field, component, repetition, subcomponent = \
        field or 1, component or 1, repetition or 1, subcomponent or 1
    if field >= len(segment) or field < 1 or repetition < 1 or component < 1 or \
            subcomponent < 1:
        raise IndexError(field)
    value = _item(_item(segment, field), repetition - 1)
    if not isinstance(value, hl7.Repetition):
        if component == 1 and subcomponent == 1:
            return value
        raise IndexError(component)
    value = _item(value, component - 1)
    if not isinstance(value, hl7.Component):
        if subcomponent == 1:
            return value
        raise IndexError(subcomponent)
    return _item(value, subcomponent - 1)


_item = list.__getitem__  # python-hl7's containers are lists (see _leaf)


def repetition_count(segment: hl7.Segment, field: int) -> int:
    """How many repetitions field ``field`` has (0 when empty or absent)."""
    if field >= len(segment):
        return 0
    value = _item(segment, field)
    if _is_empty(value):
        return 0
    return len(value) if isinstance(_item(value, 0), hl7.Repetition) else 1


def _is_empty(value: hl7.Container | str) -> bool:
    """Whether ``str(value)`` is "" (no text, and no separator: one child at each level),
    without building that string: OBX-8 and OBX-18 are asked for every OBX, and joining
    them was a third of reading an OBX (py-spy, issue 16)."""
    while isinstance(value, list):
        if len(value) != 1:
            return not value
        value = _item(value, 0)
    return value == ""


def segments(message: hl7.Message, name: str) -> list[hl7.Segment]:
    """All segments called ``name``, in message order (none is an empty list)."""
    return [segment for segment in message if named(segment, name)]


def first(message: hl7.Message, name: str) -> hl7.Segment | None:
    """The first segment called ``name``, or None."""
    for segment in message:  # the first is enough: no list of all of them
        if named(segment, name):
            return segment
    return None


def named(segment: hl7.Segment, name: str) -> bool:
    """Whether ``segment`` is called ``name``: its first field holds that one string (a
    segment of its name alone holds the string itself). ``name`` is a segment id, with
    no separator in it. Compared as lists, not through ``str(segment[0])``,
    python-hl7's indexing and joining, which every segment of every message goes
    through to be found (measured: 3% of an ORU's handling)."""
    value = _item(segment, 0)
    return value == [name] or value == name
