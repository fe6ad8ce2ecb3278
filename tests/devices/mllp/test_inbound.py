"""Acknowledgements and the message log, through a real ``hygeia serve --mllp-port``:
ACK after commit, AE/AR with ERR, duplicates, enhanced mode, FHIR search of the log."""

from __future__ import annotations

import base64

import httpx

from tests.devices.mllp.conftest import (
    MllpServer,
    adt,
    connect,
    framed,
    read_blocks,
    segment,
    send,
    unique,
)


def search(mllp: MllpServer, path: str) -> list[dict]:
    response = mllp.process.client.get(path)
    assert response.status_code == 200, response.text
    return [entry["resource"] for entry in response.json().get("entry", [])
            if entry.get("search", {}).get("mode", "match") == "match"]


def record(mllp: MllpServer, control_id: str) -> dict:
    [header] = search(mllp, f"MessageHeader?response-id={control_id}")
    return header


def test_an_admission_is_searchable_as_fhir_once_acknowledged(mllp: MllpServer) -> None:
    mrn, visit, control = f"M{unique()}", f"V{unique()}", f"C{unique()}"
    ack = send(mllp.port, adt(control_id=control, mrn=mrn, visit=visit))
    assert segment(ack, "MSA")[1:3] == ["AA", control]
    [patient] = search(mllp, f"Patient?identifier=urn:hygeia:hl7v2:assigner:GOODHEALTH|{mrn}")
    [encounter] = search(mllp, f"Encounter?identifier={visit}&status=in-progress")
    assert encounter["subject"]["reference"] == f"Patient/{patient['id']}"
    [bed] = search(mllp, "Location?identifier=urn:hygeia:hl7v2:location|GOODHEALTH/ICU/101/A")
    assert encounter["location"][-1]["location"]["reference"] == f"Location/{bed['id']}"
    header = record(mllp, control)
    assert header["response"]["code"] == "ok"
    assert header["eventCoding"] == {"system": "http://terminology.hl7.org/CodeSystem/v2-0003",
                                     "code": "A01", "display": "ADT^A01"}
    assert header["source"]["name"] == "ADT1|GOODHEALTH"
    assert header["source"]["endpoint"].startswith("mllp://127.0.0.1:")
    focus = [item["reference"] for item in header["focus"]]
    assert focus[0] == f"Binary/{header['id']}"
    assert f"Patient/{patient['id']}" in focus and f"Encounter/{encounter['id']}" in focus


def test_the_raw_message_is_kept_as_a_binary(mllp: MllpServer) -> None:
    control = f"C{unique()}"
    message = adt(control_id=control)
    send(mllp.port, message)
    header = record(mllp, control)
    binary = mllp.process.client.get(f"Binary/{header['id']}",
                                     headers={"Accept": "application/fhir+json"}).json()
    assert binary["contentType"] == "x-application/hl7-v2+er7"
    assert base64.b64decode(binary["data"]).decode() == message


def test_a_repeated_control_id_gets_the_same_ack_and_stores_nothing_twice(
        mllp: MllpServer) -> None:
    control, mrn = f"C{unique()}", f"M{unique()}"
    message = adt(control_id=control, mrn=mrn)
    first = send(mllp.port, message)
    second = send(mllp.port, message)
    assert first == second
    header = record(mllp, control)
    client = mllp.process.client
    assert len(client.get(f"MessageHeader/{header['id']}/_history").json()["entry"]) == 1
    assert len(client.get(f"Binary/{header['id']}/_history").json()["entry"]) == 1
    patients = search(mllp, f"Patient?identifier={mrn}")
    assert len(patients) == 1 and patients[0]["meta"]["versionId"] == "1"


def test_the_same_control_id_from_another_sender_is_another_message(
        mllp: MllpServer) -> None:
    control = f"C{unique()}"
    send(mllp.port, adt(control_id=control, sender="ADT1"))
    send(mllp.port, adt(control_id=control, sender="ADT2"))
    assert len(search(mllp, f"MessageHeader?response-id={control}")) == 2


def test_an_unknown_message_type_is_rejected_with_err_200_and_logged(
        mllp: MllpServer) -> None:
    control = f"C{unique()}"
    ack = send(mllp.port, adt("Z01", control_id=control, message_type="ZZZ"))
    assert segment(ack, "MSA")[1:3] == ["AR", control]
    error = segment(ack, "ERR")
    assert error[2] == "MSH^1^9" and error[3].startswith("200^") and error[4] == "E"
    assert "ZZZ\\S\\Z01" in error[8]  # ^ escaped as the standard says
    header = record(mllp, control)
    assert header["response"]["code"] == "fatal-error"
    assert header["contained"][0]["issue"][0]["details"]["coding"][0]["code"] == "200"


def test_bytes_that_are_not_hl7_are_rejected_and_logged(mllp: MllpServer) -> None:
    garbage = f"hello {unique()}"
    with connect(mllp.port) as connection:
        connection.sendall(framed(garbage))
        [ack] = read_blocks(connection, 1)
    assert segment(ack, "MSA")[1] == "AR"
    assert segment(ack, "ERR")[3].startswith("100^")
    refused = search(mllp, "MessageHeader?event=unparsed&code=fatal-error&_count=100")
    kept = [base64.b64decode(mllp.process.client.get(item["focus"][0]["reference"]).json()
                             ["data"]).decode() for item in refused]
    assert garbage in kept


def test_a_message_the_handler_refuses_gets_ae_and_leaves_no_data(mllp: MllpServer) -> None:
    control, visit = f"C{unique()}", f"V{unique()}"
    message = adt(control_id=control, visit=visit).replace(
        "PID|1||", "PID|1||^^^GOODHEALTH^MR").replace("^^^GOODHEALTH^MR^^^GOODHEALTH^MR",
                                                      "^^^GOODHEALTH^MR")
    message = "\r".join(line if not line.startswith("PID") else
                        "PID|1||||Everyman^Adam||19800615|M" for line in message.split("\r"))
    ack = send(mllp.port, message)
    assert segment(ack, "MSA")[1:3] == ["AE", control]
    error = segment(ack, "ERR")
    assert error[2] == "PID^1^3" and error[3].startswith("101^")
    assert "PID-3" in error[8]
    assert search(mllp, f"Encounter?identifier={visit}") == []  # rolled back
    header = record(mllp, control)
    assert header["response"]["code"] == "fatal-error"
    assert [item["reference"] for item in header["focus"]] == [f"Binary/{header['id']}"]


def enhanced(mllp: MllpServer, accept: str, application: str, count: int,
             message_type: str = "ADT") -> list[str]:
    control = f"C{unique()}"
    with connect(mllp.port) as connection:
        connection.sendall(framed(adt(control_id=control, accept=accept,
                                      application=application, message_type=message_type)))
        acks = read_blocks(connection, count) if count else []
        assert read_blocks(connection, 1, timeout=0.5) == []  # and nothing more
    assert all(segment(ack, "MSA")[2] == control for ack in acks)
    return [segment(ack, "MSA")[1] for ack in acks]


def test_enhanced_mode_sends_the_commit_then_the_application_ack(mllp: MllpServer) -> None:
    assert enhanced(mllp, "AL", "AL", 2) == ["CA", "AA"]
    assert enhanced(mllp, "AL", "NE", 1) == ["CA"]
    assert enhanced(mllp, "NE", "AL", 1) == ["AA"]
    assert enhanced(mllp, "SU", "ER", 1) == ["CA"]
    assert enhanced(mllp, "ER", "ER", 0) == []  # success, and only errors were to be told


def test_enhanced_mode_answers_an_unsupported_type_with_a_commit_reject(
        mllp: MllpServer) -> None:
    assert enhanced(mllp, "AL", "AL", 1, message_type="ZZZ") == ["CR"]
    assert enhanced(mllp, "ER", "AL", 1, message_type="ZZZ") == ["CR"]


def test_the_log_is_searchable_by_control_id_outcome_and_event(mllp: MllpServer) -> None:
    control = f"C{unique()}"
    send(mllp.port, adt("A04", control_id=control))
    header = record(mllp, control)
    client: httpx.Client = mllp.process.client
    found = client.get(f"MessageHeader?event=A04&code=ok&_id={header['id']}").json()
    assert found["total"] == 1
    assert client.get(f"MessageHeader?code=fatal-error&_id={header['id']}").json()["total"] == 0


def test_an_acknowledgement_sent_to_the_server_is_not_answered(mllp: MllpServer) -> None:
    control = f"C{unique()}"
    ack = (f"MSH|^~\\&|ADT1|GOODHEALTH|HYGEIA|HOSP|20240301080000+0000||ACK^A01^ACK|"
           f"{control}|P|2.5\rMSA|CA|SOMEID\r")
    with connect(mllp.port) as connection:
        connection.sendall(framed(ack))
        assert read_blocks(connection, 1, timeout=0.5) == []
        connection.sendall(framed(adt(control_id=control)))  # the connection still works
        assert segment(read_blocks(connection, 1)[0], "MSA")[1:3] == ["AA", control]


def test_a_latin_1_message_is_read_as_latin_1(mllp: MllpServer) -> None:
    control, mrn = f"C{unique()}", f"M{unique()}"
    message = adt(control_id=control, mrn=mrn).replace("Everyman^Adam", "Müller^Zoë")
    with connect(mllp.port) as connection:
        connection.sendall(b"\x0b" + message.encode("latin-1") + b"\x1c\r")
        assert segment(read_blocks(connection, 1)[0], "MSA")[1] == "AA"
    [patient] = search(mllp, f"Patient?identifier={mrn}")
    assert patient["name"][0]["family"] == "Müller" and patient["name"][0]["given"] == ["Zoë"]


def test_a_control_id_an_id_cannot_hold_is_kept_exactly_beside_its_searchable_form(
        mllp: MllpServer) -> None:
    control = f"MSG {unique()}_1"
    ack = send(mllp.port, adt(control_id=control))
    assert segment(ack, "MSA")[1:3] == ["AA", control]
    header = record(mllp, control.replace(" ", "-").replace("_", "-"))
    assert {"url": "urn:hygeia:hl7v2:control-id", "valueString": control} in \
        header["extension"]


def test_enhanced_mode_commits_a_refused_message_then_reports_the_error(
        mllp: MllpServer) -> None:
    control = f"C{unique()}"
    message = "\r".join("PID|1||||Nobody^Known" if line.startswith("PID") else line
                        for line in adt(control_id=control, accept="AL",
                                        application="AL").split("\r"))
    with connect(mllp.port) as connection:
        connection.sendall(framed(message))
        commit, application = read_blocks(connection, 2)
    assert segment(commit, "MSA")[1:3] == ["CA", control]  # stored: the log has it
    assert segment(application, "MSA")[1:3] == ["AE", control]
    assert segment(application, "ERR")[2] == "PID^1^3"
    assert record(mllp, control)["response"]["code"] == "fatal-error"
