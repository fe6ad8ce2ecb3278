"""The engine's memory of its patients' readings (news2/memory.py) against the store.

The memory answers a batch's read of vital signs only when it gives what reading the
store would: these tests drive the real engine on the change feed with random streams
(late readings, updates, deletes, restarts, failed batches) and hold every answer it
gives to the store's read of every reading in the window, on both databases.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from hygeia.clinical.news2 import engine as news2_engine
from hygeia.clinical.news2.engine import News2Engine
from hygeia.clinical.news2.inputs import PULSE, Reading
from hygeia.clinical.news2.memory import KEEP, SCORES, Track, VitalMemory
from hygeia.clinical.news2.record import ScoreSet, readings_for, scores_from
from hygeia.clinical.news2.score import latest
from hygeia.server.events import EventRunner
from tests.clinical.news2.test_engine import Engine, full_set, new_patient, vital
from tests.clinical.news2.test_record import HOUR, MINUTE, reading_at, us
from tests.helpers import body, call

WINDOW = HOUR


def at_second(second: int) -> str:
    return f"2026-03-01T{9 + second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"


def same_choices(memory: dict[str, list[Reading]], whole: dict[str, list[Reading]],
                 windows: dict[str, tuple[int, int]]) -> None:
    """For every set end a read of ``windows`` serves, the same reading of each
    parameter from the memory's answer as from every reading of the window."""
    for who, readings in memory.items():
        start, stop = windows[who]
        ends = {start + WINDOW, stop, *(one.at for one in whole[who]
                                        if start + WINDOW <= one.at <= stop)}
        for end in sorted(ends):
            def within(found: list[Reading], end: int = end) -> list[Reading]:
                return [one for one in found if end - WINDOW <= one.at <= end]
            assert latest(within(readings)) == latest(within(whole[who])), (who, end)


def check(engine: Engine, memory: VitalMemory, patients: list[str], newest: dict[str, int],
          rng: random.Random) -> int:
    """Compare the memory's answers to the store's for windows near each patient's
    newest reading (where a batch's are) and some further back; how many it answered."""
    windows = {}
    for who in patients:
        end = newest[who] + rng.choice([0, 0, 1, -rng.randrange(0, 40) * MINUTE])
        windows[who] = (end - WINDOW - rng.choice([0, 0, rng.randrange(0, 10) * MINUTE]),
                        end)
    answered = memory.answer(windows, WINDOW)
    earliest = {who: start + WINDOW - rng.randrange(0, 10) * MINUTE
                for who, (start, _) in windows.items()}
    scores = memory.scores(earliest)
    with engine.service.reader() as session:
        whole = readings_for(session, windows, 3 * HOUR)
        stored = scores_from(session, earliest, WINDOW)
    same_choices(answered, whole, windows)
    for who, known in scores.items():
        assert summary(known, earliest[who]) == summary(stored[who], earliest[who]), who
    return len(answered) + len(scores)


def summary(sets: list[ScoreSet], earliest: int) -> list[tuple[Any, ...]]:
    """What the engine uses of the scores ending at or after ``earliest``."""
    return sorted((one.id, one.start, one.end, one.stored, one.was) for one in sets
                  if one.end >= earliest)


def write(engine: Engine, method: str, path: str, resource: Any = None) -> dict[str, Any]:
    response = call(engine.service, method, path, resource)
    assert response.status < 300, body(response)
    return body(response) if response.status != 204 else {}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_memory_answers_as_the_store_reads_on_random_streams(
        engine: Engine, seed: int) -> None:
    """New readings (a tie of one time now and then), late ones up to two hours back,
    value, time and status updates, deletes, a restart and a failed batch: after each
    step every answer of the memory chooses what the store's readings choose."""
    rng = random.Random(seed)
    patients = [new_patient(engine) for _ in range(3)]
    second = {who: 7200 for who in patients}  # the stream starts at 11:00
    newest = {who: us(at_second(7200)) for who in patients}
    written: list[tuple[str, str, int]] = []  # (id, patient, second)
    answered = 0
    for step in range(60):
        action = rng.random()
        who = rng.choice(patients)
        if action < 0.55 or not written:  # the next readings, sometimes a tie
            second[who] += rng.choice([0, 30, 60, 60, 120])
            for kind in rng.sample(range(5), rng.randrange(1, 4)):
                [one] = engine.store(reading_at(who, kind, at_second(second[who]),
                                                rng.randrange(40)))
                written.append((one, who, second[who]))
            newest[who] = max(newest[who], us(at_second(second[who])))
        elif action < 0.70:  # a late reading
            late = second[who] - rng.randrange(1, 7200)
            [one] = engine.store(reading_at(who, rng.randrange(5), at_second(late),
                                            rng.randrange(40)))
            written.append((one, who, late))
        elif action < 0.85:  # an update: a new value, time or status
            one, whose, was = rng.choice(written)
            resource = write(engine, "GET", f"Observation/{one}")
            change = rng.randrange(3)
            if change == 0:
                resource = {**reading_at(whose, rng.randrange(5), at_second(was), 7),
                            "id": one}
            elif change == 1:
                moved = max(0, was - rng.randrange(-300, 3600))
                resource["effectiveDateTime"] = at_second(moved)
                written.remove((one, whose, was))
                written.append((one, whose, moved))
            else:
                resource["status"] = "entered-in-error"
            write(engine, "PUT", f"Observation/{one}", resource)
            engine.store()
        elif action < 0.95:  # a delete
            one, whose, was = written.pop(rng.randrange(len(written)))
            write(engine, "DELETE", f"Observation/{one}")
            engine.store()
        else:  # a clinician changes or deletes a score: the engine did not write it
            score = rng.choice(engine.scores(who) or [None])
            if score is not None and rng.random() < 0.5:
                score["note"] = [{"text": "checked at the bedside"}]
                write(engine, "PUT", f"Observation/{score['id']}", score)
            elif score is not None:
                write(engine, "DELETE", f"Observation/{score['id']}")
            engine.store()
        if step == 30:  # a restart: a new engine, its memory empty, takes the cursor over
            engine.runner.stop()
            engine.runner = EventRunner(engine.service, News2Engine(engine.service))
            engine.store()
        if step == 45:  # a failed batch: the memory is forgotten, the batch handed over again
            news2 = engine.runner.consumer
            assert isinstance(news2, News2Engine)
            news2.memory.forget()
        news2 = engine.runner.consumer
        assert isinstance(news2, News2Engine)
        answered += check(engine, news2.memory, patients, newest, rng)
    assert answered >= 120  # the memory answered most reads: the comparison is not empty


def test_a_followed_patient_reads_no_vital_sign_from_the_store(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a patient's readings were read, a batch of its new vital signs is answered
    from the memory: the store's read, which on SQLite walks the patient's whole
    history, is not made."""
    patient = new_patient(engine)
    engine.store(*full_set(patient, "2026-03-01T10:00:00Z"))
    reads: list[set[str]] = []
    real = news2_engine.readings_for

    def recorded(session: Any, windows: Any, *args: Any, **kwargs: Any) -> Any:
        reads.append(set(windows))
        return real(session, windows, *args, **kwargs)

    monkeypatch.setattr(news2_engine, "readings_for", recorded)
    engine.store(*full_set(patient, "2026-03-01T10:01:00Z", pulse=135))
    engine.store(vital(patient, "8867-4", "2026-03-01T10:07:00Z", 140))
    assert reads == []
    [score] = [one for one in engine.scores(patient)
               if one["effectivePeriod"]["end"].startswith("2026-03-01T10:07")]
    assert score["valueInteger"] == 3  # the pulse of 140 read from the memory
    # a reading older than the memory holds (before the floor it learned): the store
    engine.store(vital(patient, "8867-4", "2026-03-01T09:30:00Z", 90))
    assert reads == [{patient}]


def test_a_batch_after_another_process_moved_the_cursor_forgets_the_memory(
        engine: Engine) -> None:
    """A batch that does not start where the memory's events end (another process
    handled the ones between) is not answered from what memory holds."""
    patient = new_patient(engine)
    engine.store(*full_set(patient, "2026-03-01T10:00:00Z"))
    news2 = engine.runner.consumer
    assert isinstance(news2, News2Engine)
    assert len(news2.memory) == 1
    position = news2.memory.position
    assert position is not None
    # another process's batch: a reading it followed, memory did not
    engine.runner.stop()
    other = EventRunner(engine.service, News2Engine(engine.service))
    other.owner = "another process"
    other.step()  # claims the cursor
    write(engine, "POST", "Observation", vital(patient, "8867-4", "2026-03-01T10:02:00Z",
                                                 140))
    other.step()
    other.stop()
    engine.runner = EventRunner(engine.service, news2)  # this process takes it back
    engine.store(vital(patient, "9279-1", "2026-03-01T10:03:00Z", 16))
    assert news2.memory.position is not None and news2.memory.position > position
    answered = news2.memory.answer({patient: (us("2026-03-01T10:03:00Z") - WINDOW,
                                              us("2026-03-01T10:03:00Z"))}, WINDOW)
    assert [one.value for one in answered[patient] if one.parameter == PULSE][-1] == 140


def test_a_track_keeps_a_bounded_number_of_readings() -> None:
    track = Track(since=0, back=-10 * WINDOW)
    for second in range(3 * KEEP):
        track.add(Reading(PULSE, second, second, f"Observation/{second:04d}"))
    assert len(track.kept) <= KEEP
    assert [one.at for one in track.before] == [track.kept[0][0] - 1]
    assert not track.answers(0, track.before[0].at - 1)  # older: the store
    floor = track.before[0].at
    assert track.answers(floor - WINDOW, floor)
    assert [one.at for one in track.readings(floor - WINDOW, floor + 1, floor + 2)] == \
        [floor + 1, floor + 2, floor]


def test_a_patients_scores_are_bounded_and_then_known_from_later_on() -> None:
    memory = VitalMemory()
    memory.follow(0, 1, [], {})
    memory.learn(1, {"Patient/a": (0, WINDOW)}, WINDOW, {})
    memory.learn_scores(memory.score_changes, {"Patient/a": 0}, {})
    memory.wrote({"Patient/a": [ScoreSet(f"s{n:03d}", n * MINUTE, n * MINUTE, {"n": n})
                                for n in range(SCORES + 6)]})
    assert memory.scores({"Patient/a": 0}) == {}  # the first six were dropped: the store
    later = memory.scores({"Patient/a": 10 * MINUTE})["Patient/a"]
    assert [one.id for one in later] == [f"s{n:03d}" for n in range(10, SCORES + 6)]
