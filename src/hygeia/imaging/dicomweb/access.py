"""Who may do what over DICOMweb: the scopes of ImagingStudy, and the patients they reach.

A DICOMweb request needs the token's access to ImagingStudy: ``s`` to search
(QIDO-RS), ``r`` to retrieve (WADO-RS), ``c`` to store (STOW-RS) (so
``ImagingStudy.rs`` reads and ``ImagingStudy.c`` stores). A scope restricted to a
patient's compartment (a patient launch, a patient user) reaches exactly the
studies whose ImagingStudy that token may read: they are found by searching
ImagingStudy through the same guarded session the FHIR API uses, so DICOMweb and
FHIR answer the same token with the same patients. A study not linked to an
ImagingStudy yet (linking runs a few seconds after the images arrive) is reached
by unrestricted tokens only. Storing needs a ``c`` scope on the whole type: the
patient of an incoming study is only known once it is matched.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from hygeia.fhir.outcome import Forbidden
from hygeia.fhir.search.query import parse_query
from hygeia.server.auth.access import Access
from hygeia.server.auth.guard import guarded
from hygeia.server.extensions import Host

STUDY_IDENTIFIER_SYSTEM = "urn:dicom:uid"
MAX_PATIENT_STUDIES = 1000  # studies a patient-restricted token can reach over DICOMweb
_ACTIONS = {"s": "search (QIDO-RS)", "r": "retrieve (WADO-RS)", "c": "store (STOW-RS)"}


@dataclass(frozen=True, slots=True)
class Reach:
    """The studies a request may touch: all (``studies`` None) or those listed, with
    the ImagingStudy ids and patients behind them (for the audit trail)."""

    studies: frozenset[str] | None = None
    references: tuple[str, ...] = ()
    patients: tuple[str, ...] = ()

    def allows(self, study_uid: str) -> bool:
        return self.studies is None or study_uid in self.studies


EVERYTHING = Reach()


def reach(host: Host, access: Access | None, action: str) -> Reach:
    """What ``access`` may ``action`` ('s', 'r' or 'c'); 403 when it has no scope for it."""
    if access is None:
        return EVERYTHING
    restrictions = access.restrictions("ImagingStudy", action)
    if not restrictions:
        raise Forbidden(f"DICOMweb {_ACTIONS[action]} needs the scope ImagingStudy."
                        f"{action} (e.g. system/ImagingStudy.{'c' if action == 'c' else 'rs'}); "
                        "this token does not have it.", expression="Authorization")
    if any(restriction.unrestricted for restriction in restrictions):
        return EVERYTHING
    if action == "c":
        raise Forbidden("Storing over DICOMweb needs an ImagingStudy.c scope on every "
                        "patient (a system or user scope): the patient of incoming images is "
                        "known only once they are matched.", expression="Authorization")
    return _patient_reach(host, access, action)


def _patient_reach(host: Host, access: Access, action: str) -> Reach:
    query = parse_query("ImagingStudy", [("_count", str(MAX_PATIENT_STUDIES))],
                        max_count=MAX_PATIENT_STUDIES, registry=host.registry)
    studies: set[str] = set()
    references: list[str] = []
    patients: set[str] = set()
    with host.reader() as session:
        page = guarded(session, access, "search-type", action=action).search(query)
    for match in page.matches:
        content = orjson.loads(match.content or b"{}")
        references.append(f"ImagingStudy/{match.id}")
        subject = str((content.get("subject") or {}).get("reference") or "")
        if subject.startswith("Patient/"):
            patients.add(subject.removeprefix("Patient/"))
        for identifier in content.get("identifier") or []:
            value = str(identifier.get("value") or "")
            if identifier.get("system") == STUDY_IDENTIFIER_SYSTEM and value:
                studies.add(value.removeprefix("urn:oid:"))
    if access.bound_patient:
        patients.add(access.bound_patient)
    return Reach(frozenset(studies), tuple(references), tuple(sorted(patients)))
