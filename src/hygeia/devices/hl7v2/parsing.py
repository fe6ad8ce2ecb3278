"""Parsing ER7 text into python-hl7's containers, faster than ``hl7.parse``.

The tree is python-hl7's own (:class:`hl7.Message` of :class:`hl7.Segment` of
:class:`hl7.Field` of :class:`hl7.Repetition` of :class:`hl7.Component`, leaves
as strings), equal to what ``hl7.parse`` builds, element for element, with the
same separators, escape character and factory on every container
(tests/devices/hl7v2/test_parsing.py compares the two on every fixture message).

Why not ``hl7.parse``: it walks the message with a parse-plan object it copies
at every level and builds each container through two ``__init__`` calls; for a
monitor message of six OBX rows that was about half of all the CPU the mapping
of the message took (measured: 0.7 of 1.5 ms, issue 16). Here the plan is the
level number, and containers are made with ``list.__init__`` and four attribute
assignments, which is all python-hl7's constructors do.
"""

from __future__ import annotations

import re
from typing import Any

import hl7

_LEVELS: tuple[Any, ...] = (hl7.Message, hl7.Segment, hl7.Field,
                                           hl7.Repetition, hl7.Component)
_HEADERS = ("MSH", "BHS", "FHS")  # segments whose field 1 and 2 are the separators
_FACTORY = hl7.Factory
MAX_SHARED_FIELD = 80  # characters: fields up to this long are parsed once (_FIELDS)
MAX_SHARED_FIELDS = 20_000  # fields kept parsed per separators (all forgotten beyond)
MAX_SEPARATOR_SETS = 16  # separators and escape characters seen (all forgotten beyond)
_FIELDS: dict[str, dict[str, hl7.Container | str]] = {}
"""Parsed fields by separators (and escape character) and text. A monitor sends the
same codes, units, containment ids and equipment ids in every message: parsing each
of them again was most of a parse (the ~250 containers of a six-OBX message). The containers are
shared between messages and threads, so a parsed message is read, never changed
(nothing in Hygeia assigns into one)."""


def parse_er7(text: str) -> hl7.Message:
    """``text`` (one message, segments separated by carriage returns) as ``hl7.parse``
    parses it; raises ``hl7.ParseException`` when it does not begin with MSH."""
    message = text.strip()
    if message[:3] not in _HEADERS:
        raise hl7.ParseException(f"First segment is {message[:3]}, must be MSH")
    separators, esc = _separators(message)
    if len(set(separators)) < len(separators):  # python-hl7 fails an assertion on these
        raise hl7.ParseException("MSH-1 and MSH-2 name one character as two separators")
    parsed = _Splitter(separators, esc).split(message, 0)
    assert isinstance(parsed, hl7.Message)
    return parsed


def _separators(message: str) -> tuple[str, str]:
    """The segment, field, repetition, component and subcomponent separators, and the
    escape character, from MSH-1 and MSH-2 (HL7's defaults for those not given), in
    the order python-hl7 keeps them."""
    field = message[3]
    given = message[3:message.find(field, 4)]
    repetition = given[2] if len(given) > 2 else "~"
    component = given[1] if len(given) > 1 else "^"
    subcomponent = given[4] if len(given) > 4 else "&"
    esc = given[3] if len(given) > 3 else "\\"
    return "\r" + field + repetition + component + subcomponent, esc


class _Splitter:
    """Splits text at level ``level`` (0 message ... 4 component) into containers."""

    __slots__ = ("attributes", "deeper", "key", "separators")

    def __init__(self, separators: str, esc: str) -> None:
        self.separators = separators
        self.key = separators + esc
        # each level's container attributes, set with one dict update (a third cheaper
        # than four assignments, for the ~250 containers of a monitor message)
        self.attributes = [{"separator": separator, "esc": esc, "separators": separators,
                            "factory": _FACTORY} for separator in separators]
        # per level: finds any separator of this level or a deeper one, in one C call
        self.deeper = [re.compile("[" + re.escape(separators[level:]) + "]").search
                       for level in range(len(separators))]

    def split(self, text: str, level: int) -> hl7.Container | str:
        if level == len(_LEVELS):
            return text
        if self.deeper[level](text) is None:
            return self._container(level, [text])
        data: list[hl7.Container | str] = []
        if level == 1 and text[:3] in _HEADERS:  # MSH-1 and MSH-2 are not split
            field = text[3]
            end = text.find(field, 4)
            data = [self._container(2, [text[:3]]), self._container(2, [field]),
                    self._container(2, [text[4:end]])]
            text = text[end + 1:]
        if text:
            if level == 1:  # a segment: its fields, the same ones in message after message
                shared = _FIELDS.get(self.key)
                if shared is None:
                    if len(_FIELDS) >= MAX_SEPARATOR_SETS:
                        _FIELDS.clear()
                    shared = _FIELDS[self.key] = {}
                known, parse_field = shared.get, self.field
                data.extend([known(piece) or parse_field(piece, shared)
                             for piece in text.split(self.separators[1])])
            else:
                split, deeper = self.split, level + 1
                data.extend([split(piece, deeper) for piece in
                             text.split(self.separators[level])])
        return self._container(level, data)

    def field(self, text: str, shared: dict[str, hl7.Container | str]
              ) -> hl7.Container | str:
        """Field ``text`` split, and kept in ``shared`` (these separators' fields, see
        :data:`_FIELDS`) when it is short."""
        found = self.split(text, 2)
        if len(text) <= MAX_SHARED_FIELD:
            if len(shared) >= MAX_SHARED_FIELDS:
                shared.clear()
            shared[text] = found
        return found

    def _container(self, level: int, data: list[hl7.Container | str]) -> hl7.Container:
        kind = _LEVELS[level]
        container = kind.__new__(kind)
        list.__init__(container, data)
        container.__dict__.update(self.attributes[level])
        return container
