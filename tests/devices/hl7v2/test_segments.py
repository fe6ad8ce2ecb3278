"""Reading fields without python-hl7's accessors (hygeia.devices.hl7v2.segments)."""

from __future__ import annotations

import hl7
import pytest

from hygeia.devices.hl7v2.parsing import parse_er7
from hygeia.devices.hl7v2.segments import repetition_count
from tests.devices.hl7v2.oru_helpers import FIXTURES, message_text

EDGES = ("MSH|^~\\&|A\rOBX|1|NM||^|~|&|x~~|^~|a~b^c|~&^|||\\T\\|" + "~" * 3 + "|^^^")


def counted_from_text(segment: hl7.Segment, field: int) -> int:
    """What repetition_count answered when it joined the field into text first."""
    if field >= len(segment) or not str(segment[field]):
        return 0
    value = segment[field]
    return len(value) if isinstance(value[0], hl7.Repetition) else 1


@pytest.mark.parametrize("text", [EDGES, *(message_text(path.name)
                                           for path in sorted(FIXTURES.glob("*.hl7")))])
def test_repetitions_are_counted_as_the_field_text_counts_them(text: str) -> None:
    for segment in parse_er7(text):
        for field in range(1, len(segment) + 2):
            assert repetition_count(segment, field) == counted_from_text(segment, field), \
                (str(segment), field)


def test_an_empty_field_has_no_repetition_and_a_lone_separator_has_one() -> None:
    obx = parse_er7(EDGES)[1]
    assert [repetition_count(obx, field) for field in (3, 4, 5, 6, 7, 8)] == [0, 1, 2, 1, 3, 2]
