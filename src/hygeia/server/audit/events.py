"""AuditEvent resources in the shape of IHE Basic Audit Log Patterns (BALP).

Pure builders: who asked (the client app, the signed-in user, the network
address), what was touched (resources, the query, a background job), when,
from where (this server as the observer), the outcome, and the patients
concerned.  They know nothing of storage; :mod:`hygeia.server.audit.trail` decides
when and how an event is written.

Codes follow BALP: ``type`` is ``audit-event-type#rest`` for the REST API and
DICOM ``110114`` (User Authentication) for sign-ins and tokens; ``subtype`` the
``restful-interaction`` code; ``action`` C/R/U/D/E; ``outcome`` 0 (success),
4 (minor failure: the client's request was refused) or 8 (serious failure:
the server failed).  Agents: the client app as the source (DICOM 110153; for
a delete the "Application", 110150), this server as the destination (110152;
custodian ``CST`` for a delete), and the user as information recipient
(``IRCP``) of a read or author (``AUT``) of a write, with the token id as
``policy``.  Entities: the resource (object-role 4), the patient (object-role
1, entity-type 1), the query (object-role 24, its text in base64 as BALP asks)
and a job (object-role 20).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from hygeia.fhir.datetime import format_instant, now_us
from hygeia.server.auth.access import Access

EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
# the Hygeia operation behind a subtype ``operation`` ($export, job-status...), so the
# trail can be searched by it: subtype=urn:hygeia:operation|export
OPERATION = "urn:hygeia:operation"
BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."

SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE = "0", "4", "8"
SERVER_NAME = "Hygeia FHIR server"

# interaction -> (restful-interaction subtype, action); a registered operation is an
# ``operation`` whose action its registration gives (What.action)
_INTERACTIONS: dict[str, tuple[str, str]] = {
    "read": ("read", "R"), "vread": ("vread", "R"),
    "history-instance": ("history-instance", "R"), "history-type": ("history-type", "E"),
    "history-system": ("history-system", "E"),
    "search-type": ("search-type", "E"), "search-compartment": ("search-type", "E"),
    "search-system": ("search-system", "E"),
    "create": ("create", "C"), "update": ("update", "U"), "conditional-update": ("update", "U"),
    "patch": ("patch", "U"), "conditional-patch": ("patch", "U"),
    "delete": ("delete", "D"), "conditional-delete": ("delete", "D"),
    "capabilities": ("capabilities", "R"),
    "job-status": ("operation", "R"), "job-file": ("operation", "R"),
    "job-cancel": ("operation", "D"),
}
# BALP profile names (plain, with patient) for the successful REST interactions it covers
_PROFILES = {"read": ("Read", "PatientRead"), "vread": ("Read", "PatientRead"),
             "search-type": ("Query", "PatientQuery"), "search-system": ("Query", "PatientQuery"),
             "create": ("Create", "PatientCreate"), "update": ("Update", "PatientUpdate"),
             "patch": ("Update", "PatientUpdate"), "delete": ("Delete", "PatientDelete")}


@dataclass(slots=True)
class Who:
    """The requesting side of an event: token claims (None without auth) and address."""

    access: Access | None = None
    remote: str | None = None
    client_id: str | None = None  # for auth events, before any token exists
    username: str | None = None


@dataclass(slots=True)
class What:
    """What an event touched and how it ended."""

    interaction: str  # a router interaction, "bundle-transaction"/"bundle-batch", or "login"
    outcome: str = SUCCESS
    description: str | None = None  # the OperationOutcome's text, for failures
    references: list[str] = field(default_factory=list)  # Type/id[/_history/v]
    patients: list[str] = field(default_factory=list)  # Patient ids
    query: str | None = None  # the request as text ("GET Observation?code=...")
    job: str | None = None  # a background job's id
    created: bool = False  # an update that created the resource (action C)
    action: str | None = None  # a registered operation's BALP action (else by interaction)


def rest_event(who: Who, what: What, site: str) -> dict[str, Any]:
    """The AuditEvent of one REST interaction (``site``: the FHIR base it came to)."""
    subtype, action = _subtype(what)
    if what.created:
        action = "C"
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": _coding(EVENT_TYPE, "rest", "Restful Operation"),
        "subtype": subtype,
        "action": action,
        "recorded": format_instant(now_us()),
        "outcome": what.outcome,
    }
    profile = _profile(what)
    if profile is not None:
        event["meta"] = {"profile": [profile]}
    if what.description:
        event["outcomeDesc"] = what.description
    event["agent"] = _agents(who, action, site)
    event["source"] = _source(site)
    entities = _entities(what)
    if entities:
        event["entity"] = entities
    return event


def authentication_event(who: Who, what: What, site: str) -> dict[str, Any]:
    """A sign-in, token or revocation event (DICOM 110114 User Authentication)."""
    code, display = ("110123", "Logout") if what.interaction == "logout" else \
        ("110122", "Login")
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": _coding(DICOM, "110114", "User Authentication"),
        "subtype": [_coding(DICOM, code, display)],
        "action": "E",
        "recorded": format_instant(now_us()),
        "outcome": what.outcome,
    }
    if what.description:
        event["outcomeDesc"] = what.description
    event["agent"] = _agents(who, "E", site)
    event["source"] = _source(site)
    entities = _entities(what)
    if entities:
        event["entity"] = entities
    return event


def query_text(method: str, url: str, query: Iterable[tuple[str, str]]) -> str:
    """``GET http://host/fhir/Observation?code=x``: the request BALP keeps (in base64)
    as the query entity."""
    encoded = urlencode(list(query))
    return f"{method} {url}?{encoded}" if encoded else f"{method} {url}"


def outcome_for(status: int) -> str:
    """4 (minor) when the client's request was refused, 8 (serious) when the server failed."""
    return SERIOUS_FAILURE if status >= 500 else MINOR_FAILURE


def _subtype(what: What) -> tuple[list[dict[str, Any]], str]:
    interaction = what.interaction
    if interaction.startswith("bundle-"):
        kind = interaction.removeprefix("bundle-")
        return [_coding(RESTFUL, kind, kind)], "E"
    code, action = _INTERACTIONS.get(interaction, ("operation", what.action or "E"))
    codings = [_coding(RESTFUL, code, code)]
    if code == "operation":
        codings.append(_coding(OPERATION, interaction, interaction))
    return codings, action


def _profile(what: What) -> str | None:
    names = _PROFILES.get(_INTERACTIONS.get(what.interaction, ("", ""))[0])
    if names is None or what.outcome != SUCCESS:
        return None
    return BALP + names[1 if what.patients else 0]


def _agents(who: Who, action: str, site: str) -> list[dict[str, Any]]:
    access = who.access
    client_id = access.client_id if access is not None else who.client_id
    username = access.subject if access is not None else who.username
    has_user = username is not None and (username != client_id or
                                         (access is not None and access.fhir_user is not None))
    deleting = action == "D"
    client: dict[str, Any] = {
        "type": _concept(DICOM, "110150", "Application") if deleting else
        _concept(DICOM, "110153", "Source Role ID"),
        "who": ({"identifier": {"value": client_id}, "display": client_id} if client_id
                else {"display": "anonymous"}),
        "name": client_id or "anonymous",
        "requestor": not has_user,
    }
    if who.remote:
        client["network"] = {"address": who.remote, "type": "2"}  # 2: IP address
    server: dict[str, Any] = {
        "type": _concept(PARTICIPATION, "CST", "custodian") if deleting else
        _concept(DICOM, "110152", "Destination Role ID"),
        "who": {"display": SERVER_NAME},
        "requestor": False,
    }
    if site:
        server["network"] = {"address": site, "type": "5"}  # 5: URI
    agents = [client, server]
    if has_user:
        agents.append(_user(access, username or "", action))
    return agents


def _user(access: Access | None, username: str, action: str) -> dict[str, Any]:
    reads = action in ("R", "E")
    user: dict[str, Any] = {
        "type": _concept(PARTICIPATION, "IRCP", "information recipient") if reads else
        _concept(PARTICIPATION, "AUT", "author (originator)"),
        "who": {"identifier": {"value": username}, "display": username},
        "name": username,
        "requestor": True,
    }
    if access is not None and access.fhir_user:
        user["who"]["reference"] = access.fhir_user
    if access is not None and access.token_id:
        user["policy"] = [access.token_id]
    return user


def _source(site: str) -> dict[str, Any]:
    source: dict[str, Any] = {"site": site} if site else {}
    source["observer"] = {"display": SERVER_NAME}
    source["type"] = [_coding(SOURCE_TYPE, "4", "Application Server")]
    return source


def _entities(what: What) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = [
        {"what": {"reference": reference},
         "type": _coding(ENTITY_TYPE, "2", "System Object"),
         "role": _coding(OBJECT_ROLE, "4", "Domain Resource")}
        for reference in dict.fromkeys(what.references)]
    entities.extend(
        {"what": {"reference": f"Patient/{patient}"},
         "type": _coding(ENTITY_TYPE, "1", "Person"),
         "role": _coding(OBJECT_ROLE, "1", "Patient")}
        for patient in dict.fromkeys(what.patients))
    if what.query is not None:
        entities.append({"type": _coding(ENTITY_TYPE, "2", "System Object"),
                         "role": _coding(OBJECT_ROLE, "24", "Query"),
                         "description": what.query,
                         "query": base64.b64encode(what.query.encode()).decode()})
    if what.job is not None:
        entities.append({"what": {"identifier": {"value": what.job}},
                         "type": _coding(ENTITY_TYPE, "2", "System Object"),
                         "role": _coding(OBJECT_ROLE, "20", "Job")})
    return entities


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [_coding(system, code, display)]}
