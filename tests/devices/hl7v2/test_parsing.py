"""The fast ER7 parser builds exactly python-hl7's tree (hygeia.devices.hl7v2.parsing)."""

from __future__ import annotations

from typing import Any

import hl7
import pytest

from hygeia.devices.hl7v2.parsing import parse_er7
from hygeia.devices.hl7v2.segments import named
from tests.devices.hl7v2.oru_helpers import FIXTURES, message_text

ODD_MESSAGES = [
    "MSH|^~\\&|A|B",  # one segment, no carriage return
    "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.6\rPID|||X~Y^^^Z&W&V||\\T\\ esc\r",
    "MSH#!@*$|APP#x|FAC\rPID###a!b@c$d@e*f",  # separators of the sender's own choice
    "MSH|^~\\|A\rPID|1|a^b~c&d",  # MSH-2 short: HL7's default for what it leaves out
    "  MSH|^~\\&|A\r\rOBX|1|NM||\r  ",  # surrounding blanks, an empty segment
    "MSH|^~\\&",  # no field separator after MSH-2
    "BHS|^~\\&|batch",
]


def shape(node: Any) -> Any:
    """Everything that makes a parsed tree: kinds, values, separators, escape, factory."""
    if isinstance(node, str):
        return node
    assert isinstance(node, hl7.Container)
    return (type(node).__name__, node.separator, node.separators, node.esc, node.factory,
            [shape(child) for child in node])


@pytest.mark.parametrize("name", sorted(path.name for path in FIXTURES.glob("*.hl7")))
def test_fixture_messages_parse_as_python_hl7_parses_them(name: str) -> None:
    text = message_text(name)
    assert shape(parse_er7(text)) == shape(hl7.parse(text))


@pytest.mark.parametrize("text", ODD_MESSAGES)
def test_odd_messages_parse_as_python_hl7_parses_them(text: str) -> None:
    parsed = parse_er7(text)
    assert shape(parsed) == shape(hl7.parse(text))
    assert str(parsed) == str(hl7.parse(text))


@pytest.mark.parametrize("text", [
    "PID|1|x",  # not a message
    "MSH|^\rPID|1|a^b~c",  # MSH-2 ends early: the carriage return becomes a separator
    "MSH|\rPID|x",  # no MSH-2 at all
])
def test_what_python_hl7_refuses_is_refused(text: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 (python-hl7 raises several kinds)
        hl7.parse(text)
    with pytest.raises(hl7.ParseException):
        parse_er7(text)


@pytest.mark.parametrize("text", [*ODD_MESSAGES, "MSH|^~\\&|A\rOBX\rOBR|1\r\rPID|a^b\rOB^X|1"])
def test_segments_are_found_by_name_as_python_hl7_names_them(text: str) -> None:
    for message in (parse_er7(text), hl7.parse(text)):
        for segment in message:
            for name in ("MSH", "BHS", "OBX", "OBR", "PID", "OB", "X", ""):
                assert named(segment, name) == (str(segment[0]) == name), (segment, name)


def test_short_fields_are_parsed_once_and_shared_between_messages() -> None:
    """A monitor repeats its codes and units: the same field text gives the very same
    (never changed) container, and each message's tree is still python-hl7's."""
    first = parse_er7("MSH|^~\\&|MON|WARD\rOBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC||72")
    second = parse_er7("MSH|^~\\&|MON|WARD\rOBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC||80")
    assert first[1][3] is second[1][3]
    assert first[1][5] == ["72"] and second[1][5] == ["80"]
    other = parse_er7("MSH|^~\\#|MON|WARD\rOBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC||72")
    assert other[1][3] is not first[1][3]  # other separators: parsed on their own
    text = "MSH|^~\\&|MON|WARD\rOBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC||80"
    assert shape(second) == shape(hl7.parse(text))
