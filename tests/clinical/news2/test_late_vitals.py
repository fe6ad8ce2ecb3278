"""Vital signs that arrive late: taken before sets already scored, on both databases.

A late vital sign joins its own observation set (or makes a new one), and every
later set whose window holds it is scored again; only the patient's newest set
moves the alerts.
"""

from __future__ import annotations

from typing import Any

from tests.clinical.news2.test_engine import (
    Engine,
    components,
    flags,
    full_set,
    new_patient,
    vital,
)


def by_start(engine: Engine, patient: str) -> list[dict[str, Any]]:
    return sorted(engine.scores(patient), key=lambda score: score["effectivePeriod"]["start"])


def without_temperature(patient: str, at: str, **values: float) -> list[dict[str, Any]]:
    return [one for one in full_set(patient, at, **values)
            if one["code"]["coding"][0]["code"] != "8310-5"]


def test_a_late_vital_rescores_its_set_and_the_later_sets_whose_window_holds_it(
        engine: Engine) -> None:
    patient = new_patient(engine)
    engine.store(*without_temperature(patient, "2026-03-01T10:00:00Z", respiration=26,
                                      spo2=90))
    engine.store(vital(patient, "8867-4", "2026-03-01T10:30:00Z", 135))
    engine.store(vital(patient, "8867-4", "2026-03-01T12:00:00Z", 70))
    first, second, third = by_start(engine, patient)
    assert [s["status"] for s in (first, second, third)] == ["preliminary"] * 3
    assert flags(engine, patient) == {}  # partial scores set no band
    [late] = engine.store(vital(patient, "8310-5", "2026-03-01T10:02:00Z", 39.5, "Cel"))
    again = by_start(engine, patient)
    assert len(again) == 3  # the late vital joined the 10:00 set: no new score
    one, two, three = again
    assert one["id"] == first["id"] and one["status"] == "final"
    assert one["effectivePeriod"] == {"start": "2026-03-01T10:00:00.000000Z",
                                      "end": "2026-03-01T10:02:00.000000Z"}
    assert (components(one)["temperature"], one["valueInteger"]) == (2, 8)
    # the 10:30 set's window (from 09:30) holds the late temperature: scored again
    assert two["id"] == second["id"] and two["meta"]["versionId"] != second["meta"]["versionId"]
    assert (two["status"], two["valueInteger"]) == ("final", 11)
    assert {"reference": f"Observation/{late}"} in two["derivedFrom"]
    # the 12:00 set's window starts at 11:00: untouched
    assert three["meta"]["versionId"] == third["meta"]["versionId"]
    assert three["status"] == "preliminary"
    # only the newest set moves the alerts, and it is still partial
    assert flags(engine, patient) == {}


def test_a_late_vital_between_two_sets_makes_its_own_set_and_changes_the_next(
        engine: Engine) -> None:
    patient = new_patient(engine)
    engine.store(*full_set(patient, "2026-03-01T10:00:00Z"))
    engine.store(vital(patient, "8867-4", "2026-03-01T10:30:00Z", 72))
    before, after = by_start(engine, patient)
    assert after["valueInteger"] == 0 and after["interpretation"][0]["coding"][0]["code"] == \
        "low"
    engine.store(vital(patient, "9279-1", "2026-03-01T10:15:00Z", 26))
    first, middle, last = by_start(engine, patient)
    assert (first["id"], last["id"]) == (before["id"], after["id"])
    assert first["meta"]["versionId"] == before["meta"]["versionId"]  # window ends 10:00
    assert middle["effectivePeriod"]["start"].startswith("2026-03-01T10:15:00")
    assert components(middle)["respiration-rate"] == 3
    # the 10:30 set now takes the 10:15 respiration rate, its latest: a single 3
    assert components(last)["respiration-rate"] == 3 and last["valueInteger"] == 3
    assert last["interpretation"][0]["coding"][0]["code"] == "low-medium"
    # the newest set rose from low: its alert is raised (once)
    assert flags(engine, patient) == {"news2-low-medium": "active"}


def test_a_late_vital_that_only_changes_an_old_set_raises_no_alert(engine: Engine) -> None:
    patient = new_patient(engine)
    engine.store(*full_set(patient, "2026-03-01T10:00:00Z"))
    engine.store(*full_set(patient, "2026-03-01T12:00:00Z"))
    engine.store(vital(patient, "9279-1", "2026-03-01T10:01:00Z", 26),
                 vital(patient, "59408-5", "2026-03-01T10:01:00Z", 90, "%"),
                 vital(patient, "8867-4", "2026-03-01T10:01:00Z", 135))
    old, new = by_start(engine, patient)
    assert old["valueInteger"] == 9 and old["interpretation"][0]["coding"][0]["code"] == "high"
    assert new["valueInteger"] == 0
    assert flags(engine, patient) == {}  # 2 hours ago; the patient is low now


def test_a_late_high_set_in_the_same_batch_as_a_newer_low_one_alerts_by_the_newest(
        engine: Engine) -> None:
    patient = new_patient(engine)
    engine.store(*full_set(patient, "2026-03-01T10:00:00Z"),
                 *full_set(patient, "2026-03-01T08:00:00Z", respiration=26, spo2=90,
                           pulse=135))
    early, late = by_start(engine, patient)
    assert early["interpretation"][0]["coding"][0]["code"] == "high"
    assert late["interpretation"][0]["coding"][0]["code"] == "low"
    assert flags(engine, patient) == {}
