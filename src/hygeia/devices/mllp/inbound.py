"""One inbound HL7 v2 message, from bytes to stored data and the acknowledgements due.

The order is what makes an acknowledgement trustworthy:

1. Decode (UTF-8, else ISO 8859-1) and parse with python-hl7; bytes that are not
   an HL7 message are refused (AR, ERR 100) and logged.
2. In one write transaction: take a lock on the message's log id (so two
   copies arriving at once on two connections are processed once), answer a
   repeat from its record (the same ACKs, nothing stored again; a record of a
   transient error is processed again instead), else run the handler for the
   message type and write the raw message and its record. A listener's
   connections share transactions (:class:`~hygeia.server.group_commit.GroupCommit`):
   the messages that arrive while one commit is written go into the next, one
   fsync for all of them; a message that fails runs again alone, so it cannot
   take the others down. The look-ups of a batch (log records, PID-3 patients)
   are read for all its messages at once (:mod:`.batchreads`). What a handler
   can build before (:func:`~hygeia.devices.hl7v2.handling.handler_prebuild`) it
   builds on the connection's thread, outside the transaction and so outside
   SQLite's writer's turn; in the transaction it checks that still holds.
3. Only after that transaction commits are the ACKs returned to be sent.

A handler that refuses the message (:class:`~hygeia.devices.hl7v2.handling.Rejected`)
or fails rolls its transaction back, so none of its writes remain; the message
and a record of the failure are then stored in a transaction of their own,
and the ACK (AE or AR, with an ``ERR`` segment) is sent after that one commits.
If even that cannot be stored, the answer is AE (CE in enhanced mode) and
nothing is kept: the sender will resend.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

import hl7

from hygeia.devices.hl7v2.handling import (
    Handler,
    Received,
    Rejected,
    field_text,
    handler_locks,
    handler_patients,
    handler_prebuild,
)
from hygeia.devices.hl7v2.parsing import parse_er7
from hygeia.devices.mllp.acks import Failure, Outcome, header_segment, replies
from hygeia.devices.mllp.batchreads import BatchReads, Hint
from hygeia.devices.mllp.messagelog import (
    OK,
    TRANSIENT,
    Entry,
    Logged,
    heads_of,
    outcome_code,
    record_id,
    unparsed_id,
)
from hygeia.devices.mllp.messagelog import (
    find as find_logged,
)
from hygeia.devices.mllp.messagelog import (
    store as log_message,
)
from hygeia.fhir.outcome import FhirError, NotFound
from hygeia.server.extensions import Host
from hygeia.server.group_commit import GroupCommit
from hygeia.store import Session

log = logging.getLogger("hygeia.devices.mllp")


@dataclass(frozen=True, slots=True)
class Arrival:
    """Bytes of one MLLP block, and where they came from."""

    raw: bytes
    peer: str  # mllp://host:port of the sender
    listener: str  # mllp://host:port of this listener
    received_at: datetime


class Inbound:
    """Processes messages for a listener (or a reprocess) through ``host``."""

    def __init__(self, host: Host, handlers: Mapping[str, Handler],
                 commits: GroupCommit | None = None) -> None:
        self.host = host
        self.handlers = handlers
        self.commits = commits  # a listener's: its connections share commits
        self.reads = BatchReads()  # what a batch's prepare read (commits' hook)

    @classmethod
    def grouped(cls, host: Host, handlers: Mapping[str, Handler],
                name: str = "mllp-commit", committers: int | None = None) -> Inbound:
        """An Inbound for a listener: its messages share commits, and each batch's
        look-ups are read together (:mod:`.batchreads`); ``committers`` batches at once
        (default: as many as the repository runs writers side by side)."""
        inbound = cls(host, handlers)
        inbound.commits = GroupCommit(
            host, name=name, prepare=inbound.reads.prepare,
            committers=committers or host.repository.concurrent_writers)
        return inbound

    def _committed(self, work: Callable[[Session], list[str]], key: str,
                   locks: list[str], hint: Hint) -> list[str]:
        """``work``'s result once its transaction committed: a shared one through the
        listener's group commit (taking ``locks`` with the other units', its look-ups
        read with theirs from ``hint``), else one of its own (a reprocess from the
        CLI)."""
        if self.commits is not None:
            return self.commits.run(work, key, locks, hint)
        with self.host.transaction() as session:
            return work(session)

    def answer(self, arrival: Arrival) -> list[bytes]:
        """Process one message; the acknowledgements to send, encoded, once committed."""
        text = decode(arrival.raw)
        message = parse(text)
        if message is None:
            return self._refuse_unparsed(arrival)
        if field_text(header_segment(message), 9, 1, 1) == "ACK":
            return []  # an acknowledgement is never answered (no ACK ping-pong), nor kept
        received = _received(message, text, arrival.received_at)
        entry = Entry(id=record_id(received.sender, received.control_id),
                      raw=arrival.raw, received_at=arrival.received_at, peer=arrival.peer,
                      listener=arrival.listener, sender=received.sender,
                      receiver=_receiver(message), control_id=received.control_id,
                      message_type=received.message_type)
        return [ack.encode(_charset(arrival.raw)) for ack in self.process(message, received,
                                                                          entry)]

    def process(self, message: hl7.Message, received: Received, entry: Entry,
                repeat_answers: bool = True) -> list[str]:
        """Steps 2 and 3 of the module docstring; the ACKs as text."""
        refusal = self._refusal(received)
        if refusal is not None:
            return self._record_failure(message, entry, "AR", refusal, repeat_answers,
                                        accepted=False)
        handler = self.handlers[received.message_type]
        # built here, on the connection's thread: the committer's thread serves everyone
        acks = replies(message, Outcome("AA", True), entry.id[:19])
        # likewise what the handler can build now
        handler_prebuild(handler, received, self.host.registry)

        def store(session: Session) -> list[str]:
            session.lock(_message_lock(entry.id))
            heads = self.reads.log_heads(session, entry.id)
            if heads is None:  # one query, for the look-up and the log
                heads = heads_of(session, entry.id)
            previous = find_logged(session, entry.id, heads)
            if previous is not None and repeat_answers and previous.outcome != TRANSIENT:
                return previous.acks
            known = self.reads.patients(session)
            handled = handler(received if known is None else
                              replace(received, known_patients=known), session)
            log_message(session, replace(
                entry, outcome=OK, notes=handled.notes,
                written=_unique(handled.written), acks=acks, failure=None), heads)
            return acks

        try:
            locks = [_message_lock(entry.id), *handler_locks(handler, received)]
            hint = Hint(entry.id, handler_patients(handler, received))
            return self._committed(store, entry.id, locks, hint)
        except Rejected as rejected:
            failure = Failure(rejected.text, rejected.hl7_code, rejected.location)
            return self._record_failure(message, entry, rejected.acknowledgement, failure,
                                        repeat_answers)
        except FhirError as error:  # the handler built data that FHIR cannot hold
            failure = Failure(f"The message's data could not be stored: {error}", "207")
            return self._record_failure(message, entry, "AE", failure, repeat_answers)
        except Exception as error:  # the database or a bug: the sender retries
            log.exception("HL7 v2 message %s from %s failed", entry.control_id, entry.sender)
            failure = Failure("The message could not be processed now; send it again later.",
                              "207", diagnostic=type(error).__name__, transient=True)
            return self._record_failure(message, entry, "AE", failure, repeat_answers)

    def _refusal(self, received: Received) -> Failure | None:
        """Why the message is refused unread, if it is."""
        if not received.control_id:
            return Failure("MSH-10 (message control ID) is empty.", "101", "MSH^1^10")
        if received.message_type not in self.handlers:
            kinds = ", ".join(sorted(self.handlers)) or "none"
            return Failure(f"Message type {received.message_type or '(empty)'} is not "
                           f"supported here (supported: {kinds}).", "200", "MSH^1^9")
        return None

    def _record_failure(self, message: hl7.Message | None, entry: Entry, code: str,
                        failure: Failure, repeat_answers: bool, accepted: bool = True
                        ) -> list[str]:
        """Store the message and the failure in a transaction of their own; the ACKs.

        A record found now (a copy of the message on another connection got through
        meanwhile, or a repeat of a refused one) answers instead, unless this is a
        reprocess."""
        try:
            with self.host.transaction() as session:
                previous = _lock_and_find(session, entry.id)
                if previous is not None and repeat_answers and \
                        previous.outcome != TRANSIENT:
                    return previous.acks
                acks = replies(message, Outcome(code, True, failure, accepted),
                               entry.id[:19])
                log_message(session, replace(
                    entry, outcome=outcome_code(code, failure), failure=failure,
                    acks=acks, notes=[], written=[]))
            return acks
        except Exception:  # nothing could be stored: say so, keep serving
            log.exception("HL7 v2 message %s from %s could not be logged", entry.control_id,
                          entry.sender)
            unstored = Failure("The message could not be stored; send it again later.",
                               "207", transient=True)
            return replies(message, Outcome("AE", False, unstored, accepted), entry.id[:19])

    def _refuse_unparsed(self, arrival: Arrival) -> list[bytes]:
        entry = Entry(id=unparsed_id(arrival.raw), raw=arrival.raw,
                      received_at=arrival.received_at, peer=arrival.peer,
                      listener=arrival.listener)
        failure = Failure("The block is not an HL7 v2 message: it must begin with an MSH "
                          "segment.", "100", "MSH^1")
        return [ack.encode("utf-8") for ack in
                self._record_failure(None, entry, "AR", failure, True, accepted=False)]

    def reprocess(self, id: str) -> str:
        """Run the handler again on the logged message ``id`` and update its record;
        the new outcome (``ok``, ``transient-error`` or ``fatal-error``).

        The handler runs as for a new message: what it writes is found-or-created by
        identifier, so running it twice does not duplicate data."""
        with self.host.reader() as session:
            logged = find_logged(session, id)
        if logged is None:
            raise NotFound(f"No HL7 v2 message is logged as MessageHeader/{id}.",
                           expression="id")
        text = decode(logged.raw)
        message = parse(text)
        if message is None:
            return logged.outcome  # still not HL7: nothing to run
        received = _received(message, text, logged.received_at)
        source = logged.resource.get("source", {})
        destination = (logged.resource.get("destination") or [{}])[0]
        entry = Entry(id=id, raw=logged.raw, received_at=logged.received_at,
                      peer=source.get("endpoint", ""),
                      listener=destination.get("endpoint", ""), sender=received.sender,
                      receiver=_receiver(message), control_id=received.control_id,
                      message_type=received.message_type)
        self.process(message, received, entry, repeat_answers=False)
        with self.host.reader() as session:
            updated = find_logged(session, id)
        return updated.outcome if updated is not None else logged.outcome


def _message_lock(id: str) -> str:
    return f"hl7v2-message:{id}"


def _lock_and_find(session: Session, id: str) -> Logged | None:
    session.lock(_message_lock(id))
    return find_logged(session, id)


def _unique(references: list[str]) -> list[str]:
    return list(dict.fromkeys(references))


def decode(raw: bytes) -> str:
    """The message's text: UTF-8 (HL7's preferred character set), else ISO 8859-1 (every
    byte is a character); line feeds some senders use between segments become CRs."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")


def _charset(raw: bytes) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def parse(text: str) -> hl7.Message | None:
    """The parsed message, or None when ``text`` is not one (python-hl7's tree, built by
    :func:`~hygeia.devices.hl7v2.parsing.parse_er7`: ``hl7.parse`` took half the CPU
    of mapping a monitor message)."""
    if not text.startswith("MSH") or len(text) < 8:
        return None
    try:
        message = parse_er7(text)
        header_segment(message)
    except Exception:  # python-hl7 raises several kinds on garbage
        return None
    return message


def message_type(message: hl7.Message) -> str:
    """``MSH-9.1^MSH-9.2`` (``ADT^A01``), or ``MSH-9.1`` alone when there is no event."""
    msh = header_segment(message)
    kind, event = field_text(msh, 9, 1, 1), field_text(msh, 9, 1, 2)
    return f"{kind}^{event}" if event else kind


def sender(message: hl7.Message) -> str:
    """``MSH-3|MSH-4`` as sent (components included)."""
    msh = header_segment(message)
    return f"{_raw_field(msh, 3)}|{_raw_field(msh, 4)}"


def _receiver(message: hl7.Message) -> str:
    msh = header_segment(message)
    return f"{_raw_field(msh, 5)}|{_raw_field(msh, 6)}"


def _raw_field(segment: hl7.Segment, field: int) -> str:
    try:
        return str(segment(field))
    except IndexError:
        return ""


def _received(message: hl7.Message, text: str, received_at: datetime) -> Received:
    return Received(message=message, raw=text, sender=sender(message),
                    control_id=field_text(header_segment(message), 10),
                    message_type=message_type(message), received_at=received_at)

