"""Raising an alert makes one Flag, Task and Communication for the care team; raising it
again while it is active makes nothing; clearing it ends the Flag and the Task."""

from __future__ import annotations

import threading

import pytest

from hygeia.fhir.outcome import BadRequest
from hygeia.server import FhirService
from hygeia.server.alerts import KEY_SYSTEM, Alert
from tests.server.alerts.conftest import alarm, care_team, found, make_service, patient, read, store


def refs(elements: list[dict[str, str]] | None) -> list[str]:
    return [element["reference"] for element in elements or []]


def test_a_raise_makes_a_flag_a_task_and_a_communication_to_the_care_team(
        alerting: FhirService) -> None:
    store(alerting, patient("p1"),
          care_team("team-1", "p1", "Practitioner/nurse", "Organization/ward-7",
                    "Patient/p1", escalation=("PractitionerRole/registrar",)))
    with alerting.transaction() as session:
        raised = alerting.alerts.raise_alert(session, alarm("p1"))
    assert raised.created and raised.task and raised.communication
    flag = read(alerting, "Flag", raised.flag)
    assert flag["status"] == "active" and flag["subject"] == {"reference": "Patient/p1"}
    assert flag["identifier"] == [{"system": KEY_SYSTEM, "value": "spo2-low|Patient/p1"}]
    assert flag["author"] == {"reference": "Device/monitor-1"} and "end" not in flag["period"]
    task = read(alerting, "Task", raised.task)
    assert (task["status"], task["intent"], task["priority"]) == ("requested", "order", "urgent")
    assert task["focus"] == {"reference": f"Flag/{raised.flag}"}
    assert task["owner"] == {"reference": "CareTeam/team-1"}
    message = read(alerting, "Communication", raised.communication)
    # the patient is not paged, the escalation contact only hears of escalations
    assert refs(message["recipient"]) == ["Practitioner/nurse", "Organization/ward-7"]
    assert refs(message["about"]) == [f"Flag/{raised.flag}", f"Task/{raised.task}",
                                      "Device/monitor-1"]
    assert message["category"][0]["coding"][0]["code"] == "alert"
    assert (message["status"], message["priority"]) == ("completed", "urgent")
    assert [f["id"] for f in found(alerting, "Flag", ("patient", "p1"))] == [raised.flag]
    assert [c["id"] for c in found(alerting, "Communication",
                                   ("recipient", "Practitioner/nurse"))] == [raised.communication]


def test_raising_again_while_active_writes_nothing(alerting: FhirService) -> None:
    store(alerting, patient("p2"), care_team("team-2", "p2", "Practitioner/nurse"))
    with alerting.transaction() as session:
        first = alerting.alerts.raise_alert(session, alarm("p2"))
    for _ in range(3):
        with alerting.transaction() as session:
            again = alerting.alerts.raise_alert(session, alarm("p2", text="Still low."))
        assert (again.created, again.flag, again.task) == (False, first.flag, first.task)
    for resource_type in ("Flag", "Task", "Communication"):
        assert len(found(alerting, resource_type, ("patient", "p2"))) == 1
    assert read(alerting, "Flag", first.flag)["meta"]["versionId"] == "1"


def test_concurrent_raises_of_one_key_make_one_alert(alerting: FhirService) -> None:
    store(alerting, patient("p3"), care_team("team-3", "p3", "Practitioner/nurse"))
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def raise_one() -> None:
        try:
            start.wait()
            with alerting.transaction() as session:
                alerting.alerts.raise_alert(session, alarm("p3"))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=raise_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(found(alerting, "Flag", ("patient", "p3"))) == 1
    assert len(found(alerting, "Communication", ("patient", "p3"))) == 1


def test_clearing_ends_the_flag_and_cancels_an_unacknowledged_task(
        alerting: FhirService) -> None:
    store(alerting, patient("p4"), care_team("team-4", "p4", "Practitioner/nurse"))
    with alerting.transaction() as session:
        raised = alerting.alerts.raise_alert(session, alarm("p4"))
    with alerting.transaction() as session:
        assert alerting.alerts.clear_alert(session, "spo2-low|Patient/p4")
    with alerting.transaction() as session:
        assert not alerting.alerts.clear_alert(session, "spo2-low|Patient/p4")
    flag = read(alerting, "Flag", raised.flag)
    assert flag["status"] == "inactive" and flag["period"]["end"] >= flag["period"]["start"]
    assert read(alerting, "Task", str(raised.task))["status"] == "cancelled"
    # the condition returns: a new alert, with its own Flag
    with alerting.transaction() as session:
        again = alerting.alerts.raise_alert(session, alarm("p4"))
    assert again.created and again.flag != raised.flag
    assert read(alerting, "Flag", raised.flag)["status"] == "inactive"


def test_a_key_raised_and_cleared_many_times_finds_the_flag_and_task_of_its_last_raise(
        alerting: FhirService) -> None:
    # the Flags are read unsorted (status=active) and the Task by its focus: the old
    # raises' inactive Flags and closed Tasks are neither read nor touched
    store(alerting, patient("p8"), care_team("team-8", "p8", "Practitioner/nurse"))
    raises = []
    for _ in range(4):
        with alerting.transaction() as session:
            raises.append(alerting.alerts.raise_alert(session, alarm("p8")))
        with alerting.transaction() as session:
            assert alerting.alerts.clear_alerts(session, ["spo2-low|Patient/p8"]) == \
                {"spo2-low|Patient/p8"}
    with alerting.transaction() as session:
        last = alerting.alerts.raise_alert(session, alarm("p8"))
        again = alerting.alerts.raise_alert(session, alarm("p8"))
    assert last.created and (again.flag, again.task) == (last.flag, last.task)
    with alerting.reader() as session:
        assert alerting.alerts.active_keys(session, ["spo2-low|Patient/p8"]) == \
            {"spo2-low|Patient/p8"}
    versions = {one.flag: read(alerting, "Flag", one.flag)["meta"]["versionId"]
                for one in raises}
    with alerting.transaction() as session:
        assert alerting.alerts.clear_alerts(session, ["spo2-low|Patient/p8"])
    assert read(alerting, "Task", str(last.task))["status"] == "cancelled"
    assert {one.flag: read(alerting, "Flag", one.flag)["meta"]["versionId"]
            for one in raises} == versions


def test_clearing_closes_the_alerts_task_not_another_task_with_its_key(
        alerting: FhirService) -> None:
    # the alert's Task is the one whose focus is its Flag: a later Task a clinician
    # filed under the same identifier (about the patient) is left alone
    store(alerting, patient("p9"), care_team("team-9", "p9", "Practitioner/nurse"))
    with alerting.transaction() as session:
        raised = alerting.alerts.raise_alert(session, alarm("p9"))
    store(alerting, {"resourceType": "Task", "id": "follow-up-9", "status": "requested",
                     "intent": "order", "for": {"reference": "Patient/p9"},
                     "focus": {"reference": "Patient/p9"},
                     "identifier": [{"system": KEY_SYSTEM, "value": "spo2-low|Patient/p9"}],
                     "authoredOn": "2999-01-01T00:00:00Z"})
    with alerting.transaction() as session:
        again = alerting.alerts.raise_alert(session, alarm("p9"))
    assert (again.created, again.task) == (False, raised.task)
    with alerting.transaction() as session:
        assert alerting.alerts.clear_alert(session, "spo2-low|Patient/p9")
    assert read(alerting, "Task", str(raised.task))["status"] == "cancelled"
    assert read(alerting, "Task", "follow-up-9")["status"] == "requested"


def test_a_flag_of_the_key_made_active_again_is_the_keys_alert(alerting: FhirService
                                                               ) -> None:
    # the active Flags are what is read, whatever their dates: raising while one is
    # active writes no second alert, and clearing ends it
    store(alerting, patient("p10"), care_team("team-10", "p10", "Practitioner/nurse"))
    with alerting.transaction() as session:
        first = alerting.alerts.raise_alert(session, alarm("p10"))
    with alerting.transaction() as session:
        alerting.alerts.clear_alert(session, "spo2-low|Patient/p10")
    with alerting.transaction() as session:
        second = alerting.alerts.raise_alert(session, alarm("p10"))
    with alerting.transaction() as session:
        alerting.alerts.clear_alert(session, "spo2-low|Patient/p10")
    flag = read(alerting, "Flag", first.flag)
    flag["status"] = "active"
    del flag["period"]["end"]
    store(alerting, flag)  # a clinician reopens the first alert's Flag
    with alerting.transaction() as session:
        again = alerting.alerts.raise_alert(session, alarm("p10"))
    assert (again.created, again.flag, again.task) == (False, first.flag, first.task)
    assert read(alerting, "Flag", second.flag)["status"] == "inactive"
    with alerting.transaction() as session:
        assert alerting.alerts.clear_alert(session, "spo2-low|Patient/p10")
    assert read(alerting, "Flag", first.flag)["status"] == "inactive"


def test_whether_a_key_is_active_is_read_in_a_snapshot(alerting: FhirService) -> None:
    store(alerting, patient("p6"), care_team("team-6", "p6", "Practitioner/nurse"))
    with alerting.reader() as session:
        assert not alerting.alerts.is_active(session, "spo2-low|Patient/p6")
    with alerting.transaction() as session:
        alerting.alerts.raise_alert(session, alarm("p6"))
    with alerting.reader() as session:
        assert alerting.alerts.is_active(session, "spo2-low|Patient/p6")
        assert not alerting.alerts.is_active(session, "spo2-low|Patient/p7")
    with alerting.transaction() as session:
        alerting.alerts.clear_alert(session, "spo2-low|Patient/p6")
    with alerting.reader() as session:
        assert not alerting.alerts.is_active(session, "spo2-low|Patient/p6")


def test_clearing_an_acknowledged_alert_completes_its_task(alerting: FhirService) -> None:
    store(alerting, patient("p5"), care_team("team-5", "p5", "Practitioner/nurse"))
    with alerting.transaction() as session:
        raised = alerting.alerts.raise_alert(session, alarm("p5"))
    task = read(alerting, "Task", str(raised.task))
    store(alerting, {**task, "status": "accepted"})
    with alerting.transaction() as session:
        alerting.alerts.clear_alert(session, "spo2-low|Patient/p5")
    assert read(alerting, "Task", str(raised.task))["status"] == "completed"


def test_without_a_care_team_the_fallback_is_told_and_a_note_says_so(
        alerting: FhirService) -> None:
    store(alerting, patient("p6"),
          care_team("old-team", "p6", "Practitioner/nurse", status="inactive"),
          care_team("ended-team", "p6", "Practitioner/nurse",
                    period={"end": "2020-01-01T00:00:00Z"}))
    with alerting.transaction() as session:
        raised = alerting.alerts.raise_alert(session, alarm("p6"))
    message = read(alerting, "Communication", str(raised.communication))
    assert refs(message["recipient"]) == ["Organization/ward-7"]
    assert "no active CareTeam" in message["note"][0]["text"]
    assert read(alerting, "Task", str(raised.task))["owner"] == \
        {"reference": "Organization/ward-7"}


def test_without_a_fallback_the_alert_is_stored_with_no_recipient(
        repository: object) -> None:
    service = make_service(repository, fallback_recipient=None)  # type: ignore[arg-type]
    store(service, patient("p7"))
    with service.transaction() as session:
        raised = service.alerts.raise_alert(session, alarm("p7"))
    message = read(service, "Communication", str(raised.communication))
    assert "recipient" not in message and "no fallback" in message["note"][0]["text"]


def test_an_alert_rolls_back_with_the_write_that_raised_it(alerting: FhirService) -> None:
    store(alerting, patient("p8"))
    with pytest.raises(RuntimeError), alerting.transaction() as session:
        alerting.alerts.raise_alert(session, alarm("p8"))
        raise RuntimeError("the caller's write failed")
    assert found(alerting, "Flag", ("patient", "p8")) == []
    assert found(alerting, "Task", ("patient", "p8")) == []


@pytest.mark.parametrize(("changes", "where"), [
    ({"key": ""}, "key"), ({"key": "x" * 257}, "key"), ({"key": "a\nb"}, "key"),
    ({"priority": "whenever"}, "priority"), ({"subject": "p1"}, "subject"),
    ({"escalate_after": 0}, "escalate_after"), ({"max_escalations": -1}, "max_escalations")])
def test_a_malformed_alert_is_refused_with_where(changes: dict[str, object], where: str
                                                 ) -> None:
    fields: dict[str, object] = {"key": "k", "subject": "Patient/1", "code": {"text": "x"},
                                 "text": "x", **changes}
    with pytest.raises(BadRequest) as refused:
        Alert(**fields)  # type: ignore[arg-type]
    assert refused.value.issues[0].expression == where


def test_active_keys_finds_the_active_ones_of_many_keys_at_once(alerting: FhirService) -> None:
    store(alerting, patient("p9"))
    keys = [f"k{number},odd|Patient/p9" for number in range(5)]  # commas and bars escaped
    with alerting.transaction() as session:
        for key in keys[:3]:
            alerting.alerts.raise_alert(session, alarm("p9", key=key))
        alerting.alerts.clear_alert(session, keys[1])
    with alerting.transaction() as session:  # raised again after a clear: active again
        alerting.alerts.raise_alert(session, alarm("p9", key=keys[2]))
        alerting.alerts.clear_alert(session, keys[2])
        alerting.alerts.raise_alert(session, alarm("p9", key=keys[2]))
    with alerting.reader() as session:
        assert alerting.alerts.active_keys(session, keys) == {keys[0], keys[2]}
        assert alerting.alerts.active_keys(session, []) == set()
        assert {key for key in keys if alerting.alerts.is_active(session, key)} == \
            {keys[0], keys[2]}


def test_raise_and_clear_many_alerts_at_once_do_what_one_at_a_time_does(
        alerting: FhirService) -> None:
    store(alerting, patient("m1"), patient("m2"),
          care_team("team-m1", "m1", "Practitioner/nurse"))
    with alerting.transaction() as session:
        first = alerting.alerts.raise_alert(session, alarm("m1"))
    with alerting.transaction() as session:
        raised = alerting.alerts.raise_alerts(session, [
            alarm("m1", text="Again."), alarm("m2"), alarm("m2", key="other|Patient/m2")])
    again, new, other = raised
    assert (again.created, again.flag, again.task) == (False, first.flag, first.task)
    assert new.created and other.created and new.flag != other.flag
    task = read(alerting, "Task", new.task or "")
    assert task["owner"] == {"reference": "Organization/ward-7"}  # m2 has no care team
    message = read(alerting, "Communication", new.communication or "")
    assert [r["reference"] for r in message["recipient"]] == ["Organization/ward-7"]
    assert len(found(alerting, "Flag", ("patient", "m1"))) == 1  # no second Flag for m1
    with alerting.transaction() as session:
        cleared = alerting.alerts.clear_alerts(session, [
            "spo2-low|Patient/m1", "spo2-low|Patient/m2", "never|Patient/m2"])
    assert cleared == {"spo2-low|Patient/m1", "spo2-low|Patient/m2"}
    assert read(alerting, "Flag", first.flag)["status"] == "inactive"
    assert read(alerting, "Task", first.task or "")["status"] == "cancelled"
    assert read(alerting, "Flag", other.flag)["status"] == "active"  # not named: untouched
    with alerting.reader() as session:
        assert alerting.alerts.active_keys(session, [
            "spo2-low|Patient/m1", "spo2-low|Patient/m2", "other|Patient/m2"]) == \
            {"other|Patient/m2"}


def test_a_state_read_once_serves_the_clears_and_raises_that_follow(
        alerting: FhirService) -> None:
    store(alerting, patient("s1"), patient("s2"))
    high, medium = "high|Patient/s1", "medium|Patient/s1"
    with alerting.transaction() as session:
        first = alerting.alerts.raise_alert(session, alarm("s1", key=medium))
    with alerting.transaction() as session:
        state = alerting.alerts.read_alerts(session, [high, medium, "high|Patient/s2"])
        assert state.active == {medium}
        assert alerting.alerts.clear_alerts(session, [medium], state) == {medium}
        [raised] = alerting.alerts.raise_alerts(session, [alarm("s1", key=high)], state)
        assert raised.created
        # keys cleared or raised through the state are read afresh by later calls
        assert state.active == set() and not state.covers([high])
        [again] = alerting.alerts.raise_alerts(session, [alarm("s1", key=high)], state)
        assert not again.created and again.flag == raised.flag
        assert alerting.alerts.clear_alerts(session, [medium], state) == set()
    assert read(alerting, "Flag", first.flag)["status"] == "inactive"
    assert read(alerting, "Task", first.task or "")["status"] == "cancelled"
    with alerting.reader() as session:
        assert alerting.alerts.active_keys(session, [high, medium]) == {high}
