"""An unacknowledged alert escalates once per level after its period, by any number of
runners, from timers kept in the database; acknowledging it stops the escalation."""

from __future__ import annotations

import threading
import time

from hygeia.server import FhirService
from hygeia.server.alerts import KEY_SYSTEM
from hygeia.store import Repository
from tests.server.alerts.conftest import alarm, care_team, found, make_service, patient, read, store

PERIOD = 0.3  # seconds: each test alert's own escalation period


def messages(service: FhirService, patient_id: str) -> list[dict[str, object]]:
    """The patient's alert Communications, by level (the identifier's #N)."""
    found_ = found(service, "Communication", ("patient", patient_id))
    return sorted(found_, key=lambda c: str(c["identifier"][0]["value"]))  # type: ignore[index]


def levels(service: FhirService, patient_id: str) -> list[str]:
    return [str(m["identifier"][0]["value"]).rsplit("#", 1)[1]  # type: ignore[index]
            for m in messages(service, patient_id)]


def test_an_unacknowledged_alert_escalates_once_per_level_up_to_the_last(
        alerting: FhirService) -> None:
    store(alerting, patient("e1"), care_team("team-e1", "e1", "Practitioner/nurse",
                                             escalation=("PractitionerRole/registrar",)))
    with alerting.transaction() as session:
        raised = alerting.alerts.raise_alert(session, alarm("e1", escalate_after=PERIOD))
    assert alerting.alerts.escalate_due()[0] == 0  # not due yet
    time.sleep(PERIOD + 0.05)
    assert alerting.alerts.escalate_due()[0] == 1
    assert alerting.alerts.escalate_due()[0] == 0  # level 1 is not due yet
    task = read(alerting, "Task", str(raised.task))
    assert task["priority"] == "asap" and task["status"] == "requested"
    second = messages(alerting, "e1")[1]
    assert second["identifier"] == [{"system": KEY_SYSTEM, "value": "spo2-low|Patient/e1#1"}]
    assert second["recipient"] == [{"reference": "PractitionerRole/registrar"}]
    assert second["priority"] == "asap"
    time.sleep(PERIOD + 0.05)
    assert alerting.alerts.escalate_due()[0] == 1
    time.sleep(PERIOD + 0.05)
    assert alerting.alerts.escalate_due() == (0, None)  # max_escalations is 2
    assert levels(alerting, "e1") == ["0", "1", "2"]
    assert read(alerting, "Task", str(raised.task))["priority"] == "stat"


def test_acknowledging_the_task_stops_escalation(alerting: FhirService) -> None:
    store(alerting, patient("e2"), care_team("team-e2", "e2", "Practitioner/nurse"))
    with alerting.transaction() as session:
        raised = alerting.alerts.raise_alert(session, alarm("e2", escalate_after=PERIOD))
    task = read(alerting, "Task", str(raised.task))
    store(alerting, {**task, "status": "accepted",
                     "owner": {"reference": "Practitioner/nurse"}})
    time.sleep(PERIOD + 0.05)
    assert alerting.alerts.escalate_due() == (0, None)
    assert levels(alerting, "e2") == ["0"]


def test_without_an_escalation_role_the_configured_recipient_is_told(
        alerting: FhirService) -> None:
    store(alerting, patient("e3"), care_team("team-e3", "e3", "Practitioner/nurse"))
    with alerting.transaction() as session:
        alerting.alerts.raise_alert(session, alarm("e3", escalate_after=PERIOD))
    time.sleep(PERIOD + 0.05)
    alerting.alerts.escalate_due()
    assert messages(alerting, "e3")[1]["recipient"] == \
        [{"reference": "PractitionerRole/on-call"}]


def concurrently(*services: FhirService) -> list[int]:
    """Each service's escalation runner, started at the same moment: how many each moved."""
    start = threading.Barrier(len(services))
    moved: list[int] = []

    def run(service: FhirService) -> None:
        start.wait()
        moved.append(service.alerts.escalate_due()[0])

    threads = [threading.Thread(target=run, args=(service,)) for service in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return moved


def test_two_runners_escalate_each_level_exactly_once(repository: Repository) -> None:
    one, two = make_service(repository), make_service(repository)
    store(one, patient("e4"), care_team("team-e4", "e4", "Practitioner/nurse"))
    with one.transaction() as session:
        for index in range(5):
            one.alerts.raise_alert(session, alarm("e4", key=f"alarm-{index}|Patient/e4",
                                                  escalate_after=PERIOD))
    for _ in range(2):  # both levels
        time.sleep(PERIOD + 0.05)
        assert sum(concurrently(one, two)) == 5
    assert sorted(levels(one, "e4")) == ["0"] * 5 + ["1"] * 5 + ["2"] * 5


def test_timers_survive_a_restart_and_the_thread_escalates_on_time(
        repository: Repository) -> None:
    before = make_service(repository)
    store(before, patient("e5"), care_team("team-e5", "e5", "Practitioner/nurse"))
    with before.transaction() as session:
        raised = before.alerts.raise_alert(session, alarm("e5", escalate_after=PERIOD))
    before.close()  # the process stops before the alert falls due
    after = make_service(repository, max_escalations=1)
    after.alerts.start()  # as start_jobs does in a serving process
    try:
        deadline = time.monotonic() + 10
        while levels(after, "e5") != ["0", "1"] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        after.close()
    assert levels(after, "e5") == ["0", "1"]
    assert read(after, "Task", str(raised.task))["extension"][-1]["valueInteger"] == 1


def test_a_cleared_alert_never_escalates(alerting: FhirService) -> None:
    store(alerting, patient("e6"))
    with alerting.transaction() as session:
        alerting.alerts.raise_alert(session, alarm("e6", escalate_after=PERIOD))
    with alerting.transaction() as session:
        alerting.alerts.clear_alert(session, "spo2-low|Patient/e6")
    time.sleep(PERIOD + 0.05)
    assert alerting.alerts.escalate_due() == (0, None)
    assert levels(alerting, "e6") == ["0"]


def test_an_alert_may_never_escalate_or_escalate_less(alerting: FhirService) -> None:
    store(alerting, patient("e7"))
    with alerting.transaction() as session:
        alerting.alerts.raise_alert(session, alarm("e7", key="quiet|e7", escalate_after=PERIOD,
                                                   max_escalations=0))
        alerting.alerts.raise_alert(session, alarm("e7", key="once|e7", escalate_after=PERIOD,
                                                   max_escalations=1))
    for _ in range(2):
        time.sleep(PERIOD + 0.05)
        alerting.alerts.escalate_due()
    assert sorted(levels(alerting, "e7")) == ["0", "0", "1"]


def _raise(service: FhirService, patient_id: str, after: float) -> None:
    with service.transaction() as session:
        service.alerts.raise_alerts(session, [alarm(patient_id, escalate_after=after)])


def test_a_raise_wakes_the_escalation_thread_only_when_it_falls_due_first(
        alerting: FhirService) -> None:
    """The thread sleeps until the earliest due time its last scan found: a new alert
    due later is found by the scan at that time, so it need not scan now."""
    store(alerting, patient("w1"), patient("w2"), patient("w3"))
    woken = alerting.alerts.woken
    _raise(alerting, "w1", 600.0)
    assert woken.is_set()  # no scan yet: nothing known
    woken.clear()
    assert alerting.alerts.escalate_due()[0] == 0  # the scan knows w1's due time now
    _raise(alerting, "w2", 900.0)  # due after w1's: the scan at w1's time finds it
    assert not woken.is_set()
    _raise(alerting, "w3", 60.0)  # due first: the thread must look now
    assert woken.is_set()


def test_a_raise_during_a_scan_wakes_the_escalation_thread(alerting: FhirService) -> None:
    """A scan under way may have read before the alert committed: always look again."""
    store(alerting, patient("w4"), patient("w5"))
    _raise(alerting, "w4", 600.0)
    alerting.alerts.escalate_due()
    alerting.alerts.woken.clear()
    with alerting.alerts._timer:
        alerting.alerts._scanning += 1
    try:
        _raise(alerting, "w5", 900.0)
    finally:
        with alerting.alerts._timer:
            alerting.alerts._scanning -= 1
    assert alerting.alerts.woken.is_set()


def test_an_escalated_task_leaves_the_next_due_time_unknown(alerting: FhirService) -> None:
    """A scan that escalated Tasks did not see their new due times: the next raise wakes
    the thread whatever its own due time."""
    store(alerting, patient("w6"), patient("w7"), care_team("team-w6", "w6", "Practitioner/n"))
    _raise(alerting, "w6", PERIOD)
    time.sleep(PERIOD + 0.05)
    assert alerting.alerts.escalate_due()[0] == 1
    alerting.alerts.woken.clear()
    _raise(alerting, "w7", 900.0)
    assert alerting.alerts.woken.is_set()
