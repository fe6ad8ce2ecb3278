"""What the engine remembers of its patients' vital signs, so most batches read none.

Every committed version of a vital sign reaches the engine through the change feed,
in commit order. Once the store has told it a patient's readings from some time on
(one read, ``record.readings_for(..., open_end=True)``), the feed tells it every later
change: a new reading, an update (status, value, time, subject) or a delete. So for
that patient it can answer the read a batch needs (each parameter's readings from the
batch's floor on, and its latest one before the floor within the window) without the
store, whose read on SQLite walks the patient's whole history (ADR 0046).

What it holds, per patient and parameter (:class:`Track`): every reading at or after
``since``, and the latest reading(s) (a tie of one time kept whole) in ``[back,
since)``. A batch is answered from memory only when its floor is at or after
``since`` and its window starts at or after ``back`` for every parameter; otherwise
the store is read (late data older than what is kept, a patient not seen since the
start, an old reading changed) and what it returns replaces the patient's memory.

Bounded: at most :data:`KEEP` readings a parameter (older ones fold into the latest
before ``since``) and :data:`PATIENTS` patients (least recently used forgotten).
Memory is only as good as the feed it followed: it is forgotten when a batch does not
start where the last one it saw ended (the cursor moved in another process, a batch
failed and is handed over again), and a store read made before the events it has
seen since is not kept (:meth:`VitalMemory.position`).
"""

from __future__ import annotations

import threading
from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hygeia.clinical.news2.inputs import PARAMETERS, Reading
from hygeia.clinical.news2.record import ScoreSet

SECOND = 1_000_000  # µs: a score search's date clause is a second wider

KEEP = 16  # readings kept a parameter at or after ``since`` (a late one older: the store)
PATIENTS = 5000  # patients remembered (the least recently used forgotten)
SCORES = 64  # score sets kept a patient (the latest ending; a late vital older: the store)


def _key(reading: Reading) -> tuple[int, str]:
    return reading.at, reading.source


@dataclass(slots=True)
class Track:
    """One parameter of one patient: every reading at or after ``since`` (sorted by time,
    then Observation id), and ``before``, the readings at the latest time in ``[back,
    since)`` (empty: none there), so every reading from ``before``'s time on is known."""

    since: int
    back: int
    kept: list[tuple[int, str, Reading]] = field(default_factory=list)
    before: list[Reading] = field(default_factory=list)

    def add(self, reading: Reading) -> None:
        """A reading of a version the feed delivered (its previous readings forgotten)."""
        if reading.at >= self.since:
            insort(self.kept, (*_key(reading), reading))
            if len(self.kept) > KEEP:
                self._fold()
        elif reading.at >= self.back:
            newest = self.before[0].at if self.before else None
            if newest is None or reading.at > newest:
                self.before = [reading]
            elif reading.at == newest:
                self.before.append(reading)

    def _fold(self) -> None:
        """Move ``since`` past the oldest time kept, its readings becoming ``before``."""
        oldest = self.kept[0][0]
        cut = bisect_left(self.kept, (oldest + 1, ""))
        if cut == len(self.kept):
            return  # one time only (a tie): keep it whole
        self.before = [reading for _, _, reading in self.kept[:cut]]
        del self.kept[:cut]
        self.since = self.kept[0][0]

    def remove(self, source: str) -> bool:
        """Forget the readings of ``source``; False when the latest before ``since`` was
        one of them (what came before it is unknown: the patient must be read again)."""
        self.kept = [item for item in self.kept if item[1] != source]
        if any(reading.source == source for reading in self.before):
            self.before = [reading for reading in self.before if reading.source != source]
            if not self.before:
                return False
        return True

    def answers(self, start: int, floor: int) -> bool:
        """Whether every reading from ``floor`` on and the latest in ``[start, floor]``
        are known: what is kept and ``before`` hold every reading from ``before``'s time
        on (from ``back`` when ``before`` is empty: there was none before ``since``)."""
        complete_from = self.before[0].at if self.before else self.back
        return start >= self.back and floor >= complete_from

    def readings(self, start: int, floor: int, end: int) -> list[Reading]:
        """What the store's read would give a score (:meth:`answers` first): every
        reading in ``[floor, end]`` and the latest one(s) in ``[start, floor)``."""
        known = [*self.before, *(reading for _, _, reading in self.kept)]
        found = [reading for reading in known if floor <= reading.at <= end]
        earlier = [reading for reading in known if start <= reading.at < floor]
        if earlier:
            newest = max(reading.at for reading in earlier)
            found.extend(reading for reading in earlier if reading.at == newest)
        return found


@dataclass(slots=True)
class Patient:
    """A patient's tracks, and its scores whose set ends at or after ``scores_since``
    (None: not known), by id, as committed (the band each was written with)."""

    tracks: dict[str, Track]
    scores_since: int | None = None
    scores: dict[str, ScoreSet] = field(default_factory=dict)


def _copy(one: ScoreSet) -> ScoreSet:
    return ScoreSet(one.id, one.start, one.end, one.stored, one.was)


class VitalMemory:
    """Each remembered patient's recent readings, kept in step with the change feed.

    Thread-safe (the engine reads a batch's vital signs on a read-ahead thread and, on
    PostgreSQL, scores the next batch on another): one lock around each call."""

    def __init__(self, patients: int = PATIENTS) -> None:
        self.limit = patients
        self._patients: OrderedDict[str, Patient] = OrderedDict()
        self._where: dict[str, str] = {}  # Observation/{id} -> the patient it is kept for
        self._position: int | None = None  # the feed position its events reach
        self._score_of: dict[str, str] = {}  # score id -> its patient
        self._changes = 0  # scores changed or forgotten (a score read begun before: stale)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._patients)

    @property
    def position(self) -> int | None:
        """Where the events it has followed end (None: it follows none): a store read
        begun at one position is kept only if memory is still there when it ends."""
        return self._position

    def forget(self) -> None:
        """Forget everything (a batch failed, the cursor moved elsewhere)."""
        with self._lock:
            self._clear()
            self._position = None

    def _clear(self) -> None:
        self._patients.clear()
        self._where.clear()
        self._score_of.clear()
        self._changes += 1

    def follow(self, start: int, end: int, changed: Iterable[str],
               current: Mapping[str, tuple[str | None, list[Reading]]],
               scores: Iterable[str] = ()) -> None:
        """Apply a batch of the feed from ``start`` to ``end``: ``changed`` the sources
        (``Observation/{id}``) it changed or deleted, ``current`` each one's patient and
        readings as the batch left it (absent: deleted), ``scores`` the patients of NEWS2
        scores it holds that the engine did not write. A batch that does not start where
        the last ended forgets everything first; one already followed is skipped."""
        with self._lock:
            if self._position == end:
                return
            if self._position != start:
                self._clear()
            self._position = end
            for source in changed:
                self._change(source, *current.get(source, (None, [])))
                self._score_changed(self._score_of.get(source.partition("/")[2]))
            for patient in scores:  # written by someone else: read them again
                self._score_changed(patient)

    def _score_changed(self, patient: str | None) -> None:
        known = None if patient is None else self._patients.get(patient)
        if known is None or known.scores_since is None:
            return
        for score_id in known.scores:
            self._score_of.pop(score_id, None)
        known.scores_since, known.scores = None, {}
        self._changes += 1

    def _change(self, source: str, patient: str | None, readings: list[Reading]) -> None:
        was = self._where.pop(source, None)
        if was is not None and was in self._patients:
            tracks = self._patients[was].tracks
            if not all([track.remove(source) for track in tracks.values()]):
                self._drop(was)
        if patient is None or patient not in self._patients or not readings:
            return
        tracks = self._patients[patient].tracks
        for reading in readings:
            tracks[reading.parameter].add(reading)
        self._where[source] = patient

    def _drop(self, patient: str) -> None:
        gone = self._patients.pop(patient, None)
        if gone is None:
            return
        for score_id in gone.scores:
            self._score_of.pop(score_id, None)
        self._changes += 1
        self._forget_sources(patient, gone)

    def _forget_sources(self, patient: str, known: Patient) -> None:
        for track in known.tracks.values():
            for source in {item[1] for item in track.kept} | \
                    {reading.source for reading in track.before}:
                if self._where.get(source) == patient:
                    del self._where[source]

    def knows(self, patients: Iterable[str]) -> set[str]:
        """The patients of ``patients`` whose readings it holds (answerable or not)."""
        with self._lock:
            return {patient for patient in patients if patient in self._patients}

    def answer(self, windows: Mapping[str, tuple[int, int]], window: int
               ) -> dict[str, list[Reading]]:
        """The readings of each patient of ``windows`` (start, end) it can answer for, as
        ``record.readings_for`` would read them (``window``: the floor is ``start +
        window``), sorted by (time, Observation id)."""
        found: dict[str, list[Reading]] = {}
        with self._lock:
            for patient, (start, end) in windows.items():
                known = self._patients.get(patient)
                floor = start + window
                if known is None or not all(track.answers(start, floor)
                                            for track in known.tracks.values()):
                    continue
                self._patients.move_to_end(patient)
                readings = [reading for track in known.tracks.values()
                            for reading in track.readings(start, floor, end)]
                readings.sort(key=_key)
                found[patient] = readings
        return found

    def learn(self, position: int | None, windows: Mapping[str, tuple[int, int]],
              window: int, read: Mapping[str, list[Reading]]) -> None:
        """Remember what a store read found (``record.readings_for`` with ``open_end``:
        every reading from each floor on, and each parameter's latest before it within
        the window), if no event was followed since it began (``position``)."""
        with self._lock:
            if position is None or position != self._position:
                return
            for patient, (start, _) in windows.items():
                known = self._patients.get(patient)
                if known is not None:  # its scores stay: only the readings are read
                    self._forget_sources(patient, known)
                    known.tracks = self._tracks(patient, start, start + window,
                                                read.get(patient, []))
                    self._patients.move_to_end(patient)
                else:
                    self._patients[patient] = Patient(self._tracks(
                        patient, start, start + window, read.get(patient, [])))
            while len(self._patients) > self.limit:
                self._drop(next(iter(self._patients)))

    def _tracks(self, patient: str, start: int, floor: int, readings: list[Reading]
                ) -> dict[str, Track]:
        # the read holds every reading after the floor and the latest at or before it
        tracks = {parameter: Track(floor + 1, start) for parameter in PARAMETERS}
        for reading in readings:
            if start <= reading.at:
                tracks[reading.parameter].add(reading)
                self._where[reading.source] = patient
        return tracks

    # ------------------------------------------------------------------ scores

    @property
    def score_changes(self) -> int:
        """A count of score changes: a score read begun at one count is kept only if it
        is the same when the read ends (:meth:`learn_scores`)."""
        return self._changes

    def scores(self, earliest: Mapping[str, int]) -> dict[str, list[ScoreSet]]:
        """Copies of each patient's scores whose set ends at or after ``earliest[
        patient]`` (a second before it, as the store's search), sorted by start, for the
        patients whose scores are known from there on."""
        found: dict[str, list[ScoreSet]] = {}
        with self._lock:
            for patient, at in earliest.items():
                known = self._patients.get(patient)
                if known is None or known.scores_since is None or at < known.scores_since:
                    continue
                found[patient] = sorted((_copy(one) for one in known.scores.values()
                                         if one.end >= at - SECOND),
                                        key=lambda one: (one.start, one.end))
        return found

    def learn_scores(self, changes: int, earliest: Mapping[str, int],
                     read: Mapping[str, list[ScoreSet]]) -> None:
        """Remember the scores a store read found (``record.scores_from``: every score
        ending at or after each patient's ``earliest``), for the patients whose readings
        are remembered, if no score changed since the read began (``changes``)."""
        with self._lock:
            if changes != self._changes:
                return
            for patient, at in earliest.items():
                known = self._patients.get(patient)
                if known is None:
                    continue
                for score_id in known.scores:
                    self._score_of.pop(score_id, None)
                known.scores = {one.id: _copy(one) for one in read.get(patient, [])}
                known.scores_since = at
                self._score_of.update((score_id, patient) for score_id in known.scores)

    def wrote(self, written: Mapping[str, list[ScoreSet]]) -> None:
        """The scores the engine's batch committed, by patient (each with its band)."""
        with self._lock:
            for patient, sets in written.items():
                known = self._patients.get(patient)
                if known is None or known.scores_since is None:
                    continue
                for one in sets:
                    known.scores[one.id] = _copy(one)
                    self._score_of[one.id] = patient
                if len(known.scores) > SCORES:
                    self._trim_scores(known)
                self._changes += 1

    def _trim_scores(self, known: Patient) -> None:
        """Keep the :data:`SCORES` sets ending last: the scores are then known from a
        second after the end of the last one dropped."""
        ordered = sorted(known.scores.values(), key=lambda one: one.end)
        cut = ordered[-SCORES].end
        for one in ordered:
            if one.end < cut:
                del known.scores[one.id]
                self._score_of.pop(one.id, None)
        assert known.scores_since is not None
        known.scores_since = max(known.scores_since, cut + SECOND)
