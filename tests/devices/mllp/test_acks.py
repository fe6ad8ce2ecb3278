"""ACK text is what python-hl7's ``create_ack`` builds (hygeia.devices.mllp.acks writes it
out directly, for speed), with the UTC offset in MSH-7 and, on errors, MSA-3 and ERR."""

from __future__ import annotations

import hl7
import pytest

from hygeia.devices.mllp import acks
from hygeia.devices.mllp.inbound import parse
from tests.devices.hl7v2.oru_helpers import FIXTURES, message_text

ODD = [
    "MSH|^~\\&|A^x&y|B~C|D|E|20240101||ORU^R01^ORU_R01|1|P~T|2.5^a&b|||AL|NE\rPID|1",
    "MSH#!@*$#APP!x#FAC#R@a#F#2024##ORU!R01#9#P#2.5\rPID###a",  # the sender's separators
    "MSH|^~\\&|A\\T\\B|B|C|D|2024||ADT^A01|M 1|P|2.3\rPID|1",
]
FAILURES = [None, acks.Failure("bad & ^ | ~ \\ thing", "103", "OBX^1^5", "diag~x"),
            acks.Failure("transient", transient=True)]


def python_hl7_ack(message: hl7.Message, code: str, ack_id: str,
                   failure: acks.Failure | None) -> str:
    """The ACK as python-hl7's containers build it (the way acks.py used to)."""
    ack = message.create_ack(code, ack_id)
    ack.segment("MSH").assign_field(acks.timestamp(), 7)
    if failure is not None:
        ack.segment("MSA").assign_field(message.escape(failure.text), 3)
        component = message.separators[3]
        fields = ["ERR", "", failure.location.replace("^", component),
                  component.join([failure.hl7_code, acks.ERROR_CODES.get(failure.hl7_code, ""),
                                  "HL70357"]), "E", "", "",
                  message.escape(failure.diagnostic), message.escape(failure.text)]
        ack.append(message.create_segment([message.create_field([v]) for v in fields]))
    return str(ack)


def same_apart_from_time(ours: str, theirs: str) -> None:
    """Equal, MSH-7 aside (two calls may fall in different seconds)."""
    mine, other = ours.split("\r"), theirs.split("\r")
    separator = ours[3]
    assert mine[0].split(separator)[7:] == other[0].split(separator)[7:]
    assert mine[0].split(separator)[:6] == other[0].split(separator)[:6]
    assert mine[1:] == other[1:]


@pytest.mark.parametrize("text", [*(message_text(path.name) for path in
                                    sorted(FIXTURES.glob("*.hl7"))), *ODD])
@pytest.mark.parametrize("failure", FAILURES)
def test_ack_is_what_python_hl7_builds(text: str, failure: acks.Failure | None) -> None:
    message = parse(text)
    assert message is not None
    try:
        expected = python_hl7_ack(message, "AE", "ACK-1", failure)
    except (IndexError, TypeError) as error:  # python-hl7 cannot answer it: neither can we
        with pytest.raises(type(error)):
            acks.acknowledgement(message, "AE", "ACK-1", failure)
        return
    same_apart_from_time(acks.acknowledgement(message, "AE", "ACK-1", failure), expected)


def test_a_message_python_hl7_cannot_answer_raises_as_before() -> None:
    message = parse("MSH|^~\\&|A|B|C|D|2024||ORU|1|P|2.5\rPID|1")  # no event in MSH-9
    assert message is not None
    with pytest.raises(TypeError):
        acks.acknowledgement(message, "AA", "ACK-1", None)


def test_ack_names_the_time_with_its_offset() -> None:
    message = parse(ODD[0])
    assert message is not None
    msh7 = acks.acknowledgement(message, "AA", "ACK-1", None).split("|")[6]
    assert len(msh7) == 19 and msh7.endswith("+0000")
