"""Who is asking, and what their token lets them do with a resource type.

An :class:`Access` is the verified content of an access token.  For one
resource type and one action (a ``cruds`` letter) it yields the
:class:`Restriction` alternatives its scopes grant: none means no access;
one without a patient or constraints means the whole type.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from hygeia.fhir.spec import patient_compartment
from hygeia.server.auth.scopes import ScopeRule, Scopes

# types outside the Patient compartment that hold no patient's data, which a
# patient-context token may read when its scopes name them (the practitioner on an
# Observation, the medication on a request); every other type outside the
# compartment (Binary, Bundle, ...) is closed to it
SHARED_TYPES = frozenset({
    "Practitioner", "PractitionerRole", "Organization", "Location", "HealthcareService",
    "Endpoint", "Medication", "Substance", "Device", "ValueSet", "CodeSystem",
    "StructureDefinition", "SearchParameter", "CapabilityStatement", "Questionnaire",
    "PlanDefinition", "ActivityDefinition", "Library", "Measure", "ConceptMap",
    "OperationDefinition", "InsurancePlan", "DeviceDefinition", "MedicationKnowledge",
})


@dataclass(frozen=True, slots=True)
class Restriction:
    """One way a token may reach a type: inside ``patient``'s compartment (when set),
    and only resources matching ``constraints`` (search parameters, when any)."""

    patient: str | None = None
    constraints: tuple[tuple[str, str], ...] = ()

    @property
    def unrestricted(self) -> bool:
        return self.patient is None and not self.constraints


WHOLE_TYPE = Restriction()


@dataclass(frozen=True, slots=True)
class Access:
    """The verified claims of one access token."""

    client_id: str
    scopes: Scopes
    subject: str  # the signed-in user's name, or the client id of a backend service
    fhir_user: str | None = None  # "Practitioner/7", "Patient/42"
    patient: str | None = None  # the launch context patient
    token_id: str | None = None
    expires: int | None = None  # microseconds since the epoch

    def restrictions(self, resource_type: str, action: str) -> list[Restriction]:
        """How this token may ``action`` resources of ``resource_type`` (empty: not at all)."""
        found: list[Restriction] = []
        for rule in self.scopes.rules_for(resource_type, action):
            restriction = self._restriction(rule, resource_type)
            if restriction is not None and restriction not in found:
                found.append(restriction)
        if any(r.unrestricted for r in found):
            return [WHOLE_TYPE]
        return found

    def allows(self, resource_type: str, action: str) -> bool:
        return bool(self.restrictions(resource_type, action))

    @property
    def user_patient(self) -> str | None:
        """The signed-in user's own Patient id, when the user is a patient."""
        if self.fhir_user and self.fhir_user.startswith("Patient/"):
            return self.fhir_user.partition("/")[2]
        return None

    @property
    def bound_patient(self) -> str | None:
        """The patient this token is tied to (launch context, or the user's own record)."""
        return self.patient or self.user_patient

    def _restriction(self, rule: ScopeRule, resource_type: str) -> Restriction | None:
        if rule.context == "system":
            return Restriction(None, rule.constraints)
        patient = self.patient if rule.context == "patient" else self.user_patient
        if rule.context == "patient" and patient is None:
            return None  # a patient scope without a patient in context grants nothing
        if patient is None:
            return Restriction(None, rule.constraints)
        if resource_type in patient_compartment() or resource_type == "Patient":
            return Restriction(patient, rule.constraints)
        if resource_type in SHARED_TYPES:
            return Restriction(None, rule.constraints)
        return None


# the access token of the request this thread is handling (None: auth off, or the server
# acting for itself: hygeia load, jobs, consumers); write hooks that must know who writes
# (a Subscription records its creator) read it with :func:`current_access`
_CURRENT: ContextVar[Access | None] = ContextVar("hygeia_current_access", default=None)


@contextmanager
def acting_as(access: Access | None) -> Iterator[None]:
    """Within the block, :func:`current_access` is ``access`` (``FhirService.handle``)."""
    token = _CURRENT.set(access)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current_access() -> Access | None:
    return _CURRENT.get()
