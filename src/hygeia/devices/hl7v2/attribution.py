"""Whose data is this? The patient of a message, from PID-3 or else from the bed.

1. PID-3 identifiers: the Patient is found by identifier (a search on the
   store session, never by name). If PID carries identifiers and no Patient has
   any of them, one is created with them (and PID-5/7/8 as name, birth date and
   gender), under an id derived from the first identifier so concurrent or
   replayed messages converge on one Patient.
2. No identifier: the bed in PV1-3 (``FACILITY/POC/ROOM/BED``, see
   :mod:`.identity`) is asked for the patient in it at the observation time,
   through a :data:`BedLookup`. The ADT handlers provide one that knows the
   bed's history; :func:`encounter_in_bed` is the fallback, reading the
   in-progress Encounter at that Location.
3. Otherwise, or when identifiers or the bed point at more than one patient,
   nobody: the data is kept unattributed and the reason is noted. Never guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

import hl7
import orjson

from hygeia.devices.hl7v2 import adt
from hygeia.devices.hl7v2.handling import Received, Rejected
from hygeia.devices.hl7v2.hl7time import fhir_datetime
from hygeia.devices.hl7v2.identity import (
    LOCATION_SYSTEM,
    location_value,
    stable_id,
    token,
)
from hygeia.devices.hl7v2.segments import first, part, repetition_count
from hygeia.fhir.datetime import fhir_datetime_range
from hygeia.fhir.outcome import FhirError
from hygeia.fhir.search.index import index_resource
from hygeia.fhir.search.matcher import MatchContext, matches
from hygeia.fhir.search.query import ParameterClause, Query, parse_criteria
from hygeia.fhir.search.rows import IndexRows
from hygeia.store import Session

BedLookup = Callable[[Session, str, str | None], str | None]
"""``(session, location value, FHIR dateTime or None) -> "Patient/id" or None``: who
was in the bed ``FACILITY/POC/ROOM/BED`` at that time."""

GENDERS = {"M": "male", "F": "female", "O": "other", "U": "unknown", "A": "other", "N": "other"}
MAX_MATCHES = 5
MAX_IDENTIFIERS = 20  # PID-3 repetitions: a patient has a few, a flood is an attack
TOKENS_PER_SEARCH = 90  # below the search's limit of 100 OR-ed values
BATCH_MATCHES = 200  # Patients one batch look-up reads per search; a full page: no answer


@dataclass(frozen=True, slots=True)
class Attribution:
    """The subject reference (None when unattributed) and, if any, why not."""

    subject: str | None
    note: str = ""
    new_patient: dict[str, Any] | None = None  # to be written by the caller


def attribute(message: hl7.Message, session: Session, at: str | None,
              bed_lookup: BedLookup | None = None,
              known: Mapping[str, list[str]] | None = None,
              pid3: Pid3 | None = None) -> Attribution:
    """The patient of ``message`` (see the module docstring for the rules); ``known``:
    what :func:`find_patients` read for the batch this message is in; ``pid3``: its
    PID-3 as :func:`pid3_of` read it."""
    pid = first(message, "PID")
    identifiers, criteria = pid3 if pid3 is not None else _pid3(message)
    if pid is not None and identifiers:
        try:
            return _by_identifiers(session, pid, identifiers, known, criteria)
        except FhirError as error:
            raise Rejected(f"PID-3 identifiers cannot be looked up: {_reason(error)}",
                           location="PID^1^3", hl7_code="102") from error
    bed = bed_of(message)
    if not bed:
        return Attribution(None, "No patient identifier (PID-3) and no bed (PV1-3): "
                                 "the data is kept without a patient.")
    try:
        found = (bed_lookup or encounter_in_bed)(session, bed, at)
    except FhirError as error:
        raise Rejected(f"The bed {bed!r} (PV1-3) cannot be looked up: {_reason(error)}",
                       location="PV1^1^3", hl7_code="102") from error
    if found is None:
        return Attribution(None, f"No patient identifier (PID-3) and no single patient "
                                 f"known in bed {bed}: the data is kept without a patient.")
    return Attribution(found)


def _reason(error: FhirError) -> str:
    return "; ".join(issue.diagnostics for issue in error.issues[:3])


Pid3 = tuple[list[dict[str, Any]], str]
"""PID-3's identifiers, and the criteria a Patient is searched by (:func:`_criteria`;
"" when there are none)."""


def pid3_of(received: Received) -> Pid3:
    """:data:`Pid3` of ``received``, read once per message: its locks, the batch's
    look-up and the handler all need it (reading and quoting it three times was a
    tenth of mapping a monitor message)."""
    found: Pid3 | None = received.derived.get("pid-3")
    if found is None:
        found = received.derived["pid-3"] = _pid3(received.message)
    return found


def _pid3(message: hl7.Message) -> Pid3:
    identifiers = pid_identifiers(message)
    return identifiers, _criteria(identifiers) if identifiers else ""


def pid_identifiers(message: hl7.Message) -> list[dict[str, Any]]:
    """PID-3's identifiers as FHIR Identifiers, by the ADT handlers' rule (the same
    patient must be found whichever message named it first)."""
    pid = first(message, "PID")
    if pid is None:
        return []
    if repetition_count(pid, 3) > MAX_IDENTIFIERS:
        raise Rejected(f"PID-3 repeats more than {MAX_IDENTIFIERS} times.",
                       location="PID^1^3", hl7_code="102")
    return adt.identifiers(message, pid, 3)


def bed_of(message: hl7.Message) -> str:
    """PV1-3 as the bed identifier value, "" when there is none."""
    pv1 = first(message, "PV1")
    if pv1 is None:
        return ""
    return location_value(part(pv1, 3, 4), part(pv1, 3, 1), part(pv1, 3, 2), part(pv1, 3, 3))


def patient_lock(identifiers: list[dict[str, Any]]) -> str:
    """The lock key a look-up of these PID-3 identifiers takes (concurrent first
    messages about a patient create one Patient)."""
    return criteria_lock(_criteria(identifiers))


def criteria_lock(criteria: str) -> str:
    """:func:`patient_lock` of the identifiers whose criteria are ``criteria``."""
    return "Patient?identifier=" + criteria


def message_locks(message: hl7.Message) -> list[str]:
    """The locks :func:`attribute` takes for ``message`` (a listener may take them
    beforehand, with others, in one statement)."""
    identifiers = pid_identifiers(message)
    return [patient_lock(identifiers)] if identifiers else []


def patient_criteria(message: hl7.Message) -> str | None:
    """The ``identifier`` criteria :func:`attribute` searches Patients by for
    ``message`` (its PID-3, each value escaped, OR-ed), None when it searches none."""
    try:
        identifiers = pid_identifiers(message)
    except Rejected:
        return None
    return _criteria(identifiers) if identifiers else None


def find_patients(session: Session, criteria: Collection[str]) -> dict[str, list[str]]:
    """The ids of the Patients each of ``criteria`` (:func:`patient_criteria`) matches:
    what :func:`attribute` would search for each, read for many messages at once.

    One search for all their identifiers (per ``TOKENS_PER_SEARCH``), then each
    criteria matched against the Patients found, in memory, by the search matcher
    (the SQL's tested oracle): every Patient a criteria matches has one of the
    identifiers searched, so it is among those found. Left out, to be searched alone:
    every criteria when a search fills its page (the answer would be partial), and a
    criteria that matches more than one Patient (its note lists them as the search
    orders them). On PostgreSQL a search per message was a quarter of the MLLP group
    committer's time, in round trips (py-spy, issue 16)."""
    wanted = sorted(set(criteria))
    queries = {each: _criteria_query(session, each) for each in wanted}
    clauses = [clause for query in queries.values() for clause in query.clauses]
    if len(clauses) != len(wanted) or not all(isinstance(c, ParameterClause) and
                                              c.modifier is None for c in clauses):
        return {}  # not the one plain identifier clause each: each message searches alone
    tokens = list(dict.fromkeys(value for clause in clauses
                                for value in cast(ParameterClause, clause).values))
    parameter = cast(ParameterClause, clauses[0]).parameter
    found: dict[str, dict[str, Any]] = {}
    rows: dict[tuple[str, str], IndexRows] = {}
    for start in range(0, len(tokens), TOKENS_PER_SEARCH):
        query = Query("Patient", [ParameterClause(
            parameter, None, tuple(tokens[start:start + TOKENS_PER_SEARCH]))])
        query.count = BATCH_MATCHES
        page = session.search(query)
        if page.next_cursor is not None or len(page.matches) >= BATCH_MATCHES:
            return {}
        for match in page.matches:
            if match.content is not None:
                found[match.id], rows[("Patient", match.id)] = _patient_rows(
                    session, match.id, match.version, match.last_updated, match.content)
    context = MatchContext(registry=session.registry, _rows=rows)
    known: dict[str, list[str]] = {}
    for each, query in queries.items():
        ids = [id for id, patient in found.items() if matches(query, patient, context)]
        if len(ids) <= 1:
            known[each] = ids
    return known


_INDEXED: dict[str, tuple[object, int, int, dict[str, Any], IndexRows]] = {}
MAX_INDEXED = 10_000  # Patients kept indexed (all are forgotten beyond)


def _patient_rows(session: Session, id: str, version: int, last_updated: int,
                  content: bytes) -> tuple[dict[str, Any], IndexRows]:
    """Patient ``id`` at that version, and the search index rows the matcher reads of
    it, made once per version (and search registry): the same few monitored patients
    are read by every batch, and indexing each of them for every parameter again was
    most of a batch look-up's matching. Trusted only for that exact version and
    ``lastUpdated``, as :class:`~.writing.Remembered` is."""
    kept = _INDEXED.get(id)
    if kept is not None and kept[0] is session.registry and kept[1] == version and \
            kept[2] == last_updated:
        return kept[3], kept[4]
    patient = orjson.loads(content)
    rows = index_resource(patient, session.registry, complete=True)
    if len(_INDEXED) >= MAX_INDEXED:
        _INDEXED.clear()
    _INDEXED[id] = (session.registry, version, last_updated, patient, rows)
    return patient, rows


_PARSED: dict[str, tuple[object, Query]] = {}  # criteria -> (registry, its query)
MAX_PARSED = 10_000  # criteria kept parsed (all are forgotten beyond)


def _criteria_query(session: Session, criteria: str) -> Query:
    """``Patient?identifier={criteria}`` parsed, once per criteria and search registry:
    a monitor's PID-3 is the same in every message it sends, and parsing it (escaped
    tokens, URL-quoted) twice per message was a third of the batch look-up's time
    (py-spy, issue 16). The query is shared: never changed by its users."""
    cached = _PARSED.get(criteria)
    if cached is not None and cached[0] is session.registry:
        return cached[1]
    query = parse_criteria("Patient", f"identifier={criteria}", session.registry)
    if len(_PARSED) >= MAX_PARSED:
        _PARSED.clear()
    _PARSED[criteria] = (session.registry, query)
    return query


def _criteria(identifiers: list[dict[str, Any]]) -> str:
    return ",".join(quote(token(i["system"], i["value"]), safe="") for i in identifiers)


def _by_identifiers(session: Session, pid: hl7.Segment, identifiers: list[dict[str, Any]],
                    known: Mapping[str, list[str]] | None = None,
                    criteria: str = "") -> Attribution:
    criteria = criteria or _criteria(identifiers)
    session.lock(criteria_lock(criteria))
    ids = known.get(criteria) if known is not None else None
    if ids is None:
        ids = _search_ids(session, "Patient", f"identifier={criteria}")
    if len(ids) > 1:
        return Attribution(None, "PID-3 identifiers belong to more than one Patient ("
                                 + ", ".join(f"Patient/{i}" for i in sorted(ids))
                                 + "): the data is kept without a patient.")
    if ids:
        return Attribution(f"Patient/{ids[0]}")
    first_id = identifiers[0]
    patient = _patient_from_pid(pid, stable_id("pat", f"{first_id['system']}|"
                                                      f"{first_id['value']}"), identifiers)
    return Attribution(f"Patient/{patient['id']}", new_patient=patient)


def _patient_from_pid(pid: hl7.Segment, id: str, identifiers: list[dict[str, Any]]
                      ) -> dict[str, Any]:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": id, "identifier": identifiers}
    family, given = part(pid, 5, 1), part(pid, 5, 2)
    if family or given:
        patient["name"] = [{k: v for k, v in (("family", family),
                                              ("given", [given] if given else None)) if v}]
    birth = fhir_datetime(part(pid, 7))
    if birth is not None and len(birth.value) <= 10:
        patient["birthDate"] = birth.value
    elif birth is not None:
        patient["birthDate"] = birth.value[:10]
    gender = GENDERS.get(part(pid, 8).upper())
    if gender:
        patient["gender"] = gender
    return patient


def encounter_in_bed(session: Session, bed: str, at: str | None) -> str | None:
    """The subject of the in-progress Encounter at the Location whose identifier is
    ``urn:hygeia:hl7v2:location|{bed}``; None when there is none or several patients.

    An Encounter that began after ``at`` (by its ``period.start``) does not count:
    data measured before a patient arrived is not theirs. The ADT handlers' lookup
    knows the bed's whole history and is preferred when wired in.
    """
    criteria = (f"location.identifier={quote(token(LOCATION_SYSTEM, bed), safe='')}"
                f"&status=in-progress")
    subjects = set()
    for content in _search_contents(session, "Encounter", criteria):
        encounter = orjson.loads(content) if content is not None else {}
        subject = encounter.get("subject", {}).get("reference")
        if isinstance(subject, str) and _began_by(encounter, at):
            subjects.add(subject)
    return subjects.pop() if len(subjects) == 1 else None


def _began_by(encounter: dict[str, Any], at: str | None) -> bool:
    start = encounter.get("period", {}).get("start")
    if at is None or not isinstance(start, str):
        return True
    try:
        return fhir_datetime_range(start)[0] <= fhir_datetime_range(at)[1]
    except FhirError:
        return True  # stored resources are valid; an unreadable time does not exclude


def _search_contents(session: Session, resource_type: str, criteria: str) -> list[bytes | None]:
    query = parse_criteria(resource_type, criteria, session.registry)
    query.count = MAX_MATCHES
    return [match.content for match in session.search(query).matches]


def _search_ids(session: Session, resource_type: str, criteria: str) -> list[str]:
    query = parse_criteria(resource_type, criteria, session.registry)
    query.count = MAX_MATCHES
    return [match.id for match in session.search(query).matches]
