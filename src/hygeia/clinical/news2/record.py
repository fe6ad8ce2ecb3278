"""What the engine reads of a batch's patients, a few searches per batch.

A batch of the change feed concerns many patients; reading each patient's vital
signs, scores, Flags and Conditions one search at a time was most of the engine's
time. Each function here reads them for a list of patients at once (the patients
OR-ed in one search, in groups of :data:`PATIENTS_PER_SEARCH`, pages followed),
and sorts what it found back to each patient.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from hygeia.clinical.news2.inputs import (
    ADULT_YEARS,
    CODES_OF,
    LOINC,
    PARAMETERS,
    PREGNANCY,
    SNOMED,
    VITAL_CODES,
    Reading,
    effective_end,
    is_scale_2_flag,
    loinc_codes,
    readings_of,
    under_16,
)
from hygeia.clinical.news2.result import BAND_SYSTEM, code_token
from hygeia.clinical.news2.scoring import Band
from hygeia.fhir.datetime import fhir_datetime_range, format_instant
from hygeia.fhir.outcome import FhirError
from hygeia.fhir.search.query import parse_query
from hygeia.store import ChangeEvent, Session, StoredVersion

PATIENTS_PER_SEARCH = 200  # patients OR-ed in one search
PAGE = 1000  # resources per page read
MAX_READINGS = 500  # vital signs read per patient, parameter and window (newest first)
LOOK_BACK = 24 * 3600 * 1_000_000  # µs before a set searched for the band before it
_FOREVER = 1 << 62  # µs: no end (``readings_for(open_end=True)``)
_ALL_CODES = ",".join(f"{LOINC}|{code}" for code in VITAL_CODES)
_PATIENT = re.compile(r"(?:^|/)(Patient/[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]*)?$")


def patient_key(reference: Any) -> str | None:
    """``Patient/{id}`` of a reference (relative, absolute or versioned), or None."""
    if not isinstance(reference, str):
        return None
    found = _PATIENT.search(reference)
    return found.group(1) if found else None


def subject_of(resource: dict[str, Any]) -> str | None:
    """The patient a resource is about (``subject``, or ``patient`` for a Flag's kin)."""
    for element in ("subject", "patient"):
        value = resource.get(element)
        if isinstance(value, dict):
            key = patient_key(value.get("reference"))
            if key is not None:
                return key
    return None


def search_all(session: Session, resource_type: str, params: list[tuple[str, str]],
               limit: int | None = None) -> Iterator[StoredVersion]:
    """Every match of the search, page after page (at most ``limit``).

    Sorted (by ``_id`` unless ``params`` sort): a search without ``_sort`` walks the
    candidates in key order a growing range at a time, which saves a page of 20 from
    sorting thousands but costs a round trip or more per range when every match is
    wanted, as here; a sorted search reads a page in one query. Not by ``_lastUpdated``:
    a sort by a date with no range of its own first counts the matches on PostgreSQL
    (the store's date-sort walk), a statement as costly as the page, for each search."""
    cursor: str | None = None
    seen = 0
    if not any(name == "_sort" for name, _ in params):
        params = [*params, ("_sort", "_id")]
    while True:
        page_params = [*params, ("_count", str(PAGE)), ("_total", "none")]
        if cursor:
            page_params.append(("_cursor", cursor))
        page = session.search(parse_query(resource_type, page_params,
                                          registry=session.registry))
        for stored in page.matches:
            yield stored
            seen += 1
            if limit is not None and seen >= limit:
                return
        cursor = page.next_cursor
        if not cursor:
            return


def current_of(session: Session, events: Iterable[ChangeEvent]
               ) -> Iterator[tuple[str, dict[str, Any]]]:
    """(type, resource) of each resource the events changed, as its newest event in the
    batch left it, read by the events' seq in one query (``Session.versions_of``; a
    search by ``_id`` was two, and parsing hundreds of ids). A resource the batch
    deleted is left out; one changed after the batch is read as this batch left it,
    its newer event follows."""
    newest: dict[tuple[str, str], ChangeEvent] = {}
    for event in events:
        newest[(event.resource_type, event.id)] = event
    wanted = sorted((event for event in newest.values() if event.interaction != "delete"),
                    key=lambda event: event.seq)
    for stored in session.versions_of(wanted):
        if stored.content is not None:
            yield stored.resource_type, orjson.loads(stored.content)


def between(low: int, high: int) -> list[tuple[str, str]]:
    """``date`` clauses for ``low`` to ``high`` (µs), a second wider each side: a time
    stored to the second covers that whole second, so the exact bounds are checked on
    the values read."""
    return [("date", f"ge{format_instant(low - 1_000_000)}"),
            ("date", f"le{format_instant(high + 1_000_000)}")]


def _groups(spans: Mapping[str, tuple[int, int]], widest: int) -> Iterator[
        tuple[list[str], int, int]]:
    """Patients whose spans (low, high) fit together in one search of at most ``widest``
    µs: (patients, low, high) per group."""
    ordered = sorted(spans, key=lambda patient: spans[patient])
    group: list[str] = []
    low = high = 0
    for patient in ordered:
        start, end = spans[patient]
        if group and (len(group) >= PATIENTS_PER_SEARCH or max(high, end) - low > widest):
            yield group, low, high
            group = []
        if not group:
            low, high = start, end
        group.append(patient)
        high = max(high, end)
    if group:
        yield group, low, high


# ---------------------------------------------------------------------- scores


@dataclass(slots=True)
class ScoreSet:
    """One observation set's score: its id, first and last vital (µs), the score as
    stored (without ``meta``; None while it is new in this batch), and the band it had
    before this batch (None: new, or partial)."""

    id: str
    start: int
    end: int
    stored: dict[str, Any] | None
    was: Band | None = None


def period_of(score: dict[str, Any]) -> tuple[int, int] | None:
    period = score.get("effectivePeriod") or {}
    try:
        return fhir_datetime_range(period["start"])[0], fhir_datetime_range(period["end"])[0]
    except (KeyError, TypeError, FhirError):
        return None


def scores_from(session: Session, earliest: Mapping[str, int], widest: int
                ) -> dict[str, list[ScoreSet]]:
    """Each patient's NEWS2 scores whose set ends at or after ``earliest[patient]`` (and
    maybe some before), sorted by start."""
    found: dict[str, list[ScoreSet]] = {patient: [] for patient in earliest}
    spans = {patient: (at, at) for patient, at in earliest.items()}
    for group, low, _ in _groups(spans, widest):
        params = [("patient", ",".join(group)), ("code", code_token()),
                  ("date", f"ge{format_instant(low - 1_000_000)}")]
        for stored in search_all(session, "Observation", params):
            score = orjson.loads(stored.content or b"{}")
            patient = subject_of(score)
            period = period_of(score)
            if patient in found and period is not None:
                score.pop("meta", None)
                found[patient].append(ScoreSet(stored.id, *period, score, band_of_score(score)))
    for sets in found.values():
        sets.sort(key=lambda one: (one.start, one.end))
    return found


def with_written(known: dict[str, list[ScoreSet]], written: Mapping[str, list[ScoreSet]]
                 ) -> dict[str, list[ScoreSet]]:
    """``known`` (by patient, as :func:`scores_from` read it) with each set of ``written``
    in the place of the set of the same id, or added, for the patients of ``known``:
    scores written by a commit that the read may not have seen (sorted by start)."""
    for patient, sets in written.items():
        if patient not in known:
            continue
        by_id = {one.id: one for one in known[patient]}
        by_id.update((one.id, one) for one in sets)
        known[patient] = sorted(by_id.values(), key=lambda one: (one.start, one.end))
    return known


def band_of_score(score: dict[str, Any] | None) -> Band | None:
    """The band a score says (None: partial, or not a score)."""
    for concept in (score or {}).get("interpretation") or []:
        for coding in concept.get("coding") or []:
            if coding.get("system") == BAND_SYSTEM:
                try:
                    return Band(coding.get("code"))
                except ValueError:
                    return None
    return None


def bands_before(session: Session, sets: Mapping[str, ScoreSet],
                 known: Mapping[str, list[ScoreSet]], window: int) -> dict[str, Band]:
    """The band of each patient's latest banded score before ``sets[patient]`` as it was
    before this batch, from the scores ``known`` already (their band before the batch)
    or else one search over the day before for all of them; a patient whose band is
    not found is left out."""
    found: dict[str, Band] = {}
    spans: dict[str, tuple[int, int]] = {}
    seen: dict[str, set[str]] = {}
    for patient, one in sets.items():
        seen[patient] = {earlier.id for earlier in known.get(patient, [])}
        for earlier in reversed(known.get(patient, [])):
            if earlier.start < one.start and earlier.was is not None:
                found[patient] = earlier.was
                break
        else:
            spans[patient] = (one.start - LOOK_BACK, one.start)
    for group, low, high in _groups(spans, LOOK_BACK + window):
        newest: dict[str, tuple[int, Band]] = {}
        for stored in search_all(session, "Observation", [
                ("patient", ",".join(group)), ("code", code_token()), *between(low, high)]):
            score = orjson.loads(stored.content or b"{}")
            whose, period, band = subject_of(score), period_of(score), band_of_score(score)
            if whose is None or whose not in spans or period is None or band is None or \
                    stored.id in seen[whose] or \
                    not spans[whose][0] <= period[0] < spans[whose][1]:
                continue
            if whose not in newest or period[0] > newest[whose][0]:
                newest[whose] = (period[0], band)
        found.update({patient: band for patient, (_, band) in newest.items()})
    return found


# ---------------------------------------------------------------------- vital signs


def readings_for(session: Session, windows: Mapping[str, tuple[int, int]], widest: int,
                 parsed: Mapping[tuple[str, str], list[Reading]] | None = None, *,
                 window: int = 0, open_end: bool = False) -> dict[str, list[Reading]]:
    """Each patient's NEWS2 readings effective within ``windows[patient]`` = (start, end)
    (µs) that a score of a set ending between ``start + window`` and ``end`` may use,
    sorted by time (readings of the same time by Observation id: the later id wins a
    tie, :func:`score.latest`, whichever search found them).

    A score takes each parameter's latest reading in its window, so of each parameter
    only the readings after the earliest such end (the patient's floor) and the latest
    one at or before it are read. A monitor streaming every second made the window's
    thousands of vital signs be searched, sorted and parsed again for each batch, though
    a score uses seven. So one search reads every vital sign from the earliest floor on
    (mostly the batch's own, which hold each streamed parameter's latest); the
    parameters not found at a patient's floor (measured now and then, or never) are
    read over the rest of the window in one more search, newest first, left for a
    patient and parameter once past its latest reading. ``window`` 0: every reading in
    the window. ``parsed``: the readings of Observations already read, by (id,
    versionId). ``open_end``: every reading after each window's end too (what the
    engine's memory learns from, ``news2/memory.py``)."""
    found: dict[str, list[Reading]] = {patient: [] for patient in windows}
    kept = {patient: (start, _FOREVER) for patient, (start, _) in windows.items()} \
        if open_end else windows
    floors = {patient: start + window for patient, (start, _) in windows.items()}
    for group, low, high in _groups(windows, widest):
        recent = max(low, min(floors[patient] for patient in group))
        latest: dict[tuple[str, str], int] = {}
        dates = [between(recent, high)[0]] if open_end else between(recent, high)
        for stored in search_all(session, "Observation", [
                ("patient", ",".join(group)), ("code", _ALL_CODES), *dates]):
            _add_readings(stored, orjson.loads(stored.content or b"{}"), parsed or {},
                          kept, floors, (recent, _FOREVER if open_end else high), found,
                          latest)
        if low < recent:
            for missing in _alike(group, latest):
                _read_parameters(session, missing, between(low, recent), windows, floors,
                                 parsed or {}, found, recent)
    for readings in found.values():
        readings.sort(key=lambda reading: (reading.at, reading.source))
    return found


def _add_readings(stored: StoredVersion, observation: dict[str, Any],
                  parsed: Mapping[tuple[str, str], list[Reading]],
                  windows: Mapping[str, tuple[int, int]], floors: Mapping[str, int],
                  span: tuple[int, int], found: dict[str, list[Reading]],
                  latest: dict[tuple[str, str], int], parameter: str | None = None) -> None:
    """Add to ``found`` the readings of ``stored`` (``observation`` its content; of
    ``parameter``, else all) within its patient's window and ``span`` (µs), noting in
    ``latest`` each (patient, parameter)'s latest at or before the patient's floor."""
    patient = subject_of(observation)
    if patient is None or patient not in windows:
        return
    readings = parsed.get((stored.id, str(stored.version)))
    if readings is None:
        readings = readings_of(observation)
    start, stop = windows[patient]
    for reading in readings:
        if (parameter is None or reading.parameter == parameter) and \
                start <= reading.at <= stop and span[0] <= reading.at <= span[1]:
            found[patient].append(reading)
            if reading.at <= floors[patient]:
                key = (patient, reading.parameter)
                latest[key] = max(latest.get(key, reading.at), reading.at)


def _alike(group: list[str], latest: Mapping[tuple[str, str], int]
           ) -> list[dict[str, list[str]]]:
    """The patients of ``group`` lacking a parameter in ``latest``, grouped by the
    parameters they lack: one search per kind of patient. One search for all would ask
    for every code any of them lacks, and so return, and read to the window's start,
    the streamed readings of a patient who lacks only another parameter (a ward of
    monitors with and without a temperature probe)."""
    kinds: dict[tuple[str, ...], dict[str, list[str]]] = {}
    for patient in group:
        lacking = [parameter for parameter in PARAMETERS if (patient, parameter) not in latest]
        if lacking:
            kinds.setdefault(tuple(lacking), {})[patient] = lacking
    return list(kinds.values())


def _read_parameters(session: Session, missing: Mapping[str, list[str]],
                     dates: list[tuple[str, str]], windows: Mapping[str, tuple[int, int]],
                     floors: Mapping[str, int],
                     parsed: Mapping[tuple[str, str], list[Reading]],
                     found: dict[str, list[Reading]], before: int) -> None:
    """Add to ``found`` the readings of ``missing[patient]`` (parameters) taken before
    ``before`` that the patients' scores may use, in one search for every patient and
    parameter (one a parameter cost a search per parameter a batch lacked: three or four
    a batch of a monitor that measures no blood pressure): newest first, each (patient,
    parameter)'s up to the first Observation sorted before its latest reading at or
    before the patient's floor (a search sorted by ``-date`` sorts by the end of the
    time, so one that ends before it starts before it; one that ends at the same time
    is read, its reading may win the tie)."""
    parameter_of = {code: parameter for parameters in missing.values()
                    for parameter in parameters for code in CODES_OF[parameter]}
    codes = ",".join(f"{LOINC}|{code}" for code in sorted(parameter_of))
    params = [("patient", ",".join(missing)), ("code", codes), *dates, ("_sort", "-date")]
    open_ = {(patient, parameter) for patient, parameters in missing.items()
             for parameter in parameters}
    latest: dict[tuple[str, str], int] = {}
    counted: dict[tuple[str, str], int] = {}
    for stored in _newest_first(session, params, 2 * len(open_) + 1):
        observation = orjson.loads(stored.content or b"{}")
        patient = subject_of(observation)
        if patient is None:
            continue
        end = effective_end(observation)
        for parameter in {parameter_of[code] for code in loinc_codes(observation.get("code"))
                          if code in parameter_of}:
            key = (patient, parameter)
            if key not in open_:
                continue
            if end is not None and key in latest and end < latest[key]:
                open_.discard(key)  # it and every one after it start before the latest
                continue
            _add_readings(stored, observation, parsed, windows, floors,
                          (-1 << 62, before - 1), found, latest, parameter)
            counted[key] = counted.get(key, 0) + 1
            if counted[key] >= MAX_READINGS:
                open_.discard(key)
        if not open_:
            return


def _newest_first(session: Session, params: list[tuple[str, str]], first: int
                  ) -> Iterator[StoredVersion]:
    """The search's matches page after page, the first page of ``first`` and each next
    twice the one before (at most :data:`PAGE`): a reader that stops early, as
    :func:`_read_parameter` mostly does, reads little more than it uses."""
    cursor: str | None = None
    count = first
    while True:
        page_params = [*params, ("_count", str(count)), ("_total", "none")]
        if cursor:
            page_params.append(("_cursor", cursor))
        page = session.search(parse_query("Observation", page_params,
                                          registry=session.registry))
        yield from page.matches
        cursor = page.next_cursor
        if not cursor:
            return
        count = min(2 * count, PAGE)


def newest_vital(session: Session, patient: str) -> int | None:
    """When the patient's newest NEWS2 vital sign was taken (µs), or None."""
    codes = ",".join(f"{LOINC}|{code}" for code in VITAL_CODES)
    query = parse_query("Observation", [("patient", patient), ("code", codes),
                                        ("_sort", "-date"), ("_count", "20")],
                        registry=session.registry)
    for stored in session.search(query).matches:
        readings = readings_of(orjson.loads(stored.content or b"{}"))
        if readings:
            return readings[0].at
    return None


def newest_score(session: Session, patient: str) -> int | None:
    """When the patient's newest NEWS2 score's set ends (µs), or None."""
    query = parse_query("Observation", [("patient", patient), ("code", code_token()),
                                        ("_sort", "-date"), ("_count", "1")],
                        registry=session.registry)
    for stored in session.search(query).matches:
        period = period_of(orjson.loads(stored.content or b"{}"))
        if period is not None:
            return period[1]
    return None


# ---------------------------------------------------------------------- the patient


@dataclass(frozen=True, slots=True)
class Applicability:
    """Who NEWS2 applies to among a batch's patients, and who is on SpO2 scale 2."""

    patients: dict[str, dict[str, Any]]  # Patient/{id} -> the Patient resource
    pregnant: frozenset[str]
    scale_2: frozenset[str]

    def not_applicable(self, patient: str, at: int) -> str | None:
        """Why NEWS2 does not apply to the patient at ``at`` (under 16, pregnant), or None."""
        if under_16(self.patients.get(patient), at):
            return f"the patient is under {ADULT_YEARS} years old"
        if patient in self.pregnant:
            return "the patient is pregnant"
        return None


def applicability(session: Session, patients: Collection[str]) -> Applicability:
    """Birth dates, active pregnancies and scale-2 Flags of ``patients`` (a search or
    three per :data:`PATIENTS_PER_SEARCH` patients)."""
    ordered = sorted(patients)
    records: dict[str, dict[str, Any]] = {}
    pregnant: set[str] = set()
    scale_2: set[str] = set()
    for start in range(0, len(ordered), PATIENTS_PER_SEARCH):
        group = ordered[start:start + PATIENTS_PER_SEARCH]
        ids = ",".join(patient.partition("/")[2] for patient in group)
        for stored in search_all(session, "Patient", [("_id", ids)]):
            records[f"Patient/{stored.id}"] = orjson.loads(stored.content or b"{}")
        for stored in search_all(session, "Condition", [
                ("patient", ",".join(group)), ("code", f"{SNOMED}|{PREGNANCY}"),
                ("clinical-status", "active")]):
            patient = subject_of(orjson.loads(stored.content or b"{}"))
            if patient is not None:
                pregnant.add(patient)
        for stored in search_all(session, "Flag", [("patient", ",".join(group))]):
            flag = orjson.loads(stored.content or b"{}")
            patient = subject_of(flag)
            if patient is not None and is_scale_2_flag(flag):
                scale_2.add(patient)
    return Applicability(records, frozenset(pregnant), frozenset(scale_2))
