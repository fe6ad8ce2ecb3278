"""The early-warning engine: every committed vital sign updates the patient's NEWS2.

An :class:`EventConsumer` of the change feed, so every write path (REST,
transactions, loads, MLLP, MQTT) reaches it after commit, and a crash between
commit and score is resumed from the consumer's cursor. The score and the alert
commit with the cursor (``context.transaction()``): a replay writes nothing twice.

One score per patient per observation set: vitals whose effective times lie
within ``set_seconds`` (5 minutes) of each other share a score Observation, which
each later member of the set updates (a new version). Each parameter is the
latest reading within ``window_seconds`` before the set's last vital. A vital sign
that arrives late (taken before sets already scored) joins its own set, and every
later set whose window holds it is scored again; only the patient's newest set
moves the alerts.

A batch of the feed is scored together: its patients' scores, vital signs,
birth dates, pregnancies, scale-2 Flags and active alerts are read with a few
searches for the whole batch (``news2/record.py``), and the scores written in the
batch's one transaction. On PostgreSQL the next batch is read and scored while that
transaction commits, the runner handing it over next (:meth:`News2Engine.pending`).

Alerts go through the core's alerting service, one key per band
(``news2-high|Patient/1``): a rising band raises its alert and clears the milder
one; a falling band clears the worse ones and raises nothing; a low band clears
them all; a partial score (a parameter missing) changes none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from hygeia.clinical.news2.inputs import (
    NEWS2_SYSTEM,
    PREGNANCY,
    SCALE_2_FLAG,
    SNOMED,
    Reading,
    is_news2_score,
    readings_of,
)
from hygeia.clinical.news2.memory import VitalMemory
from hygeia.clinical.news2.record import (
    Applicability,
    ScoreSet,
    applicability,
    band_of_score,
    bands_before,
    current_of,
    newest_score,
    newest_vital,
    readings_for,
    scores_from,
    subject_of,
    with_written,
)
from hygeia.clinical.news2.result import result_observation
from hygeia.clinical.news2.score import Score, score_readings
from hygeia.clinical.news2.scoring import Band
from hygeia.clinical.settings import SET_SECONDS, WINDOW_SECONDS
from hygeia.fhir.outcome import FhirError
from hygeia.fhir.resources import new_id
from hygeia.server.alerts import Alert, AlertState
from hygeia.server.extensions import EventContext, Host
from hygeia.server.rest import write
from hygeia.store import ChangeBatch, ChangeEvent, FeedLost, Session, StoredVersion

log = logging.getLogger("hygeia.clinical.news2")

ALERT_CODE = {"coding": [{"system": NEWS2_SYSTEM, "code": "news2-deterioration",
                          "display": "NEWS2 clinical deterioration"}]}


@dataclass(frozen=True, slots=True)
class BandAlert:
    """How a band is escalated: priority and minutes before an unacknowledged escalation."""

    priority: str
    escalate_minutes: float


BAND_ALERTS = {Band.LOW_MEDIUM: BandAlert("urgent", 60.0),
               Band.MEDIUM: BandAlert("asap", 30.0),
               Band.HIGH: BandAlert("stat", 15.0)}
ORDER = [Band.LOW, Band.LOW_MEDIUM, Band.MEDIUM, Band.HIGH]
BATCH = 2000  # change-feed events per batch
MAX_OWN = 100_000  # score versions remembered as the engine's own (News2Engine._own)


def alert_key(band: Band, patient: str) -> str:
    return f"news2-{band.value}|{patient}"


@dataclass(slots=True)
class AlertPlan:
    """The alert keys to clear and the alerts to raise, by patient, decided from the
    ``state`` read (keys locked) before the batch wrote anything."""

    state: AlertState
    clear: dict[str, list[str]] = field(default_factory=dict)
    rise: dict[str, list[Alert]] = field(default_factory=dict)

    def drop(self, patient: str) -> None:
        """The patient's score was not stored: its alerts stay as they are."""
        self.clear.pop(patient, None)
        self.rise.pop(patient, None)

    def apply(self, session: Session, host: Host) -> None:
        """Clear, then raise: every patient's alerts in a few searches, not a few each."""
        clear = [key for keys in self.clear.values() for key in keys]
        rise = [alert for alerts in self.rise.values() for alert in alerts]
        if clear:
            host.alerts.clear_alerts(session, clear, self.state)
        if rise:
            host.alerts.raise_alerts(session, rise, self.state)


@dataclass(slots=True)
class Scoring:
    """A batch scored but not yet stored: each patient's sets as read (``known``), the
    set each (patient, time) joined, the patients scored, the scores that differ from
    what is stored, and each patient's newest set with its score and band before."""

    known: dict[str, list[ScoreSet]]
    chosen: dict[tuple[str, int], ScoreSet]
    scored: set[str]
    writes: list[tuple[str, ScoreSet, dict[str, Any]]] = field(default_factory=list)
    fronts: dict[str, tuple[ScoreSet, Score, Band | None]] = field(default_factory=dict)
    written: dict[str, list[ScoreSet]] = field(default_factory=dict)  # by store()
    versions: dict[str, int] = field(default_factory=dict)  # score id -> version written

    def written_sets(self) -> dict[str, list[ScoreSet]]:
        """The sets :meth:`News2Engine.store` wrote, by patient, as the next batch reads
        them: copies (this batch's are not shared between threads), each with the band
        it was written with as the band it had before that batch, and without the
        ``meta`` the write stamped on it (as ``record.scores_from`` reads them: with it,
        the next batch found every such score changed and wrote it again)."""
        return {patient: [ScoreSet(one.id, one.start, one.end, _without_meta(one.stored),
                                   band_of_score(one.stored)) for one in sets]
                for patient, sets in self.written.items()}


def _without_meta(score: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if score is None else {key: value for key, value in score.items()
                                       if key != "meta"}


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)


@dataclass(frozen=True, slots=True)
class Early:
    """A batch's reads under way on other threads: every reading its sets can use, by
    patient, and who NEWS2 applies to."""

    vitals: Future[dict[str, list[Reading]]]
    patients: Future[Applicability]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch read and scored ahead (``scoring`` None: nothing to score)."""

    scoring: Scoring | None


@dataclass(frozen=True, slots=True)
class Ahead:
    """The batch after the one being committed, read from the feed and scored while that
    one commits: where it starts (the committing batch's position) and, once done, the
    batch and its scoring (no :class:`Prepared` when it must be scored in its turn)."""

    after: int
    work: Future[tuple[ChangeBatch, Prepared | None]]

    def batch(self) -> ChangeBatch | None:
        """The batch read ahead; None when it failed (the runner reads the feed itself)."""
        try:
            return self.work.result()[0]
        except Exception:
            log.warning("NEWS2: reading the next batch ahead failed; reading it again",
                        exc_info=True)
            return None

    def prepared_for(self, batch: ChangeBatch) -> Prepared | None:
        """The scoring of ``batch`` if it is the batch read ahead (else None)."""
        if not self.work.done() or self.work.exception() is not None:
            return None
        read, prepared = self.work.result()
        return prepared if read is batch else None


def _applicability_in(other: Callable[[], AbstractContextManager[Session]],
                      patients: list[str]) -> Applicability:
    with other() as session:
        return applicability(session, patients)


class News2Engine:
    """Scores NEWS2 on every vital sign committed and escalates by band."""

    name = "clinical-news2"
    types: Collection[str] | None = ("Observation", "Flag", "Condition")
    from_start = False  # scores are about now: a new install does not score history
    # events per batch (the runner's default is 500): a batch's reads and its commit cost
    # about the same for 500 events as for 2,000, and a bulk load commits 4,000 vitals at
    # once; more patients than PATIENTS_PER_SEARCH are read in more searches (ADR 0023)
    batch = BATCH
    # a vital committed by another process on SQLite (``hygeia load``, an MLLP gateway
    # in a second server) sends no commit signal: a 1 s poll alone would break a 1 s lag
    poll_seconds = 0.2
    # a batch's searches cost about the same for 10 vitals as for 2,000: under a stream
    # of small commits (MLLP, HTTP) wait a moment so they are scored together
    gather_seconds = 0.1
    # where the next batch is read and scored while one commits (ADR 0037). Not on SQLite:
    # its one writer is held by each batch's write transaction, and batches handed over
    # back to back (smaller, each a transaction) left the ingest's writes less of it
    pipeline_dialects: Collection[str] = frozenset({"postgresql"})

    def __init__(self, host: Host, *, window_seconds: float = WINDOW_SECONDS,
                 set_seconds: float = SET_SECONDS) -> None:
        self.host = host
        self.window = _us(window_seconds)
        self.set = _us(set_seconds)
        self._ahead: ThreadPoolExecutor | None = None  # reads a batch's vitals and patients
        self._pipeline: ThreadPoolExecutor | None = None  # reads and scores the next batch
        self._next: Ahead | None = None  # the next batch, read while this one commits
        # score id -> the version this engine's last commits wrote: their events are not
        # read back (a score is no vital sign); popped as seen, forgotten on a failure
        self._own: dict[str, int] = {}
        # each followed patient's recent readings, so most batches read no vital sign
        # from the store (ADR 0046); ``_start``: where the batch being handled starts
        self.memory = VitalMemory()
        self._start: int | None = None

    def _read_ahead(self) -> ThreadPoolExecutor:
        """The two threads that read a batch's vital signs and its patients while the
        engine's own thread reads the scores (created on the first batch)."""
        if self._ahead is None:
            self._ahead = ThreadPoolExecutor(2, thread_name_prefix="hygeia-news2-read")
        return self._ahead

    def pending(self, position: int) -> ChangeBatch | None:
        """The batch after ``position`` if it was read (and scored) while the batch ending
        there committed; the runner hands it over next instead of reading the feed.

        It holds the events committed when it was read, a prefix of what a read now
        would return, so the cursor moves past exactly what was scored; later events
        come in the batch after it. None when nothing was read ahead from ``position``
        (another process moved the cursor, the commit failed, the read failed) or it
        found no events: the runner reads the feed, and rests if it is empty."""
        self._start = position
        ahead, self._next = self._next, None
        if ahead is None or ahead.after != position:
            return None
        batch = ahead.batch()
        if batch is None or not batch.events:
            return None
        self._next = ahead
        return batch

    def handle(self, batch: ChangeBatch, context: EventContext) -> None:
        # a set's vital signs usually commit together: each (patient, time) is scored once
        # per batch, when all of them are in the store, and the batch's patients are read
        # together (news2/record.py). Everything but the alerts is read in a reader's
        # snapshot first: the write transaction holds the store's one writer (on SQLite
        # every other write waits for it), so it takes only the alerts' locked read and
        # the writes (ADR 0023)
        ahead, self._next = self._next, None
        try:
            self._handle(batch, context, None if ahead is None else ahead.prepared_for(batch))
        except BaseException:
            self._next = None  # scored on top of scores that were not committed
            self._own.clear()  # versions that may never have been committed
            self.memory.forget()  # the batch is handed over again: follow it again
            raise

    def _handle(self, batch: ChangeBatch, context: EventContext,
                prepared: Prepared | None) -> None:
        """:meth:`handle` with the scoring read ahead, if any."""
        if prepared is not None:
            scoring = prepared.scoring
        else:
            remember = self.memory.score_changes  # before the reader's snapshot begins
            with self.host.reader() as reading:
                times, again, parsed = _batch_inputs(reading, batch, self._own,
                                                     self._follow(batch))
                scoring = self.prepare(reading, times, again, parsed,
                                       other=self.host.reader, remember=remember)
        # scores and alerts commit with the cursor: a batch lost to a power cut is
        # scored again, so the commit need not wait for the disk
        with context.transaction(flush_to_disk=False) as session:
            if scoring is not None:
                self.store(session, scoring)
                self._remember(scoring.versions)
            # the commit (the writes' flush) is mostly a wait for the database: the
            # next batch is read and scored meanwhile, from this one's scores as
            # written (its reads may not see them yet)
            if self.host.repository.dialect in self.pipeline_dialects:
                self._next = self._read_next(batch.position, scoring)
        if scoring is not None:  # committed: what the memory knows of the scores
            self.memory.wrote(scoring.written_sets())

    def _follow(self, batch: ChangeBatch, start: int | None = None) -> Follow:
        """What applies ``batch``'s vital signs to the memory (``start``: where the batch
        starts, else where the runner said, :meth:`pending`)."""
        start = self._start if start is None else start
        if start is not None and self.memory.position is not None and \
                self.memory.position < start and self._nothing_between(start):
            start = self.memory.position  # the runner moved past other types only

        def follow(changed: Collection[str],
                   current: Mapping[str, tuple[str | None, list[Reading]]],
                   scores: Collection[str]) -> None:
            self.memory.follow(-1 if start is None else start, batch.position, changed,
                               current, scores)
        return follow

    def _nothing_between(self, start: int) -> bool:
        """Whether the feed holds no version of the engine's types between where the
        memory's events end and ``start`` (the runner moves the cursor past other types
        without a batch; another process handling batches would leave some)."""
        after = self.memory.position
        assert after is not None
        try:
            gap = self.host.repository.changes(after, 1, self.types)
        except FeedLost:  # purged meanwhile: the memory starts again, the engine goes on
            return False
        return not gap.events or gap.events[0].seq > start

    def _remember(self, versions: Mapping[str, int]) -> None:
        """Note the score versions a batch writes, so their events are skipped unread;
        bounded, should their events be read by another process (its cursor taken over)."""
        if len(self._own) > MAX_OWN:
            self._own.clear()
        self._own.update(versions)

    def _pipeline_thread(self) -> ThreadPoolExecutor:
        if self._pipeline is None:
            self._pipeline = ThreadPoolExecutor(1, thread_name_prefix="hygeia-news2-next")
        return self._pipeline

    def _read_next(self, position: int, scoring: Scoring | None) -> Ahead:
        """Start reading and scoring the batch after ``position`` on the pipeline thread,
        while the batch before it commits (:meth:`pending` hands it to the runner)."""
        written = {} if scoring is None else scoring.written_sets()
        return Ahead(position, self._pipeline_thread().submit(self._next_batch, position,
                                                              written))

    def _next_batch(self, position: int, written: Mapping[str, list[ScoreSet]]
                    ) -> tuple[ChangeBatch, Prepared | None]:
        """The batch after ``position`` and its scoring, ``written`` (the sets the batch
        before it wrote, by patient) taking the place of what the scores' read finds of
        them: that batch commits meanwhile, so a read may or may not see its writes.

        Not scored ahead (None) when it changes a scale 2 or a pregnancy: those sets
        are found from the newest score, read in the batch's turn. Nothing it reads is
        written by the batch committing but the scores, so the vital signs, Patients,
        Conditions and Flags read before that commit are those read after it."""
        batch = self.host.repository.changes(position, self.batch, self.types)
        if not batch.events:
            return batch, None
        remember = self.memory.score_changes  # before the reader's snapshot begins
        with self.host.reader() as reading:
            times, again, parsed = _batch_inputs(reading, batch, self._own,
                                                 self._follow(batch, position))
            if again:
                return batch, None
            return batch, Prepared(self.prepare(reading, times, (), parsed,
                                                other=self.host.reader, written=written,
                                                remember=remember))

    # ------------------------------------------------------------------ scoring

    def score(self, session: Session, times: Mapping[str, Collection[int]],
              again: Collection[str] = (),
              parsed: Mapping[tuple[str, str], list[Reading]] | None = None
              ) -> dict[tuple[str, int], str]:
        """Fold vital signs taken at ``times[patient]`` into their observation sets and
        score every set they change; score the newest set of each patient in ``again``
        once more (scale 2 or pregnancy changed). Returns the score id of each
        (patient, time) that was scored (NEWS2 applies). ``parsed``: readings of
        Observations already read, by (id, versionId). Reads and writes in ``session``."""
        scoring = self.prepare(session, times, again, parsed)
        return {} if scoring is None else self.store(session, scoring)

    def prepare(self, session: Session, times: Mapping[str, Collection[int]],
                again: Collection[str] = (),
                parsed: Mapping[tuple[str, str], list[Reading]] | None = None,
                other: Callable[[], AbstractContextManager[Session]] | None = None,
                written: Mapping[str, list[ScoreSet]] | None = None,
                remember: int | None = None) -> Scoring | None:
        """Read what scoring needs (a few searches for the batch) and score the sets
        ``times`` and ``again`` change (see :meth:`score`); nothing is written. None when
        there is nothing to score.

        ``other``: readers' sessions, in which the vital signs and the patients are read
        on two other threads while ``session`` reads the scores (on PostgreSQL the
        batch's reads are mostly waits for the database, ADR 0023); ``written``: score
        sets by patient that replace those of the same id the scores' read finds (the
        batch before's, committing meanwhile: :meth:`_next_batch`); ``remember``: the
        vital signs are answered from the memory where it can (the feed's batches only,
        whose events it followed), the memory's ``score_changes`` when ``session`` began
        (None: no memory)."""
        wanted = {patient: set(at) for patient, at in times.items() if at}
        for patient in again:
            end = newest_score(session, patient)
            if end is not None:
                wanted.setdefault(patient, set()).add(end)
        if not wanted:
            return None
        if other is None:
            return self._score_sets(session, wanted, parsed, written=written,
                                    remember=remember)
        early = Early(self._read_ahead().submit(self._vitals_around, other, wanted,
                                                parsed or {}, remember),
                      self._read_ahead().submit(_applicability_in, other, list(wanted)))
        try:
            return self._score_sets(session, wanted, parsed, early, written, remember)
        finally:
            early.vitals.cancel()
            early.patients.cancel()

    def _vitals_around(self, other: Callable[[], AbstractContextManager[Session]],
                       wanted: Mapping[str, Collection[int]],
                       parsed: Mapping[tuple[str, str], list[Reading]],
                       remember: int | None = None) -> dict[str, list[Reading]]:
        """Every reading a set of ``wanted`` can use, read before the sets are known: a
        vital at ``at`` joins a set that ends at most ``set`` later, and makes the later
        sets ending within ``window`` after it be scored again, so every window scored
        lies within ``window`` either side of the patient's times."""
        spans = {patient: (min(at) - self.window, max(at) + self.window)
                 for patient, at in wanted.items()}
        with other() as session:
            return self._readings(session, spans, 3 * self.window, parsed, remember)

    def _readings(self, session: Session, windows: Mapping[str, tuple[int, int]],
                  widest: int, parsed: Mapping[tuple[str, str], list[Reading]],
                  remember: int | None) -> dict[str, list[Reading]]:
        """``record.readings_for``, answered from the memory for the patients it can
        answer for (``remember``); the others read from the store: those it does not
        know to the end of time, so it learns them from the read, those it knows (late
        data older than it holds) as before, leaving it as it is (a read to the end of
        time would read, and parse, every later reading again)."""
        if remember is None:
            return readings_for(session, windows, widest, parsed, window=self.window)
        position = self.memory.position  # before the read: no event followed during it
        found = self.memory.answer(windows, self.window)
        known = self.memory.knows(patient for patient in windows if patient not in found)
        late = {patient: windows[patient] for patient in known}
        new = {patient: span for patient, span in windows.items()
               if patient not in found and patient not in known}
        if late:
            found.update(readings_for(session, late, widest, parsed, window=self.window))
        if new:
            read = readings_for(session, new, widest, parsed, window=self.window,
                                open_end=True)
            self.memory.learn(position, new, self.window, read)
            found.update(read)
        return found

    def _scores(self, session: Session, earliest: Mapping[str, int],
                remember: int | None) -> dict[str, list[ScoreSet]]:
        """``record.scores_from``, answered from the memory for the patients whose scores
        it knows from ``earliest[patient]`` on (``remember``: its ``score_changes`` when
        ``session`` began); the others read, and learnt if no score changed meanwhile."""
        if remember is None:
            return scores_from(session, earliest, self.window)
        found = self.memory.scores(earliest)
        rest = {patient: at for patient, at in earliest.items() if patient not in found}
        if rest:
            read = scores_from(session, rest, self.window)
            self.memory.learn_scores(remember, rest, read)
            found.update(read)
        return found

    def _score_sets(self, session: Session, wanted: dict[str, set[int]],
                    parsed: Mapping[tuple[str, str], list[Reading]] | None,
                    early: Early | None = None,
                    written: Mapping[str, list[ScoreSet]] | None = None,
                    remember: int | None = None) -> Scoring:
        """:meth:`prepare` once ``wanted`` is known: the vital signs and the patients read
        in ``session`` after the sets, or taken from ``early`` (read meanwhile on other
        threads; the patients changed are those wanted, every one)."""
        known = with_written(self._scores(session, {patient: min(at) - self.set
                                                    for patient, at in wanted.items()},
                                          remember), written or {})
        chosen: dict[tuple[str, int], ScoreSet] = {}
        changed: dict[str, dict[str, ScoreSet]] = {}
        for patient, moments in wanted.items():
            sets = known[patient]
            for at in sorted(moments):
                found = self._set_of(sets, at)
                if found is None:
                    found = ScoreSet(new_id(), at, at, None)
                    sets.append(found)
                    sets.sort(key=lambda one: (one.start, one.end))
                found.start, found.end = min(found.start, at), max(found.end, at)
                chosen[(patient, at)] = found
                changed.setdefault(patient, {})[found.id] = found
            # a late vital sign: the later sets whose window holds it are scored again
            for later in sets:
                if any(at < later.start and later.end - self.window <= at for at in moments):
                    changed[patient].setdefault(later.id, later)
        facts = applicability(session, list(changed)) if early is None else \
            early.patients.result()
        windows: dict[str, tuple[int, int]] = {}
        for patient, sets_changed in changed.items():
            reason = facts.not_applicable(patient, max(s.end for s in sets_changed.values()))
            if reason is not None:
                log.info("NEWS2 not scored for %s: %s", patient, reason)
                continue
            windows[patient] = (min(s.end for s in sets_changed.values()) - self.window,
                                max(s.end for s in sets_changed.values()))
        readings = self._readings(session, windows, 2 * self.window, parsed or {},
                                  remember) if early is None else early.vitals.result()
        scoring = Scoring(known, chosen, set(windows))
        for patient in windows:
            front = max(known[patient], key=lambda s: (s.end, s.start))
            for one in sorted(changed[patient].values(), key=lambda s: (s.start, s.end)):
                score = score_readings(
                    [reading for reading in readings[patient]
                     if one.end - self.window <= reading.at <= one.end],
                    scale2=patient in facts.scale_2)
                resource = result_observation(one.id, patient, score, one.start, one.end)
                if one.stored is None or one.stored != resource:
                    scoring.writes.append((patient, one, resource))
                if one is front:  # only the patient's newest set speaks for now
                    scoring.fronts[patient] = (one, score, one.was)
        return scoring

    def store(self, session: Session, scoring: Scoring) -> dict[tuple[str, int], str]:
        """Decide the alerts (their keys locked and read) and write the scores and the
        alerts of ``scoring`` in ``session``; the score id of each (patient, time) scored."""
        fronts, writes = scoring.fronts, scoring.writes
        # every read before the first write: the writes are sent once, at commit (a
        # search of scores after writing them sends them first, some 15 round trips)
        plan = self.plan_alerts(session, fronts, scoring.known)
        # one round trip locks and reads every score's current version; the scores are
        # built here from stored values, valid by construction (tests check it)
        written = write.update_all(session, "Observation",
                                   [resource for _, _, resource in writes], validated=True)
        for (patient, one, resource), result in zip(writes, written, strict=True):
            if isinstance(result, FhirError):  # refused (a write hook): never block the feed
                log.error("NEWS2 score of %s not stored: %s", patient, result)
                if patient in fronts and fronts[patient][0] is one:
                    plan.drop(patient)  # a score not stored moves no alert
            else:
                one.stored = resource
                scoring.written.setdefault(patient, []).append(one)
                if isinstance(result, StoredVersion):
                    scoring.versions[one.id] = result.version
        try:
            plan.apply(session, self.host)
        except FhirError as error:  # an alert refused (a write hook): never block the feed
            log.error("NEWS2 alerts not raised or cleared: %s", error)
        return {key: one.id for key, one in scoring.chosen.items()
                if key[0] in scoring.scored}

    def rescore_patient(self, session: Session, patient: str) -> str | None:
        """Score the set of the patient's newest vital sign again (``$news2``, ``hygeia
        clinical rescore``); the score's id, None without vital signs or when NEWS2 does
        not apply."""
        at = newest_vital(session, patient)
        if at is None:
            return None
        return self.score(session, {patient: {at}}).get((patient, at))

    def _set_of(self, sets: list[ScoreSet], at: int) -> ScoreSet | None:
        """The set a vital at ``at`` joins: all within ``set`` of each other (the one whose
        end is nearest when two would do)."""
        best: ScoreSet | None = None
        for one in sets:
            if max(one.end, at) - min(one.start, at) <= self.set and \
                    (best is None or abs(one.end - at) < abs(best.end - at)):
                best = one
        return best

    # ------------------------------------------------------------------ alerting

    def plan_alerts(self, session: Session, fronts: Mapping[str, tuple[ScoreSet, Score,
                                                                      Band | None]],
                    known: Mapping[str, list[ScoreSet]]) -> AlertPlan:
        """What to clear and raise by the band of each patient's newest set, ``fronts[
        patient]`` = (the set, its score, the band it had before this batch): the
        patients' NEWS2 alert keys locked and read in one search, nothing written yet.

        A set's band rises from the band the set itself had, else from the patient's
        latest banded score in the day before it (:data:`record.LOOK_BACK`), else from
        the band whose alert is still active, else from low."""
        keys = [alert_key(band, patient) for patient, (_, score, _) in fronts.items()
                if score.band is not None for band in BAND_ALERTS]
        # the keys locked and read once: clearing and raising read them no more
        state = self.host.alerts.read_alerts(session, keys)
        active = state.active
        moving: dict[str, tuple[ScoreSet, Score, Band | None]] = {}
        for patient, (one, score, before) in fronts.items():
            band = score.band
            if band is None or alert_key(band, patient) in active:
                continue  # a partial score sets no band; an alerted band holds
            moving[patient] = (one, score, Band.LOW if band is Band.LOW else before)
        unknown = {patient: one for patient, (one, _, before) in moving.items()
                   if before is None}
        previous = bands_before(session, unknown, known, self.window) if unknown else {}
        plan = AlertPlan(state)
        for patient, (one, score, before) in moving.items():
            # no banded score in the day before: the band its alert left standing, if any
            alerted = [band for band in BAND_ALERTS if alert_key(band, patient) in active]
            band_then = before or previous.get(patient) or \
                (alerted[-1] if alerted else Band.LOW)
            dropped, raised = self.escalation(patient, score, band_then,
                                              f"Observation/{one.id}", active)
            plan.clear[patient] = dropped
            plan.rise[patient] = raised
        return plan

    def escalation(self, patient: str, score: Score, previous: Band, source: str,
                   active: Collection[str]) -> tuple[list[str], list[Alert]]:
        """What a score whose band was ``previous`` changes: the ``active`` alert keys of
        the bands that no longer hold (to clear), and the band's alert when it rose."""
        band = score.band
        if band is None:
            return [], []  # a partial score never sets the band
        rising = ORDER.index(band) > ORDER.index(previous)
        clear = [alert_key(other, patient) for other in BAND_ALERTS
                 if alert_key(other, patient) in active and
                 ((other is not band) if rising else ORDER.index(other) > ORDER.index(band))]
        if not rising:
            return clear, []
        how = BAND_ALERTS[band]
        response = score.response
        assert response is not None
        return clear, [Alert(
            key=alert_key(band, patient), subject=patient, code=ALERT_CODE,
            priority=how.priority, source=source, escalate_after=how.escalate_minutes * 60,
            text=f"NEWS2 {score.total} ({band.value} clinical risk): "
                 f"{response.response}; monitoring: {response.monitoring}.")]


# ---------------------------------------------------------------------- helpers


Follow = Callable[[Collection[str], Mapping[str, tuple[str | None, list[Reading]]],
                   Collection[str]], None]


def _batch_inputs(session: Session, batch: ChangeBatch, own: dict[str, int] | None = None,
                  follow: Follow | None = None
                  ) -> tuple[dict[str, set[int]], set[str], dict[tuple[str, str], list[Reading]]]:
    """From the batch's changed resources: the times of each patient's new vital signs,
    the patients whose scale 2 or pregnancy changed, and each vital's readings by (id,
    versionId). A version of ``own`` (score id -> the version the engine wrote) is not
    read: it is a score (a seventh of a stream's events, each read and parsed).
    ``follow``: given the Observations the batch changed and deleted, each one's
    patient and readings as the batch left it, and the patients of scores in it (not
    the engine's own: another writer's), for the engine's memory."""
    times: dict[str, set[int]] = {}
    again: set[str] = set()
    parsed: dict[tuple[str, str], list[Reading]] = {}
    events = batch.events if not own else [
        event for event in batch.events if not _is_own(event, own)]
    current: dict[str, tuple[str | None, list[Reading]]] = {}
    scores: set[str] = set()  # patients of scores another writer changed
    for resource_type, resource in current_of(session, events):
        patient = subject_of(resource)
        if resource_type == "Observation":
            score = is_news2_score(resource)
            if score and patient is not None:
                scores.add(patient)
            readings = [] if score else readings_of(resource)
            parsed[_version_key(resource)] = readings
            current[f"Observation/{resource.get('id')}"] = (patient, readings)
            if readings and patient is not None:
                times.setdefault(patient, set()).add(readings[0].at)
        elif _concerns_news2(resource) and patient is not None:
            again.add(patient)
    if follow is not None:
        follow([f"Observation/{event.id}" for event in events
                if event.resource_type == "Observation"], current, scores)
    return times, again, parsed


def _is_own(event: ChangeEvent, own: dict[str, int]) -> bool:
    """Whether ``event`` is a score version this engine wrote (forgotten once seen)."""
    if event.resource_type != "Observation" or own.get(event.id) != event.version:
        return False
    own.pop(event.id, None)
    return True


def _concerns_news2(resource: dict[str, Any]) -> bool:
    """A scale-2 Flag or a pregnancy Condition: the patient's newest set is scored again."""
    codings = (resource.get("code") or {}).get("coding") or []
    if resource.get("resourceType") == "Flag":
        return any(c.get("system") == NEWS2_SYSTEM and c.get("code") == SCALE_2_FLAG
                   for c in codings)
    return any(c.get("system") == SNOMED and c.get("code") == PREGNANCY for c in codings)


def _version_key(resource: dict[str, Any]) -> tuple[str, str]:
    return str(resource.get("id")), str((resource.get("meta") or {}).get("versionId"))
