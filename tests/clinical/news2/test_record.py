"""What the engine reads of a batch's vital signs (news2/record.py), on both databases."""

from __future__ import annotations

import random
from typing import Any

from hygeia.clinical.news2.inputs import (
    CONSCIOUSNESS,
    OXYGEN,
    PARAMETERS,
    PULSE,
    SYSTOLIC,
    TEMPERATURE,
)
from hygeia.clinical.news2.record import _alike, readings_for
from hygeia.clinical.news2.score import latest, score_readings
from hygeia.fhir.datetime import fhir_datetime_range
from hygeia.server import FhirService
from tests.clinical.news2.test_engine import full_set, vital
from tests.helpers import body, call, unique

MINUTE = 60 * 1_000_000
HOUR = 60 * MINUTE


def stored(service: FhirService, *resources: dict[str, Any]) -> None:
    for resource in resources:
        response = call(service, "POST", resource["resourceType"], resource)
        assert response.status == 201, body(response)


def patient(service: FhirService) -> str:
    response = call(service, "POST", "Patient", {"resourceType": "Patient",
                                                 "name": [{"family": unique()}]})
    return f"Patient/{body(response)['id']}"


def us(text: str) -> int:
    return fhir_datetime_range(text)[0]


def monitored(service: FhirService) -> str:
    """A full set at 10:00, then a pulse every minute until 11:00."""
    who = patient(service)
    stored(service, *full_set(who, "2026-03-01T10:00:00Z", systolic=95),
           *(vital(who, "8867-4", f"2026-03-01T10:{minute:02d}:00Z", 60 + minute)
             for minute in range(1, 60)),
           vital(who, "8867-4", "2026-03-01T11:00:00Z", 130))
    return who


def test_only_the_readings_a_score_may_use_are_read(service: FhirService) -> None:
    who = monitored(service)
    window = (us("2026-03-01T10:50:00Z") - HOUR, us("2026-03-01T11:00:00Z"))
    with service.reader() as session:
        narrow = readings_for(session, {who: window}, 2 * HOUR, window=HOUR)[who]
        whole = readings_for(session, {who: window}, 2 * HOUR)[who]
    pulses = sorted(reading.at for reading in narrow if reading.parameter == PULSE)
    # the pulses after the earliest set's end (10:50) and the latest at or before it
    assert pulses == [us(f"2026-03-01T10:{minute}:00Z") for minute in range(50, 60)] + \
        [us("2026-03-01T11:00:00Z")]
    assert len([reading for reading in whole if reading.parameter == PULSE]) == 61
    # the blood pressure of 10:00, an hour before, is still the latest in the window
    assert [reading.at for reading in narrow if reading.parameter == SYSTOLIC] == \
        [us("2026-03-01T10:00:00Z")]
    assert not [reading for reading in narrow if reading.parameter == OXYGEN]
    for end in (us("2026-03-01T10:50:00Z"), us("2026-03-01T10:55:00Z"), window[1]):
        def within(readings: list[Any], end: int = end) -> list[Any]:
            return [one for one in readings if end - HOUR <= one.at <= end]
        assert score_readings(within(narrow)) == score_readings(within(whole))


def test_each_patient_of_a_search_gets_what_its_own_sets_use(
        service: FhirService) -> None:
    first, second = monitored(service), monitored(service)
    windows = {first: (us("2026-03-01T10:58:00Z") - HOUR, us("2026-03-01T11:00:00Z")),
               second: (us("2026-03-01T10:30:00Z") - HOUR, us("2026-03-01T11:00:00Z"))}
    with service.reader() as session:
        found = readings_for(session, windows, 2 * HOUR, window=HOUR)
        whole = readings_for(session, windows, 2 * HOUR)
    for who, (start, end) in windows.items():
        pulses = [one.at for one in found[who] if one.parameter == PULSE]
        assert min(pulses) == us("2026-03-01T10:30:00Z")  # not the whole hour
        assert max(pulses) == end
        for set_end in (start + HOUR, end):
            def within(readings: list[Any], set_end: int = set_end) -> list[Any]:
                return [one for one in readings if set_end - HOUR <= one.at <= set_end]
            assert score_readings(within(found[who])) == score_readings(within(whole[who]))


def test_a_reading_outside_the_window_is_not_used(service: FhirService) -> None:
    who = monitored(service)
    window = (us("2026-03-01T11:00:01Z") - HOUR, us("2026-03-01T11:00:01Z"))
    with service.reader() as session:
        found = readings_for(session, {who: window}, 2 * HOUR, window=HOUR)[who]
    # the 10:00 blood pressure is an hour and a second before: the score is partial
    assert not [reading for reading in found if reading.parameter == SYSTOLIC]
    assert "systolic-bp" in score_readings(found).missing


def reading_at(who: str, kind: int, at: str, value: int) -> dict[str, Any]:
    """A vital of one of five parameters (``kind``), as a monitor or a nurse records it."""
    if kind == 0:
        return vital(who, "8867-4", at, 50 + value)
    if kind == 1:
        return vital(who, "59408-5", at, 88 + value % 12, "%")
    if kind == 2:
        return vital(who, "9279-1", at, 8 + value % 20)
    if kind == 3:
        return vital(who, "8310-5", at, 35 + value % 5, "Cel")
    return full_set(who, at, systolic=85 + value)[2]  # the blood pressure panel


def test_the_narrow_read_chooses_what_reading_every_vital_sign_would(
        service: FhirService) -> None:
    """The fast path (each parameter's latest before the floor, newest first, in one
    search) against the general one (every reading of the window, ``window`` 0): for
    every set end, the same reading of each parameter, ties of one time included."""
    rng = random.Random(20261207)
    patients = [patient(service) for _ in range(3)]
    for who in patients:
        taken = [(second, rng.randrange(5)) for second in rng.sample(range(0, 7200, 7), 45)]
        taken += rng.sample(taken, 15)  # the same parameter at the same time: the later id wins
        stored(service, *(reading_at(who, kind, iso(second), rng.randrange(40))
                          for second, kind in taken))
    windows = {}
    for who in patients:
        end = us(iso(rng.randrange(3600, 2 * 3600)))
        windows[who] = (end - HOUR - rng.randrange(0, 20) * MINUTE, end)
    with service.reader() as session:
        narrow = readings_for(session, windows, 3 * HOUR, window=HOUR)
        whole = readings_for(session, windows, 3 * HOUR)
    for who, (start, stop) in windows.items():
        for set_end in sorted({start + HOUR, stop, *(one.at for one in whole[who]
                                                     if start + HOUR <= one.at <= stop)}):
            def within(readings: list[Any], set_end: int = set_end) -> list[Any]:
                return [one for one in readings if set_end - HOUR <= one.at <= set_end]
            assert latest(within(narrow[who])) == latest(within(whole[who])), set_end


def test_patients_lacking_different_parameters_are_searched_apart() -> None:
    """One search for all would ask every code any patient lacks, and read a monitored
    patient's streamed temperatures back to the window's start for nothing."""
    found = {(who, parameter): 0 for who in ("Patient/a", "Patient/b", "Patient/c")
             for parameter in PARAMETERS}
    del found[("Patient/a", CONSCIOUSNESS)], found[("Patient/c", CONSCIOUSNESS)]
    del found[("Patient/b", TEMPERATURE)]
    assert _alike(["Patient/a", "Patient/b", "Patient/c", "Patient/d"], found) == [
        {"Patient/a": [CONSCIOUSNESS], "Patient/c": [CONSCIOUSNESS]},
        {"Patient/b": [TEMPERATURE]},
        {"Patient/d": list(PARAMETERS)}]


def iso(second: int) -> str:
    return f"2026-03-01T{9 + second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"
