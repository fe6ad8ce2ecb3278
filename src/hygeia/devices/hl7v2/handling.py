"""What an HL7 v2 message handler receives, returns and raises.

The MLLP listener (:mod:`hygeia.devices.mllp`) parses each message, keeps it raw,
and calls the handler registered for its type (``ORU^R01``, ``ADT^A01`` ...) inside
one write transaction; the acknowledgement is sent only after that transaction
commits. Handlers are registered per module, in its ``HANDLES`` table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hygeia.devices.hl7v2.segments import repetition_count, text

if TYPE_CHECKING:
    import hl7

    from hygeia.fhir.search.parameters import SearchRegistry
    from hygeia.store import Session


@dataclass(frozen=True, slots=True)
class Received:
    """One inbound message, parsed."""

    message: hl7.Message
    raw: str  # as received (ER7, segments separated by carriage returns)
    sender: str  # MSH-3 (sending application) and MSH-4 (facility), as "APP|FACILITY"
    control_id: str  # MSH-10
    message_type: str  # MSH-9.1^MSH-9.2, e.g. "ORU^R01"
    received_at: datetime  # when it arrived (UTC)
    # PID-3 criteria -> the Patient ids they match, as a listener read them for a whole
    # batch in this transaction (:mod:`hygeia.devices.mllp.batchreads`); criteria not
    # in it are searched as usual
    known_patients: Mapping[str, list[str]] | None = None
    # what a handler read from the message once, for its other steps (its locks, the
    # batch's look-ups, the handling itself), shared by the copies ``replace`` makes
    derived: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(slots=True)
class Handled:
    """What a handler did: the resources it wrote (``Type/id``) and notes for the message
    log (data kept but not attributed to a patient, codes it did not know ...)."""

    written: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Rejected(Exception):
    """The message cannot be processed: answered AE (application error, the default) or
    AR (rejected), with an ERR segment naming the field and saying why.

    ``location`` is the ERR-2 error location (``"OBX^3^5"``: segment, sequence, field);
    ``hl7_code`` the HL7 table 0357 code (101 required field missing, 102 data type
    error, 103 table value not found, 200 unsupported message type, 207 application
    internal error).
    """

    def __init__(self, text: str, *, acknowledgement: str = "AE", location: str = "",
                 hl7_code: str = "207") -> None:
        super().__init__(text)
        self.text = text
        self.acknowledgement = acknowledgement
        self.location = location
        self.hl7_code = hl7_code


Handler = Callable[[Received, "Session"], Handled]


def handler_locks(handler: Handler, received: Received) -> list[str]:
    """The :meth:`~hygeia.store.Session.lock` keys ``handler`` will take for
    ``received``, when it says (a ``locks(received)`` method); a listener takes them
    beforehand with its other units' in one statement."""
    locks = getattr(handler, "locks", None)
    return list(locks(received)) if callable(locks) else []


def handler_prebuild(handler: Handler, received: Received,
                     registry: SearchRegistry | None = None) -> None:
    """Let ``handler`` build what it can of ``received`` before its transaction, on the
    caller's thread (a ``prebuild(received, registry)`` method, filling
    ``received.derived``; ``registry``: the search registry its transaction has): on
    SQLite the transaction holds the one writer's turn, so what is built there makes
    every other writer wait. The handler must still work with nothing built, and must
    check in the transaction that what it built still holds."""
    prebuild = getattr(handler, "prebuild", None)
    if callable(prebuild):
        prebuild(received, registry)


def handler_patients(handler: Handler, received: Received) -> str | None:
    """The PID-3 criteria ``handler`` will look a patient up by for ``received``, when it
    says (a ``patient_criteria(received)`` method); a listener reads them for a batch."""
    criteria = getattr(handler, "patient_criteria", None)
    return criteria(received) if callable(criteria) else None


def field_text(segment: hl7.Segment, field: int, repetition: int = 1, component: int = 1,
               subcomponent: int = 1) -> str:
    """One value of ``segment`` (escape sequences resolved), ``""`` where the message stops
    short of it: ``field_text(pid, 3, 2, 4)`` is PID-3's second repetition's assigning
    authority. python-hl7 answers a missing repetition with IndexError; a handler reading
    an optional field wants the empty value instead."""
    try:
        return text(segment, field, component, repetition, subcomponent)
    except KeyError:
        return ""


def repetitions(segment: hl7.Segment, field: int) -> int:
    """How many repetitions ``segment``'s field ``field`` has (0 when it is empty)."""
    return repetition_count(segment, field)


def first_segment(message: hl7.Message, name: str) -> hl7.Segment | None:
    """The first segment named ``name`` (``"PV1"``), or None when the message has none."""
    try:
        return message.segment(name)
    except KeyError:
        return None
