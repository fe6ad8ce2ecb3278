"""Care-team lookup: who is told of an alert about a patient, and who of its escalation.

Rules (docs/guide/alerts.md, "Who is told"):

- the teams are the patient's CareTeams with ``status`` active whose ``period``
  (when given) covers now, found with ``CareTeam?subject=Patient/X&status=active``;
- a participant counts when its ``member`` is a Practitioner, PractitionerRole,
  Organization or CareTeam (alerts are for clinicians: a Patient or RelatedPerson
  member is not paged) and its own ``period``, when given, covers now;
- a participant whose ``role`` has the coding ``urn:hygeia:codesystem:alert|escalation``
  is an escalation contact: told of escalations, not of the first notice (unless every
  participant is one);
- the Task's owner is the first such team (by id);
- with no team or no participant, the configured fallback recipient is told instead,
  and the Communication's note says so.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson

from hygeia.fhir.datetime import fhir_datetime_range, now_us
from hygeia.fhir.search.query import parse_query
from hygeia.server.alerts.model import ESCALATION_ROLE, TASK_CODES
from hygeia.server.context import AlertSettings
from hygeia.store import Session

MEMBER_TYPES = ("Practitioner", "PractitionerRole", "Organization", "CareTeam")
MAX_TEAMS = 50  # active CareTeams of one patient read per alert (more is a data problem)
SUBJECTS_PER_SEARCH = 200  # patients OR-ed in one CareTeam search by recipients_of


@dataclass(frozen=True, slots=True)
class Recipients:
    """Who an alert goes to: ``first`` (the first notice), ``escalation`` (later levels),
    ``owner`` (the Task's owner) and ``note`` (why a fallback was used, else None)."""

    first: tuple[str, ...]
    escalation: tuple[str, ...]
    owner: str | None
    note: str | None


def recipients_for(session: Session, subject: str, settings: AlertSettings) -> Recipients:
    """The recipients of an alert about ``subject`` under the rules of the module docstring."""
    teams = active_teams(session, subject) if subject.startswith("Patient/") else []
    return recipients_among(teams, subject, settings)


def recipients_of(session: Session, subjects: Collection[str], settings: AlertSettings
                  ) -> dict[str, Recipients]:
    """:func:`recipients_for` of many subjects, their CareTeams read with a search per
    ``SUBJECTS_PER_SEARCH`` patients."""
    patients = sorted({subject for subject in subjects if subject.startswith("Patient/")})
    teams: dict[str, list[dict[str, Any]]] = {patient: [] for patient in patients}
    for start in range(0, len(patients), SUBJECTS_PER_SEARCH):
        group = patients[start:start + SUBJECTS_PER_SEARCH]
        cursor: str | None = None
        while True:
            params = [("subject", ",".join(group)), ("status", "active"),
                      ("_count", "1000"), ("_total", "none")]
            if cursor:
                params.append(("_cursor", cursor))
            page = session.search(parse_query("CareTeam", params, registry=session.registry))
            for stored in page.matches:
                team = orjson.loads(stored.content or b"{}")
                reference = _patient_of((team.get("subject") or {}).get("reference"))
                if reference in teams and len(teams[reference]) < MAX_TEAMS:
                    teams[reference].append(team)
            cursor = page.next_cursor
            if not cursor:
                break
    now = now_us()
    return {subject: recipients_among(
        sorted((team for team in teams.get(subject, []) if _covers(team.get("period"), now)),
               key=lambda team: str(team.get("id"))), subject, settings)
        for subject in subjects}


def recipients_among(teams: list[dict[str, Any]], subject: str, settings: AlertSettings
                     ) -> Recipients:
    """The recipients of an alert about ``subject`` whose active ``teams`` are known."""
    first: list[str] = []
    escalation: list[str] = []
    for team in teams:
        for participant in team.get("participant") or []:
            member = _member(participant)
            if member is None or member in first or member in escalation:
                continue
            (escalation if _is_escalation(participant) else first).append(member)
    if not first:
        first, escalation = escalation, []
    fallback = settings.fallback_recipient
    owner = f"CareTeam/{teams[0]['id']}" if teams else fallback
    note = None
    if not first:
        reason = "has no active CareTeam" if not teams else \
            "has no active CareTeam participant who can be told"
        first = [fallback] if fallback else []
        note = f"{subject} {reason}; " + (f"sent to the fallback recipient {fallback}."
                                          if fallback else "no fallback recipient is set.")
    if not escalation:
        escalation = [settings.escalation_recipient] if settings.escalation_recipient else \
            ([fallback] if fallback else list(first))
    return Recipients(tuple(first), tuple(escalation), owner, note)


def active_teams(session: Session, patient: str) -> list[dict[str, Any]]:
    """The patient's CareTeams that are active now, by id."""
    query = parse_query("CareTeam", [("subject", patient), ("status", "active"),
                                     ("_count", str(MAX_TEAMS))], registry=session.registry)
    teams = [orjson.loads(stored.content or b"{}") for stored in session.search(query).matches]
    now = now_us()
    return sorted((team for team in teams if _covers(team.get("period"), now)),
                  key=lambda team: str(team.get("id")))


def _patient_of(reference: Any) -> str | None:
    """``Patient/{id}`` of a relative, absolute or versioned reference."""
    if not isinstance(reference, str) or "Patient/" not in reference:
        return None
    return "Patient/" + reference.rpartition("Patient/")[2].split("/", 1)[0]


def _member(participant: dict[str, Any]) -> str | None:
    reference = (participant.get("member") or {}).get("reference")
    if not isinstance(reference, str) or reference.split("/", 1)[0] not in MEMBER_TYPES:
        return None
    return reference if _covers(participant.get("period"), now_us()) else None


def _is_escalation(participant: dict[str, Any]) -> bool:
    return any(coding.get("system") == TASK_CODES and coding.get("code") == ESCALATION_ROLE
               for role in participant.get("role") or []
               for coding in role.get("coding") or [])


def _covers(period: Any, now: int) -> bool:
    """Whether a Period (missing ends open) includes ``now``."""
    if not isinstance(period, dict):
        return True
    start, end = period.get("start"), period.get("end")
    if isinstance(start, str) and fhir_datetime_range(start)[0] > now:
        return False
    return not (isinstance(end, str) and fhir_datetime_range(end)[1] < now)
