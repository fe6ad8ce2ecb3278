"""The early-warning engine: every committed vital sign updates the patient's NEWS2.

An :class:`EventConsumer` of the change feed, so every write path (REST,
transactions, loads, MLLP, MQTT) reaches it after commit, and a crash between
commit and score is resumed from the consumer's cursor. The score and the alert
commit with the cursor (``context.transaction()``): a replay writes nothing twice.

One score per patient per observation set: vitals whose effective times lie
within ``set_seconds`` (5 minutes) of each other share a score Observation, which
each later member of the set updates (a new version). Each parameter is the
latest reading within ``window_seconds`` before the set's last vital.

Alerts go through the core's alerting service, one key per band
(``news2-high|Patient/1``): a rising band raises its alert and clears the milder
one; a falling band clears the worse ones and raises nothing; a low band clears
them all; a partial score (a parameter missing) changes none.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson

from hygeia.clinical.news2.inputs import (
    ADULT_YEARS,
    LOINC,
    NEWS2_SYSTEM,
    PREGNANCY,
    SCALE_2_FLAG,
    SNOMED,
    VITAL_CODES,
    Reading,
    is_news2_score,
    is_scale_2_flag,
    patient_of,
    readings_of,
    under_16,
)
from hygeia.clinical.news2.result import BAND_SYSTEM, code_token, result_observation
from hygeia.clinical.news2.score import Score, score_readings
from hygeia.clinical.news2.scoring import Band
from hygeia.fhir.datetime import fhir_datetime_range, format_instant
from hygeia.fhir.outcome import FhirError
from hygeia.fhir.resources import new_id
from hygeia.fhir.search.query import parse_query
from hygeia.server.alerts import Alert
from hygeia.server.extensions import EventContext, Host
from hygeia.server.rest import write
from hygeia.store import ChangeBatch, Session

log = logging.getLogger("hygeia.clinical.news2")

SET_SECONDS = 300.0
WINDOW_SECONDS = 3600.0
MAX_READINGS = 500  # vitals of one patient in one window read for a score
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


def alert_key(band: Band, patient: str) -> str:
    return f"news2-{band.value}|{patient}"


def _us(seconds: float) -> int:
    return int(seconds * 1_000_000)


class News2Engine:
    """Scores NEWS2 on every vital sign committed and escalates by band."""

    name = "clinical-news2"
    types: Collection[str] | None = ("Observation", "Flag", "Condition")
    from_start = False  # scores are about now: a new install does not score history

    def __init__(self, host: Host, *, window_seconds: float = WINDOW_SECONDS,
                 set_seconds: float = SET_SECONDS) -> None:
        self.host = host
        self.window = _us(window_seconds)
        self.set = _us(set_seconds)

    def handle(self, batch: ChangeBatch, context: EventContext) -> None:
        # a set's vital signs usually commit together: score each (patient, time) once
        # per batch, when all of them are in the store, not once per vital sign
        scored: set[tuple[str, int]] = set()
        with context.transaction() as session:
            for event in batch.events:
                stored = session.version(event.resource_type, event.id, event.version)
                if stored is None or stored.content is None:
                    continue
                resource = orjson.loads(stored.content)
                try:
                    self.changed(session, event.resource_type, resource, scored)
                except FhirError as error:  # refused before writing: never block the feed
                    log.error("NEWS2 not scored for %s/%s: %s", event.resource_type,
                              event.id, error)

    def changed(self, session: Session, resource_type: str, resource: dict[str, Any],
                scored: set[tuple[str, int]] | None = None) -> None:
        """React to one committed version: a vital sign, or a scale-2 Flag or pregnancy.
        ``scored``: the (patient, time) pairs this batch scored already (skipped)."""
        if resource_type == "Observation":
            self.observed(session, resource, scored)
        elif self._concerns_news2(resource):
            patient = patient_of(resource) or _reference(resource.get("patient"))
            if patient is not None:
                self.rescore_latest(session, patient)

    # ------------------------------------------------------------------ scoring

    def observed(self, session: Session, observation: dict[str, Any],
                 scored: set[tuple[str, int]] | None = None) -> str | None:
        """Fold one committed Observation into its patient's observation set; the id of
        the set's score (None when nothing was scored, or when ``scored`` holds its
        patient and time: the set was scored in this batch with this vital in the store)."""
        if is_news2_score(observation):
            return None
        readings = readings_of(observation)
        patient = patient_of(observation)
        if not readings or patient is None:
            return None
        at = readings[0].at
        if scored is not None:
            if (patient, at) in scored:
                return None
            scored.add((patient, at))
        existing = self._set_of(session, patient, at)
        if existing is None:
            id, start, end = new_id(), at, at
        else:
            id, start, end = existing
        score = self.score_set(session, patient, id, min(start, at), max(end, at))
        return None if score is None else id

    def rescore_patient(self, session: Session, patient: str) -> str | None:
        """Score the set of the patient's newest vital sign again (``$news2``, ``hygeia
        clinical rescore``); the score's id, None without vital signs or when NEWS2 does
        not apply."""
        codes = ",".join(f"{LOINC}|{code}" for code in VITAL_CODES)
        query = parse_query("Observation", [("patient", patient), ("code", codes),
                                            ("_sort", "-date"), ("_count", "20")],
                            registry=session.registry)
        for stored in session.search(query).matches:
            scored = self.observed(session, orjson.loads(stored.content or b"{}"))
            if scored is not None:
                return scored
        return None

    def rescore_latest(self, session: Session, patient: str) -> None:
        """Score the patient's latest set again (scale 2 or pregnancy changed)."""
        query = parse_query("Observation", [("patient", patient), ("code", code_token()),
                                            ("_sort", "-date"), ("_count", "1")],
                            registry=session.registry)
        for stored in session.search(query).matches:
            period = _period(orjson.loads(stored.content or b"{}"))
            if period is not None:
                self.score_set(session, patient, stored.id, *period)

    def score_set(self, session: Session, patient: str, id: str, start: int,
                  end: int) -> Score | None:
        """Store the score of the set ``id`` (from ``start`` to ``end``) and alert by band;
        None (and nothing stored) when NEWS2 does not apply to the patient."""
        reason = not_applicable(session, patient, end)
        if reason is not None:
            log.info("NEWS2 not scored for %s: %s", patient, reason)
            return None
        readings = gather(session, patient, end - self.window, end)
        score = score_readings(readings, scale2=on_scale_2(session, patient))
        resource = result_observation(id, patient, score, start, end)
        current = session.current("Observation", id)
        before = _band_of(current.content) if current is not None else None
        if before is None:
            before = self.band_before(session, patient, id, start)
        if current is None or current.deleted or not _same(current.content, resource):
            write.update(session, "Observation", id, resource)
        self.escalate(session, patient, score, before, f"Observation/{id}")
        return score

    def band_before(self, session: Session, patient: str, id: str, start: int) -> Band:
        """The band of the patient's latest banded score before ``start`` (low if none)."""
        query = parse_query("Observation", [
            ("patient", patient), ("code", code_token()),
            ("date", f"le{format_instant(start + 1_000_000)}"), ("_sort", "-date"),
            ("_count", "20")], registry=session.registry)
        for stored in session.search(query).matches:
            band = _band_of(stored.content)
            if stored.id != id and band is not None:
                return band
        return Band.LOW

    def _set_of(self, session: Session, patient: str, at: int
                ) -> tuple[str, int, int] | None:
        """The score whose set a vital at ``at`` joins: all within ``set`` of each other."""
        query = parse_query("Observation", [
            ("patient", patient), ("code", code_token()),
            *_between(at - self.set, at + self.set), ("_count", "50")],
            registry=session.registry)
        best: tuple[str, int, int] | None = None
        for stored in session.search(query).matches:
            period = _period(orjson.loads(stored.content or b"{}"))
            if period is None:
                continue
            start, end = period
            if max(end, at) - min(start, at) <= self.set and \
                    (best is None or abs(end - at) < abs(best[2] - at)):
                best = (stored.id, start, end)
        return best

    # ------------------------------------------------------------------ alerting

    def escalate(self, session: Session, patient: str, score: Score, previous: Band,
                 source: str) -> None:
        """Raise the band's alert when the band rose from ``previous``; clear the alerts
        of the bands that no longer hold."""
        band = score.band
        if band is None:
            return  # a partial score never sets the band
        rising = ORDER.index(band) > ORDER.index(previous)
        for other in BAND_ALERTS:
            if (other is not band) if rising else ORDER.index(other) > ORDER.index(band):
                self.host.alerts.clear_alert(session, alert_key(other, patient))
        if rising:
            how = BAND_ALERTS[band]
            response = score.response
            assert response is not None
            self.host.alerts.raise_alert(session, Alert(
                key=alert_key(band, patient), subject=patient, code=ALERT_CODE,
                priority=how.priority, source=source,
                escalate_after=how.escalate_minutes * 60,
                text=f"NEWS2 {score.total} ({band.value} clinical risk): "
                     f"{response.response}; monitoring: {response.monitoring}."))

    def _concerns_news2(self, resource: dict[str, Any]) -> bool:
        codings = (resource.get("code") or {}).get("coding") or []
        if resource.get("resourceType") == "Flag":
            return any(c.get("system") == NEWS2_SYSTEM and c.get("code") == SCALE_2_FLAG
                       for c in codings)
        return any(c.get("system") == SNOMED and c.get("code") == PREGNANCY for c in codings)


# ---------------------------------------------------------------------- the record


def gather(session: Session, patient: str, low: int, high: int) -> list[Reading]:
    """The patient's NEWS2 readings effective from ``low`` to ``high`` (µs)."""
    codes = ",".join(f"{LOINC}|{code}" for code in VITAL_CODES)
    query = parse_query("Observation", [
        ("patient", patient), ("code", codes), *_between(low, high), ("_sort", "-date"),
        ("_count", str(MAX_READINGS))], registry=session.registry)
    readings: list[Reading] = []
    for stored in session.search(query).matches:
        observation = orjson.loads(stored.content or b"{}")
        readings.extend(reading for reading in readings_of(observation)
                        if low <= reading.at <= high)
    return readings


def on_scale_2(session: Session, patient: str) -> bool:
    """Whether a clinician recorded SpO2 scale 2: an active Flag with the Hygeia code."""
    query = parse_query("Flag", [("patient", patient), ("_count", "100")],
                        registry=session.registry)
    for stored in session.search(query).matches:
        if is_scale_2_flag(orjson.loads(stored.content or b"{}")):
            return True
    return False


def not_applicable(session: Session, patient: str, at: int) -> str | None:
    """Why NEWS2 does not apply to the patient at ``at`` (under 16, pregnant), or None."""
    stored = session.current("Patient", patient.partition("/")[2])
    if stored is not None and stored.content is not None and \
            under_16(orjson.loads(stored.content), at):
        return f"the patient is under {ADULT_YEARS} years old"
    query = parse_query("Condition", [("patient", patient), ("code", f"{SNOMED}|{PREGNANCY}"),
                                      ("clinical-status", "active"), ("_count", "1")],
                        registry=session.registry)
    if session.search(query).matches:
        return "the patient is pregnant"
    return None


def _between(low: int, high: int) -> list[tuple[str, str]]:
    """``date`` clauses for ``low`` to ``high`` (µs), a second wider each side: a time
    stored to the second covers that whole second, so the exact bounds are checked on
    the values read."""
    return [("date", f"ge{format_instant(low - 1_000_000)}"),
            ("date", f"le{format_instant(high + 1_000_000)}")]


def _band_of(content: bytes | None) -> Band | None:
    """The band a stored score says (None: partial, or not a score)."""
    if content is None:
        return None
    for concept in orjson.loads(content).get("interpretation") or []:
        for coding in concept.get("coding") or []:
            if coding.get("system") == BAND_SYSTEM:
                try:
                    return Band(coding.get("code"))
                except ValueError:
                    return None
    return None


def _period(score: dict[str, Any]) -> tuple[int, int] | None:
    period = score.get("effectivePeriod") or {}
    try:
        return fhir_datetime_range(period["start"])[0], fhir_datetime_range(period["end"])[0]
    except (KeyError, TypeError, FhirError):
        return None


def _reference(value: Any) -> str | None:
    reference = (value or {}).get("reference") if isinstance(value, dict) else None
    return reference if isinstance(reference, str) and reference.startswith("Patient/") \
        else None


def _same(content: bytes | None, resource: dict[str, Any]) -> bool:
    """Whether the stored score already says this (a replay writes no new version)."""
    if content is None:
        return False
    stored = orjson.loads(content)
    stored.pop("meta", None)
    return bool(stored == resource)
