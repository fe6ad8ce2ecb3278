"""The care-team rules: who hears of an alert first, who of its escalation, who owns it."""

from __future__ import annotations

from hygeia.server import FhirService
from hygeia.server.alerts import recipients_for
from hygeia.server.alerts.careteam import recipients_of
from tests.server.alerts.conftest import ALERTS, care_team, patient, store


def test_participants_out_of_their_period_are_not_told(alerting: FhirService) -> None:
    team = care_team("team-c1", "c1", "Practitioner/now")
    team["participant"].append({"member": {"reference": "Practitioner/left"},
                                "period": {"end": "2021-06-30"}})
    team["participant"].append({"member": {"reference": "Practitioner/future"},
                                "period": {"start": "2999-01-01T00:00:00Z"}})
    store(alerting, patient("c1"), team)
    with alerting.reader() as session:
        found = recipients_for(session, "Patient/c1", ALERTS)
    assert found.first == ("Practitioner/now",) and found.note is None
    assert found.owner == "CareTeam/team-c1"
    assert found.escalation == ("PractitionerRole/on-call",)  # no escalation contact


def test_members_are_told_once_and_escalation_contacts_wait(alerting: FhirService) -> None:
    store(alerting, patient("c2"),
          care_team("team-c2b", "c2", escalation=("PractitionerRole/registrar",)),
          care_team("team-c2a", "c2", "Practitioner/nurse", "Practitioner/nurse"))
    with alerting.reader() as session:
        found = recipients_for(session, "Patient/c2", ALERTS)
    # members of several teams are told once; the owner is the first team by id
    assert found.first == ("Practitioner/nurse",)
    assert found.escalation == ("PractitionerRole/registrar",)
    assert found.owner == "CareTeam/team-c2a"


def test_a_team_of_escalation_contacts_only_is_told_first(alerting: FhirService) -> None:
    store(alerting, patient("c3"),
          care_team("team-c3", "c3", escalation=("PractitionerRole/registrar",)))
    with alerting.reader() as session:
        found = recipients_for(session, "Patient/c3", ALERTS)
    assert found.first == ("PractitionerRole/registrar",)
    assert found.escalation == ("PractitionerRole/on-call",)


def test_an_alert_about_no_patient_goes_to_the_fallback(alerting: FhirService) -> None:
    with alerting.reader() as session:
        found = recipients_for(session, "Location/icu-bed-4", ALERTS)
    assert found.first == ("Organization/ward-7",) and found.owner == "Organization/ward-7"
    assert found.note is not None and "Location/icu-bed-4" in found.note


def test_recipients_of_many_patients_are_those_of_each(alerting: FhirService) -> None:
    store(alerting, patient("c8"), patient("c9"), patient("c10"),
          care_team("team-c8b", "c8", escalation=("PractitionerRole/registrar",)),
          care_team("team-c8a", "c8", "Practitioner/nurse"),
          care_team("team-c9", "c9", "Organization/ward-9"))
    subjects = ["Patient/c8", "Patient/c9", "Patient/c10", "Device/monitor-1"]
    with alerting.reader() as session:
        many = recipients_of(session, subjects, ALERTS)
        one_by_one = {subject: recipients_for(session, subject, ALERTS) for subject in subjects}
    assert many == one_by_one
    assert many["Patient/c8"].owner == "CareTeam/team-c8a"
    assert many["Patient/c10"].first == ("Organization/ward-7",)  # the fallback
