"""The look-ups a group-commit batch of messages needs, read for all of them at once.

A listener's messages share transactions (:class:`~hygeia.server.group_commit.GroupCommit`),
and before each message is handled it looks up its log record (a repeat?) and its
patient (PID-3). Done message by message, those are two or three statements each on
the one committer thread: on PostgreSQL, round trips that were over a third of its
time (py-spy, issue 16). :meth:`BatchReads.prepare` runs once per batch, after the
batch's locks are taken (each message's own, and its PID-3's), and reads:

- the heads of every message's Binary and MessageHeader, in one statement;
- the Patients every message's PID-3 names
  (:func:`~hygeia.devices.hl7v2.attribution.find_patients`).

What it read answers a message only inside that transaction (the session it was
read in), and the patients only while no Patient has been written in it: a message
earlier in the batch may have created or changed one, and then the rest search
again as before. A batch that fails runs its messages alone, each in a transaction
of its own where nothing was read ahead: they look everything up themselves. The
answers are the same either way; ADR "devices: a batch's look-ups read together"
says why this is safe.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from hygeia.devices.hl7v2.attribution import find_patients
from hygeia.devices.mllp.messagelog import heads_of_all
from hygeia.store import Head, Session


@dataclass(frozen=True, slots=True)
class Hint:
    """What a message will look up: its log id, and its PID-3 criteria (or None)."""

    id: str
    patient: str | None = None


@dataclass(slots=True)
class _Read:
    """What :meth:`BatchReads.prepare` read in ``session``."""

    session: Session
    heads: dict[str, dict[tuple[str, str], Head]]
    patients: dict[str, list[str]]


class BatchReads:
    """What :meth:`prepare` read for the batch in hand, per committer thread (on
    PostgreSQL several run batches at once; each batch's units run on the thread that
    prepared it)."""

    def __init__(self) -> None:
        self._local = threading.local()  # .read: this thread's _Read, or None
        self.last: _Read | None = None  # the latest batch's read (for tests)
        self.offered = 0  # messages given the batch's patients (for tests and metrics)

    def prepare(self, session: Session, hints: list[object]) -> None:
        """Read the batch's look-ups in ``session`` (the :class:`GroupCommit` hook)."""
        self._local.read = None  # nothing of an earlier batch answers if this one fails
        mine = [hint for hint in hints if isinstance(hint, Hint)]
        heads = heads_of_all(session, [hint.id for hint in mine])
        criteria = {hint.patient for hint in mine if hint.patient}
        patients = find_patients(session, criteria) if criteria else {}
        self._local.read = self.last = _Read(session, heads, patients)

    def _read(self, session: Session) -> _Read | None:
        read: _Read | None = getattr(self._local, "read", None)
        return read if read is not None and read.session is session else None

    def log_heads(self, session: Session, id: str) -> dict[tuple[str, str], Head] | None:
        """The heads of message ``id``'s Binary and record, if read for this session."""
        read = self._read(session)
        return None if read is None else read.heads.get(id)

    def patients(self, session: Session) -> Mapping[str, list[str]] | None:
        """PID-3 criteria -> Patient ids, if read for this session and no Patient has
        been written in it since."""
        written = session.written_types  # None: not known, so maybe
        read = self._read(session)
        if read is None or written is None or "Patient" in written:
            return None
        self.offered += 1
        return read.patients
