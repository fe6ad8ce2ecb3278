"""A group-commit batch's look-ups read together (batchreads): the same patients and
log records as message-by-message look-ups, on both databases, and a batch where one
message creates the patient the next one names still makes one Patient."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from hygeia.devices.hl7v2.attribution import find_patients, patient_criteria
from hygeia.devices.hl7v2.parsing import parse_er7
from hygeia.devices.mllp import handlers
from hygeia.devices.mllp.inbound import Arrival, Inbound
from hygeia.server import FhirRequest, FhirService
from tests.devices.hl7v2.oru_helpers import search

AUTHORITY = "urn:hygeia:hl7v2:assigner:HOSP"


def oru(control: str, mrn: str, *, extra_mrn: str = "", minute: int = 0,
        name: str = "Doe^Jo") -> str:
    """A one-OBX PCD-01 ORU^R01 for patient ``mrn`` (and ``extra_mrn`` as a second
    PID-3 repetition), measured at 12:``minute`` (a reading of its own)."""
    at = f"2026010112{minute:02d}00+0000"
    pid3 = f"{mrn}^^^HOSP^MR" + (f"~{extra_mrn}^^^HOSP^MR" if extra_mrn else "")
    return "\r".join([
        f"MSH|^~\\&|MON^0123456789ABCDEF^EUI-64|WARD|HYGEIA|HOSP|{at}||"
        f"ORU^R01^ORU_R01|{control}|P|2.6|||NE|AL|||||IHE_PCD_001^IHE PCD^"
        "1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
        f"PID|||{pid3}||{name}",
        f"OBR|1||F{control}|182777000^monitoring of patient^SCT|||{at}",
        f"OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|72|264864^MDC_DIM_BEAT_PER_MIN^"
        f"MDC|||||R|||{at}||||0123456789ABCDEF^EUI-64"]) + "\r"


def create_patient(service: FhirService, *mrns: str) -> str:
    body = {"resourceType": "Patient",
            "identifier": [{"system": AUTHORITY, "value": mrn} for mrn in mrns]}
    response = service.handle(FhirRequest("POST", "Patient", body=body))
    assert response.status == 201, response.body_dict()
    created = response.body_dict()
    assert created is not None
    return str(created["id"])


def criteria(mrn: str, extra_mrn: str = "") -> str:
    found = patient_criteria(parse_er7(oru("X", mrn, extra_mrn=extra_mrn).rstrip("\r")))
    assert found is not None
    return found


def test_batch_look_up_answers_as_the_search_does(service: FhirService) -> None:
    alone = create_patient(service, "MRN-ALONE")
    create_patient(service, "MRN-TWICE")
    create_patient(service, "MRN-TWICE")
    wanted = [criteria("MRN-ALONE"), criteria("MRN-NOBODY"), criteria("MRN-TWICE"),
              criteria("MRN-NOBODY", extra_mrn="MRN-ALONE")]
    with service.repository.transaction() as session:
        known = find_patients(session, wanted)
    assert known[criteria("MRN-ALONE")] == [alone]
    assert known[criteria("MRN-NOBODY")] == []
    assert known[criteria("MRN-NOBODY", extra_mrn="MRN-ALONE")] == [alone]
    assert criteria("MRN-TWICE") not in known  # two patients: searched alone, as before


def test_a_batch_that_creates_a_patient_makes_one_and_reads_ahead_for_the_rest(
        service: FhirService) -> None:
    known = create_patient(service, "MRN-KNOWN")
    inbound = Inbound.grouped(service, handlers(), committers=1)  # batches in turn
    assert inbound.commits is not None
    inbound.commits.start()
    gate = threading.Event()
    answers: dict[str, bytes] = {}
    try:
        # the committer is held by one unit while the messages queue: they form one batch
        holder = threading.Thread(target=inbound.commits.run, args=(lambda _: gate.wait(30),))
        holder.start()
        time.sleep(0.2)
        messages = {"C1": oru("C1", "MRN-NEW", minute=1), "C2": oru("C2", "MRN-NEW", minute=2,
                                                                      name="Roe^Al"),
                    "C3": oru("C3", "MRN-KNOWN", minute=3),
                    "C4": oru("C4", "MRN-KNOWN", minute=4)}

        def send(control: str) -> None:
            arrival = Arrival(messages[control].encode(), "mllp://127.0.0.1:1",
                              "mllp://127.0.0.1:2", datetime.now(UTC))
            answers[control] = b"".join(inbound.answer(arrival))

        senders = [threading.Thread(target=send, args=(control,)) for control in messages]
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 10
        while inbound.commits.queued < len(messages) and time.monotonic() < deadline:
            time.sleep(0.01)
        batches = inbound.commits.batches
        gate.set()
        for thread in (holder, *senders):
            thread.join(30)
    finally:
        inbound.commits.stop()
    assert all(b"MSA|AA|" in answer for answer in answers.values()), answers
    assert inbound.commits.batches == batches + 2  # the holder's, then the four together
    [new] = search(service, "Patient", identifier=f"{AUTHORITY}|MRN-NEW")
    # created by the first message; the second found it (its other name changes nothing)
    assert new["meta"]["versionId"] == "1"
    for patient, count in ((new["id"], 2), (known, 2)):
        observations = search(service, "Observation", subject=f"Patient/{patient}")
        assert len(observations) == count
    # the batch read the known patient ahead (used by the messages before the new
    # patient was written; those after it searched again)
    assert inbound.reads.last is not None
    assert inbound.reads.last.patients.get(criteria("MRN-KNOWN")) == [known]


def test_a_batch_of_known_patients_is_answered_from_the_read_ahead(
        service: FhirService) -> None:
    known = create_patient(service, "MRN-SEEN")
    inbound = Inbound.grouped(service, handlers(), committers=1)  # batches in turn
    assert inbound.commits is not None
    messages = {f"K{minute}": oru(f"K{minute}", "MRN-SEEN", minute=minute)
                for minute in range(3)}
    answers: dict[str, bytes] = {}

    def send(control: str) -> None:
        arrival = Arrival(messages[control].encode(), "mllp://127.0.0.1:1",
                          "mllp://127.0.0.1:2", datetime.now(UTC))
        answers[control] = b"".join(inbound.answer(arrival))

    inbound.commits.start()
    try:
        in_one_batch(inbound, send, list(messages))
    finally:
        inbound.commits.stop()
    assert all(b"MSA|AA|" in answer for answer in answers.values()), answers
    assert inbound.reads.offered == len(messages)  # none searched its patient alone
    observations = search(service, "Observation", subject=f"Patient/{known}")
    assert len(observations) == len(messages)


def in_one_batch(inbound: Inbound, send: Callable[[str], None], controls: list[str]
                 ) -> None:
    """Send ``controls`` while the committer is held by another unit, so they queue
    and then share one batch."""
    assert inbound.commits is not None
    gate = threading.Event()
    holder = threading.Thread(target=inbound.commits.run, args=(lambda _: gate.wait(30),))
    holder.start()
    time.sleep(0.2)
    senders = [threading.Thread(target=send, args=(control,)) for control in controls]
    for sender in senders:
        sender.start()
    deadline = time.monotonic() + 10
    while inbound.commits.queued < len(controls) and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.set()
    for thread in (holder, *senders):
        thread.join(30)


def test_pid3_is_read_once_per_message_for_its_locks_look_up_and_handling() -> None:
    """The handler's lock and batch criteria are those of the message's PID-3, read
    once and shared by the copies of the message the listener makes."""
    from dataclasses import replace

    from hygeia.devices.hl7v2.attribution import message_locks, pid3_of
    from hygeia.devices.hl7v2.oru import handles
    from tests.devices.hl7v2.oru_helpers import received

    text = oru("C1", "MRN-ONCE", extra_mrn="MRN-TWO").rstrip("\r")
    message = received(text)
    handler = handles()["ORU^R01"]
    assert handler.locks(message) == message_locks(message.message)  # type: ignore[attr-defined]
    assert handler.patient_criteria(message) == criteria("MRN-ONCE", "MRN-TWO")  # type: ignore[attr-defined]
    assert pid3_of(replace(message, known_patients={})) is pid3_of(message)
    assert "pid-3" in message.derived


def test_a_patient_indexed_for_matching_is_indexed_again_once_changed(
        service: FhirService) -> None:
    """The batch look-up keeps each Patient's index rows for its version: reused while
    unchanged, and a new version (an identifier taken away) answers as the search."""
    from hygeia.devices.hl7v2 import attribution

    id = create_patient(service, "MRN-KEPT")
    wanted = [criteria("MRN-KEPT")]
    with service.repository.transaction() as session:
        assert find_patients(session, wanted) == {wanted[0]: [id]}
    kept = attribution._INDEXED[id]
    with service.repository.transaction() as session:
        assert find_patients(session, wanted) == {wanted[0]: [id]}
    assert attribution._INDEXED[id][4] is kept[4]  # the same rows: not indexed again
    body = {"resourceType": "Patient", "id": id,
            "identifier": [{"system": AUTHORITY, "value": "MRN-OTHER"}]}
    response = service.handle(FhirRequest("PUT", f"Patient/{id}", body=body))
    assert response.status == 200, response.body_dict()
    with service.repository.transaction() as session:
        assert find_patients(session, wanted) == {wanted[0]: []}  # no such identifier now
        assert find_patients(session, [criteria("MRN-OTHER")]) == \
            {criteria("MRN-OTHER"): [id]}
    assert attribution._INDEXED[id][1] == 2
