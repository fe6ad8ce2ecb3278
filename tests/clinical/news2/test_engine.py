"""The NEWS2 engine on the change feed, on SQLite and PostgreSQL: scores, sets, alerts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import pytest

from hygeia.clinical.news2 import engine as news2_engine
from hygeia.clinical.news2.engine import News2Engine
from hygeia.fhir.datetime import fhir_datetime_range
from hygeia.fhir.outcome import BadRequest
from hygeia.fhir.search.query import ParameterClause, Query
from hygeia.server import FhirService
from hygeia.server.alerts import escalation
from hygeia.server.events import EventRunner
from hygeia.server.events.consumer import EventContext
from hygeia.store import feed_position, sql
from tests.helpers import body, call, unique

NEWS2 = "http://snomed.info/sct|1104051000000101"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


def vital(patient: str, code: str, at: str, value: float | None = None, unit: str = "/min",
          **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": patient}, "effectiveDateTime": at}
    if value is not None:
        resource["valueQuantity"] = {"value": value, "unit": unit,
                                     "system": "http://unitsofmeasure.org", "code": unit}
    resource.update(extra)
    return resource


def alert_level(patient: str, at: str) -> dict[str, Any]:
    return vital(patient, "67775-7", at, valueCodeableConcept={
        "coding": [{"system": SNOMED, "code": "248234008", "display": "Mentally alert"}]})


def full_set(patient: str, at: str, *, respiration: float = 16, spo2: float = 97,
             systolic: float = 120, pulse: float = 70, temperature: float = 37.0
             ) -> list[dict[str, Any]]:
    return [vital(patient, "9279-1", at, respiration),
            vital(patient, "59408-5", at, spo2, "%"),
            vital(patient, "85354-9", at, component=[
                {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                 "valueQuantity": {"value": systolic, "unit": "mm[Hg]"}},
                {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                 "valueQuantity": {"value": 80, "unit": "mm[Hg]"}}]),
            vital(patient, "8867-4", at, pulse),
            vital(patient, "8310-5", at, temperature, "Cel"),
            alert_level(patient, at)]


class Engine:
    """The engine on a real service, its feed read on demand."""

    def __init__(self, service: FhirService) -> None:
        self.service = service
        self.runner = EventRunner(service, News2Engine(service))
        self.runner.step()  # claim the cursor now: it starts at the newest change

    def store(self, *resources: dict[str, Any]) -> list[str]:
        ids = []
        for resource in resources:
            response = call(self.service, "POST", resource["resourceType"], resource)
            assert response.status == 201, body(response)
            ids.append(str(body(response)["id"]))
        while self.runner.step():
            pass
        return ids

    def search(self, path: str) -> list[dict[str, Any]]:
        found = body(call(self.service, "GET", path))
        return [entry["resource"] for entry in found.get("entry", [])]

    def scores(self, patient: str) -> list[dict[str, Any]]:
        return self.search(f"Observation?patient={patient}&code={NEWS2}")


def new_patient(engine: Engine, **extra: Any) -> str:
    resource = {"resourceType": "Patient", "name": [{"family": unique()}],
                "birthDate": "1950-01-01", **extra}
    return f"Patient/{engine.store(resource)[0]}"


def components(score: dict[str, Any]) -> dict[str, Any]:
    return {c["code"]["coding"][0]["code"]: c.get("valueInteger", c.get("dataAbsentReason"))
            for c in score["component"]}


def test_a_full_normal_set_scores_zero_with_air_assumed(engine: Engine) -> None:
    patient = new_patient(engine)
    ids = engine.store(*full_set(patient, "2026-03-01T10:00:00Z"))
    [score] = engine.scores(patient)
    assert (score["status"], score["valueInteger"]) == ("final", 0)
    assert components(score) == {"respiration-rate": 0, "spo2": 0, "air-or-oxygen": 0,
                                 "systolic-bp": 0, "pulse": 0, "consciousness": 0,
                                 "temperature": 0}
    assert sorted(ref["reference"] for ref in score["derivedFrom"]) == \
        sorted(f"Observation/{id}" for id in ids)
    assert score["interpretation"][0]["coding"][0]["code"] == "low"
    assert any("air assumed" in note["text"] for note in score["note"])
    assert any("12-hourly" in note["text"] for note in score["note"])


def test_one_score_per_set_with_new_versions(engine: Engine) -> None:
    patient = new_patient(engine)
    engine.store(vital(patient, "9279-1", "2026-03-01T10:00:00Z", 16))
    [first] = engine.scores(patient)
    assert first["status"] == "preliminary" and first["valueInteger"] == 0
    assert components(first)["pulse"]["coding"][0]["code"] == "unknown"
    assert "interpretation" not in first  # a partial score sets no band
    engine.store(vital(patient, "8867-4", "2026-03-01T10:04:00Z", 120))
    [second] = engine.scores(patient)
    assert second["id"] == first["id"] and second["meta"]["versionId"] != \
        first["meta"]["versionId"]
    assert components(second)["pulse"] == 2 and second["valueInteger"] == 2
    engine.store(vital(patient, "8867-4", "2026-03-01T10:20:00Z", 70))
    scores = engine.scores(patient)
    assert len(scores) == 2  # ten minutes later: a new set


def test_oxygen_and_scale_2_change_the_spo2_score(engine: Engine) -> None:
    patient = new_patient(engine)
    engine.store(vital(patient, "59408-5", "2026-03-01T10:00:00Z", 89, "%"),
                 vital(patient, "3151-8", "2026-03-01T10:00:00Z", 2, "L/min"))
    [score] = engine.scores(patient)
    assert components(score)["spo2"] == 3 and components(score)["air-or-oxygen"] == 2
    assert not any("air assumed" in note["text"] for note in score["note"])
    engine.store({"resourceType": "Flag", "status": "active", "subject": {"reference": patient},
                  "code": {"coding": [{"system": "urn:hygeia:codesystem:news2",
                                       "code": "spo2-scale-2"}]},
                  "author": {"reference": "Practitioner/dr-who"}})
    [rescored] = engine.scores(patient)
    assert rescored["id"] == score["id"] and components(rescored)["spo2"] == 0


def test_news2_does_not_apply_under_16_or_in_pregnancy(engine: Engine) -> None:
    child = new_patient(engine, birthDate="2020-01-01")
    engine.store(*full_set(child, "2026-03-01T10:00:00Z"))
    assert engine.scores(child) == []
    mother = new_patient(engine)
    engine.store({"resourceType": "Condition", "subject": {"reference": mother},
                  "clinicalStatus": {"coding": [{
                      "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                      "code": "active"}]},
                  "code": {"coding": [{"system": SNOMED, "code": "77386006"}]}})
    engine.store(*full_set(mother, "2026-03-01T10:00:00Z"))
    assert engine.scores(mother) == []


def flags(engine: Engine, patient: str) -> dict[str, str]:
    return {flag["identifier"][0]["value"].split("|")[0]: flag["status"]
            for flag in engine.search(f"Flag?patient={patient}")
            if flag["identifier"][0]["value"].startswith("news2-")}


def test_a_rising_band_alerts_once_and_a_falling_one_clears(engine: Engine) -> None:
    patient = new_patient(engine)
    engine.store(*full_set(patient, "2026-03-01T10:00:00Z", respiration=26, spo2=90,
                           pulse=135))
    [score] = engine.scores(patient)
    assert score["valueInteger"] == 9 and \
        score["interpretation"][0]["coding"][0]["code"] == "high"
    assert flags(engine, patient) == {"news2-high": "active"}
    tasks = engine.search(f"Task?patient={patient}")
    assert [task["priority"] for task in tasks] == ["stat"]
    # the band holds: no second alert
    engine.store(vital(patient, "8867-4", "2026-03-01T10:30:00Z", 136))
    assert flags(engine, patient) == {"news2-high": "active"}
    assert len(engine.search(f"Communication?patient={patient}")) == 1
    # a single 3 only: falling to low-medium clears high and raises nothing
    engine.store(*full_set(patient, "2026-03-01T11:00:00Z", respiration=26))
    assert flags(engine, patient) == {"news2-high": "inactive"}
    # then rising from low-medium to medium raises medium
    engine.store(*full_set(patient, "2026-03-01T12:00:00Z", respiration=26, pulse=115))
    assert flags(engine, patient) == {"news2-high": "inactive", "news2-medium": "active"}
    engine.store(*full_set(patient, "2026-03-01T13:00:00Z"))
    assert flags(engine, patient) == {"news2-high": "inactive", "news2-medium": "inactive"}


def test_a_replay_of_the_feed_writes_nothing_twice(engine: Engine) -> None:
    patient = new_patient(engine)
    engine.store(*full_set(patient, "2026-03-01T10:00:00Z", respiration=26, spo2=90,
                           pulse=135))
    engine.store(vital(patient, "8867-4", "2026-03-01T10:02:00Z", 131))
    [before] = engine.scores(patient)
    tasks = engine.search(f"Task?patient={patient}")
    assert tasks[0]["restriction"]["period"]["end"] > tasks[0]["authoredOn"]
    replay = News2Engine(engine.service)
    replay.name = "clinical-news2-replay"  # a cursor of its own, from the first change
    replay.from_start = True
    runner = EventRunner(engine.service, replay)
    while runner.step():
        pass
    runner.stop()
    [after] = engine.scores(patient)
    assert after["meta"]["versionId"] == before["meta"]["versionId"]
    assert len(engine.search(f"Communication?patient={patient}")) == 1
    assert len(engine.search(f"Flag?patient={patient}")) == 1


@pytest.mark.parametrize(("changes", "band", "minutes"), [
    ({"respiration": 26, "spo2": 90, "pulse": 135}, "high", 15),
    ({"respiration": 26, "pulse": 115}, "medium", 30),
])
def test_an_unacknowledged_band_alert_escalates_after_its_due_time(
        engine: Engine, changes: dict[str, float], band: str, minutes: int) -> None:
    patient = new_patient(engine)
    engine.store(*full_set(patient, "2026-03-01T10:00:00Z", **changes))
    [task] = engine.search(f"Task?patient={patient}")
    due = escalation.due_at(task)
    raised = fhir_datetime_range(task["authoredOn"])[0]
    assert due is not None and due - raised == minutes * 60 * 1_000_000
    settings = engine.service.settings.alerts
    with engine.service.transaction() as session:
        assert escalation.scan(session, settings, due - 1_000_000).due == []  # not yet
        assert escalation.scan(session, settings, due).due == [task["id"]]
        assert escalation.escalate(session, task["id"], settings, due)
    assert len(engine.search(f"Communication?patient={patient}")) == 2  # the escalation
    acknowledged = {**engine.search(f"Task?patient={patient}")[0], "status": "accepted"}
    assert call(engine.service, "PUT", f"Task/{task['id']}", acknowledged).status == 200
    with engine.service.transaction() as session:  # acknowledged: never again
        assert escalation.scan(session, settings, due + 10 ** 12).due == []


class RefuseScoresOf:
    """A write hook (another pillar's, say) that refuses the scores of one patient."""

    types = frozenset({"Observation"})

    def __init__(self, patient: str) -> None:
        self.patient = patient

    def written(self, session: Any, version: Any) -> None:
        resource = json.loads(version.content or b"{}")
        if resource.get("subject", {}).get("reference") == self.patient and \
                resource["code"]["coding"][0]["code"] == "1104051000000101":
            raise BadRequest("Not this patient's scores.")


def test_a_refused_score_blocks_neither_the_batch_nor_the_feed(engine: Engine) -> None:
    refused, scored = new_patient(engine), new_patient(engine)
    engine.service.write_hooks.register(RefuseScoresOf(refused))
    engine.store(*full_set(refused, "2026-03-01T10:00:00Z"),
                 *full_set(scored, "2026-03-01T10:00:00Z"))
    assert engine.scores(refused) == []
    assert [score["valueInteger"] for score in engine.scores(scored)] == [0]
    while engine.runner.step():  # the engine's own scores, maybe read ahead meanwhile
        pass
    # the cursor moved past the batch
    assert feed_position(engine.service.repository, "clinical-news2") == \
        engine.service.repository.feed_horizon()


def test_the_write_transaction_reads_only_the_alerts_and_the_bands_before(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's vital signs, scores, patients and conditions are read before the write
    transaction: on SQLite it holds the one writer, and every other write waits for it."""
    patient = new_patient(engine)
    engine.store(*full_set(patient, "2026-03-01T06:00:00Z", respiration=26, pulse=115))
    repository = engine.service.repository
    writing: list[Any] = []  # the sessions themselves: an id alone may be reused
    searched: list[tuple[str, frozenset[str]]] = []  # (type, parameters) in a write
    transaction, search = repository.transaction, sql.SqlSession.search

    @contextmanager
    def recorded_transaction(**options: Any) -> Iterator[Any]:
        with transaction(**options) as session:
            writing.append(session)
            yield session

    def recorded_search(self: sql.SqlSession, query: Query) -> Any:
        if any(self is session for session in writing):
            searched.append((query.resource_type, frozenset(
                clause.parameter.code for clause in query.clauses
                if isinstance(clause, ParameterClause))))
        return search(self, query)

    for resource in full_set(patient, "2026-03-01T10:00:00Z", respiration=26, spo2=90,
                             pulse=135):  # stored before recording: only the engine's batch is
        assert call(engine.service, "POST", "Observation", resource).status == 201
    monkeypatch.setattr(repository, "transaction", recorded_transaction)
    monkeypatch.setattr(sql.SqlSession, "search", recorded_search)
    while engine.runner.step():
        pass
    monkeypatch.undo()
    assert flags(engine, patient) == {"news2-medium": "inactive", "news2-high": "active"}
    assert writing  # the engine did write, in a transaction recorded here
    assert {kind for kind, _ in searched} <= {"Flag", "Task", "CareTeam", "Observation"}
    # the only Observation search in the transaction: the band before (scores, not vitals)
    assert all(kind != "Observation" or ("code" in params and "date" in params)
               for kind, params in searched)
    assert len([kind for kind, _ in searched if kind == "Observation"]) <= 1


def test_a_batch_reads_its_vital_signs_and_patients_on_other_threads_beside_the_scores(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The vital signs and the patients of a batch are read in readers of their own on
    two other threads while the engine's thread reads the scores: on PostgreSQL the
    reads are mostly waits for the database (ADR 0023), so they overlap. A late vital
    sign still rescores the later set: the vitals read before the sets are known cover
    every window scored."""
    patient = new_patient(engine)
    engine.store(*[resource for resource in full_set(patient, "2026-03-01T10:00:00Z")
                   if resource["code"]["coding"][0]["code"] != "9279-1"])  # no respiration
    assert [score["valueInteger"] for score in engine.scores(patient)] == [0]
    threads: dict[str, set[str]] = {}  # searched type and parameter -> threads
    search = sql.SqlSession.search

    def recorded_search(self: sql.SqlSession, query: Query) -> Any:
        vital_signs = any(getattr(value, "system", None) == LOINC
                          for clause in query.clauses if isinstance(clause, ParameterClause)
                          for value in clause.values)
        key = "vital signs" if vital_signs else query.resource_type
        threads.setdefault(key, set()).add(threading.current_thread().name)
        return search(self, query)

    monkeypatch.setattr(sql.SqlSession, "search", recorded_search)
    # a late respiration rate, 40 minutes before the set: the 10:00 set is scored again
    engine.store(vital(patient, "9279-1", "2026-03-01T09:20:00Z", 26))
    monkeypatch.undo()
    engine_thread = threading.current_thread().name
    for read_ahead in ("vital signs", "Patient", "Condition"):
        assert {name.partition("_")[0] for name in threads.pop(read_ahead)} == \
            {"hygeia-news2-read"}, read_ahead
    # the scale-2 Flags there; the alerts' Flags in the write transaction, with the scores
    assert {name.partition("_")[0] for name in threads.pop("Flag")} == \
        {"hygeia-news2-read", engine_thread}
    # the scores: on the engine's thread, or on the pipeline's when the batch was read
    # and scored there while the batch before it committed
    assert {name.partition("_")[0] for name in threads["Observation"]} <= \
        {engine_thread, "hygeia-news2-next"}
    assert set(threads) <= {"Observation", "Task", "CareTeam"}
    newest = max(engine.scores(patient), key=lambda score: score["effectivePeriod"]["end"])
    assert newest["effectivePeriod"]["end"].startswith("2026-03-01T10:00:00")
    assert newest["valueInteger"] == 3  # the late respiration rate of 26 scores 3


def test_the_next_batch_is_read_and_scored_while_this_one_commits(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a batch commits, the batch after it is read from the feed and scored on the
    pipeline thread, and the runner hands that batch over next: every batch after the
    first is read there; the scores are those of reading each in its turn."""
    consumer = engine.runner.consumer
    assert isinstance(consumer, News2Engine)
    monkeypatch.setattr(consumer, "pipeline_dialects", {"sqlite", "postgresql"})
    monkeypatch.setattr(consumer, "batch", 6)  # one set's vital signs per batch
    patients = [new_patient(engine) for _ in range(3)]
    read_on: list[str] = []
    inputs = news2_engine._batch_inputs

    def recorded_inputs(session: Any, batch: Any, *own: Any) -> Any:
        read_on.append(threading.current_thread().name.partition("_")[0])
        return inputs(session, batch, *own)

    monkeypatch.setattr(news2_engine, "_batch_inputs", recorded_inputs)
    for number, patient in enumerate(patients):  # stored before the engine reads any
        for resource in full_set(patient, "2026-03-01T10:00:00Z", respiration=12 + 10 * number):
            assert call(engine.service, "POST", "Observation", resource).status == 201
    while engine.runner.step():
        pass
    assert read_on[:3] == [threading.current_thread().name, "hygeia-news2-next",
                           "hygeia-news2-next"]
    assert [[score["valueInteger"] for score in engine.scores(patient)]
            for patient in patients] == [[0], [2], [3]]  # respiration 12, 22, 32
    assert feed_position(engine.service.repository, "clinical-news2") == \
        engine.service.repository.feed_horizon()


class Inline:
    """An executor that runs what is submitted at once, on the submitting thread."""

    def submit(self, function: Any, *args: Any) -> Future[Any]:
        done: Future[Any] = Future()
        done.set_result(function(*args))
        return done


def test_a_set_scored_ahead_of_the_commit_of_its_first_vitals_keeps_one_score(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch after a committing one is scored before that commit is visible to its
    reads: the sets the committing batch wrote are taken as written, so a set whose
    vital signs span the two batches still has one score, and its band
    before is the one the first batch gave it (no second alert)."""
    consumer = engine.runner.consumer
    assert isinstance(consumer, News2Engine)
    monkeypatch.setattr(consumer, "pipeline_dialects", {"sqlite", "postgresql"})
    monkeypatch.setattr(consumer, "batch", 3)
    monkeypatch.setattr(consumer, "_pipeline", Inline())  # read before the commit, surely
    patient = new_patient(engine)
    for resource in full_set(patient, "2026-03-01T10:00:00Z", respiration=26, spo2=90,
                             pulse=135):
        assert call(engine.service, "POST", "Observation", resource).status == 201
    while engine.runner.step():
        pass
    [score] = engine.scores(patient)
    assert score["valueInteger"] >= 7 and len(score["derivedFrom"]) == 6
    # the first batch's read found all six (committed before it): the second batch,
    # scored from the set as written, finds it unchanged and writes no identical version
    # (it did while the set as written kept the meta its write stamped on it)
    assert score["meta"]["versionId"] == "1"
    assert len(engine.search(f"Flag?patient={patient}")) == 1
    assert len(engine.search(f"Communication?patient={patient}")) == 1


def test_a_failed_commit_drops_the_batch_scored_on_top_of_it(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch scored ahead took the committing batch's scores as written: if that commit
    fails, the batch is scored again in its turn, from what the store holds."""
    consumer = engine.runner.consumer
    assert isinstance(consumer, News2Engine)
    monkeypatch.setattr(consumer, "pipeline_dialects", {"sqlite", "postgresql"})
    monkeypatch.setattr(consumer, "batch", 3)
    monkeypatch.setattr(consumer, "_pipeline", Inline())
    patient = new_patient(engine)
    for resource in full_set(patient, "2026-03-01T10:00:00Z"):
        assert call(engine.service, "POST", "Observation", resource).status == 201
    advance = EventContext.transaction
    failed: list[int] = []

    @contextmanager
    def failing_once(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        with advance(self, *args, **kwargs) as session:
            yield session
            if not failed:
                failed.append(1)
                raise RuntimeError("the commit failed")

    monkeypatch.setattr(EventContext, "transaction", failing_once)
    with pytest.raises(RuntimeError):
        engine.runner.step()
    assert consumer._next is None  # not handed over
    while engine.runner.step():
        pass
    [score] = engine.scores(patient)
    assert score["valueInteger"] == 0 and len(score["derivedFrom"]) == 6


def test_the_engines_own_scores_are_not_read_back_but_a_clinicians_change_is(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The versions of the scores the engine committed come back as events of its feed:
    they are skipped unread. A version someone else writes of a score is read."""
    patient = new_patient(engine)
    read: list[str] = []
    versions_of = sql.SqlSession.versions_of

    def recorded(self: sql.SqlSession, events: Any) -> Any:
        events = list(events)
        read.extend(f"{event.resource_type}/{event.id}/{event.version}" for event in events)
        return versions_of(self, events)

    monkeypatch.setattr(sql.SqlSession, "versions_of", recorded)
    engine.store(*full_set(patient, "2026-03-01T10:00:00Z"))
    while engine.runner.step():
        pass
    [score] = engine.scores(patient)
    assert not any(entry.startswith(f"Observation/{score['id']}/") for entry in read)
    score["note"] = [{"text": "seen by the nurse"}]
    assert call(engine.service, "PUT", f"Observation/{score['id']}", score).status == 200
    read.clear()
    while engine.runner.step():
        pass
    assert f"Observation/{score['id']}/2" in read
    assert [one["meta"]["versionId"] for one in engine.scores(patient)] == ["2"]


def test_on_sqlite_the_next_batch_waits_for_the_commit(engine: Engine) -> None:
    """SQLite's one writer: the next batch is read in its turn, after the commit and
    the runner's gathering, so the ingest's writes get the writer between batches."""
    consumer = engine.runner.consumer
    assert isinstance(consumer, News2Engine)
    patient = new_patient(engine)
    engine.store(*full_set(patient, "2026-03-01T10:00:00Z"))
    pipelined = engine.service.repository.dialect == "postgresql"
    assert (consumer._pipeline is not None) == pipelined  # the pipeline thread started
