"""HL7 v2 acknowledgements: which ones a message asked for, and their ER7 text.

Original mode (``MSH-15`` and ``MSH-16`` both empty): one ACK whose ``MSA-1`` is
AA (processed), AE (error: the sender may correct and resend) or AR (rejected).
Enhanced mode (either one valued): an accept acknowledgement, CA (the message is
in safe storage), CE (it could not be stored: try again) or CR (refused
unread: unsupported message type, not HL7), sent when ``MSH-15`` asks
(AL always, NE never, ER on CE/CR only, SU on CA only); then, for an accepted
message, an application acknowledgement AA/AE/AR when ``MSH-16`` asks (same
conditions). Hygeia sends both over the connection the message came on; an
empty ``MSH-15`` or ``MSH-16`` in enhanced mode counts as AL (a sender waiting
for an answer it did not get stalls; one it did not need is ignored).

Every ACK swaps the message's sender and receiver (``MSH-3/4`` and ``MSH-5/6``),
echoes its ``MSH-10`` in ``MSA-2`` and, for an error, carries an ``ERR``
segment in the v2.5 layout: ``ERR-2`` the location (segment^sequence^field),
``ERR-3`` the HL7 table 0357 code, ``ERR-4`` severity E, ``ERR-7`` diagnostic
detail and ``ERR-8`` the sentence for a person (also in ``MSA-3`` for senders
older than v2.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import hl7

from hygeia.devices.hl7v2.handling import field_text

ERROR_CODES = {  # HL7 table 0357, message error condition codes
    "0": "Message accepted", "100": "Segment sequence error",
    "101": "Required field missing", "102": "Data type error",
    "103": "Table value not found", "200": "Unsupported message type",
    "201": "Unsupported event code", "202": "Unsupported processing id",
    "203": "Unsupported version id", "204": "Unknown key identifier",
    "205": "Duplicate key identifier", "206": "Application record locked",
    "207": "Application internal error",
}


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a message was not processed: what ``ERR`` says.

    ``transient``: the fault was ours (the database, a bug), so the same message
    may succeed later; otherwise the message itself is wrong.
    """

    text: str
    hl7_code: str = "207"
    location: str = ""
    diagnostic: str = ""
    transient: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a message: ``code`` AA/AE/AR as the application saw it,
    ``stored`` whether it is in the message log, ``accepted`` False when it was
    refused before any processing (answered CR in enhanced mode)."""

    code: str
    stored: bool
    failure: Failure | None = None
    accepted: bool = True


def wanted(condition: str, success: bool) -> bool:
    """Whether an acknowledgement is due under table 0155 ``condition`` (empty = AL)."""
    condition = condition.strip().upper() or "AL"
    return condition == "AL" or (condition == "ER" and not success) or \
        (condition == "SU" and success)


def replies(message: hl7.Message | None, outcome: Outcome, ack_id: str) -> list[str]:
    """The acknowledgements due for ``message`` (None: not HL7 at all), in sending
    order; ``ack_id`` names them (``MSH-10`` of each, with a suffix per kind)."""
    accept_type = _msh(message, 15)
    application_type = _msh(message, 16)
    if not accept_type and not application_type:
        return [acknowledgement(message, outcome.code, f"{ack_id}A", outcome.failure)]
    accept = "CR" if not outcome.accepted else "CA" if outcome.stored else "CE"
    found = []
    if wanted(accept_type, accept == "CA"):
        failure = None if accept == "CA" else outcome.failure
        found.append(acknowledgement(message, accept, f"{ack_id}C", failure))
    if accept == "CA" and wanted(application_type, outcome.code == "AA"):
        found.append(acknowledgement(message, outcome.code, f"{ack_id}A", outcome.failure))
    return found


def acknowledgement(message: hl7.Message | None, code: str, ack_id: str,
                    failure: Failure | None) -> str:
    """One ACK (ER7, segments ended by carriage returns) answering ``message``.

    The text python-hl7's ``Message.create_ack`` would make (the same fields read the
    same way, so a message it cannot answer raises the same error), with ``MSH-7``
    carrying its UTC offset, written out directly: building the ACK as containers
    and serialising them cost about 0.1 ms a message on the connection threads,
    which share the interpreter with the committer (tests/devices/mllp/test_acks.py
    compares the two)."""
    if message is None:
        return _bare_acknowledgement(code, ack_id, failure)
    msh = header_segment(message)
    field = str(msh(1))
    component = message.separators[3]
    event = str(msh(9)(1)(2))
    # the order create_ack reads them in (5, 6, 3, 4, 9, 11, 12, 10): the same error first
    receiver, facility = str(msh(5)), str(msh(6))
    sender, sender_facility = str(msh(3)), str(msh(4))
    processing, version, control_id = str(msh(11)), str(msh(12)), str(msh(10))
    header = field.join([f"MSH{field}{msh(2)}", receiver, facility, sender, sender_facility,
                         timestamp(), "", component.join(["ACK", event, "ACK"]), ack_id,
                         processing, version])
    segments = [header, field.join(["MSA", code, control_id])]
    if failure is not None:
        segments[1] += field + message.escape(failure.text)
        segments.append(_error_segment(message, failure))
    return "\r".join(segments) + "\r"


def _error_segment(message: hl7.Message, failure: Failure) -> str:
    component = message.separators[3] if len(message.separators) > 3 else "^"
    code = component.join([failure.hl7_code, ERROR_CODES.get(failure.hl7_code, ""),
                           "HL70357"])
    location = failure.location.replace("^", component)
    fields = ["ERR", "", location, code, "E", "", "", message.escape(failure.diagnostic),
              message.escape(failure.text)]
    return message.separators[1].join(fields)


def _bare_acknowledgement(code: str, ack_id: str, failure: Failure | None) -> str:
    """An ACK for bytes that are not an HL7 message: nothing to echo."""
    segments = [f"MSH|^~\\&|HYGEIA||||{timestamp()}||ACK|{ack_id}|P|2.5", f"MSA|{code}|"]
    if failure is not None:
        text = _escape(failure.text)
        segments[1] += f"|{text}"
        name = ERROR_CODES.get(failure.hl7_code, "")
        segments.append(f"ERR||{failure.location}|{failure.hl7_code}^{name}^HL70357|E|||"
                        f"{_escape(failure.diagnostic)}|{text}")
    return "\r".join(segments) + "\r"


def _escape(text: str) -> str:
    """``text`` with the standard delimiters escaped (HL7 v2.5 section 2.7)."""
    return _TEMPLATE.escape(text)


_TEMPLATE = hl7.parse("MSH|^~\\&|")  # the standard delimiters, parsed once


def _msh(message: hl7.Message | None, field: int) -> str:
    if message is None:
        return ""
    return field_text(header_segment(message), field)


def header_segment(message: hl7.Message) -> hl7.Segment:
    """The MSH segment: the first, in any message the listener parsed (``segment("MSH")``
    compares every segment's name through python-hl7's slow indexing: a third of the
    time an ACK took)."""
    first = list.__getitem__(message, 0) if message else None
    if first is not None and list.__getitem__(first, 0) == ["MSH"]:
        return first
    return message.segment("MSH")


def timestamp(at: datetime | None = None) -> str:
    """An HL7 DTM with its offset, to the second: ``20240301121500+0000``."""
    return (at or datetime.now(UTC)).strftime("%Y%m%d%H%M%S%z")
