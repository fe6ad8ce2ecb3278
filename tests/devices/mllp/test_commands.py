"""``hygeia devices messages`` and ``hygeia devices reprocess`` on a real server's
database: a message refused for a reason fixed later goes through on reprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.devices.mllp.conftest import MllpServer, adt, segment, send, unique


def hygeia(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hygeia.cli.main", *args],
                          capture_output=True, text=True, timeout=60)


def test_a_refused_message_is_listed_and_goes_through_when_reprocessed_after_a_fix(
        mllp: MllpServer) -> None:
    first, second = f"A{unique()}", f"B{unique()}"
    send(mllp.port, adt(mrn=first))
    send(mllp.port, adt(mrn=second))
    control = f"C{unique()}"
    both = f"{first}^^^GOODHEALTH^MR~{second}"  # two patients' identifiers in one PID-3
    ack = send(mllp.port, adt(control_id=control, mrn=both))
    assert segment(ack, "MSA")[1] == "AE" and segment(ack, "ERR")[3].startswith("205^")

    listing = hygeia("devices", "messages", "--db", mllp.db_url, "--outcome", "fatal-error",
                     "--count", "1000")
    assert listing.returncode == 0, listing.stderr
    [line] = [line for line in listing.stdout.splitlines() if control in line]
    record_id = line.split()[0]
    assert "fatal-error" in line and "belong to different patients" in line

    client = mllp.process.client
    [duplicate] = client.get(f"Patient?identifier={second}").json()["entry"]
    assert client.delete(f"Patient/{duplicate['resource']['id']}").status_code in (200, 204)
    again = hygeia("devices", "reprocess", "--db", mllp.db_url, record_id)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"MessageHeader/{record_id}: fatal-error -> ok"
    [patient] = client.get(f"Patient?identifier={second}").json()["entry"]
    assert {item["value"] for item in patient["resource"]["identifier"]} == {first, second}
    header = client.get(f"MessageHeader/{record_id}").json()
    assert header["response"]["code"] == "ok" and header["meta"]["versionId"] == "2"
    assert f"Patient/{patient['resource']['id']}" in [item["reference"]
                                                      for item in header["focus"]]


def test_reprocessing_an_unknown_id_is_one_error_line(mllp: MllpServer) -> None:
    result = hygeia("devices", "reprocess", "--db", mllp.db_url, "nosuchmessage")
    assert result.returncode == 2
    assert result.stderr.startswith("error: no HL7 v2 message is logged as "
                                    "MessageHeader/nosuchmessage")
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_list_shows_newest_first_with_a_count(mllp: MllpServer) -> None:
    control = f"C{unique()}"
    send(mllp.port, adt(control_id=control))
    result = hygeia("devices", "messages", "--db", mllp.db_url, "--count", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "RECEIVED", "SENDER"]
    assert control in lines[1] and " ok" in lines[1]
    assert lines[-1] == "1 message"


def test_a_database_file_that_does_not_exist_is_one_error_line(tmp_path: Path) -> None:
    result = hygeia("devices", "messages", "--db", f"sqlite:///{tmp_path}/typo.db")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --db sqlite:///") and "no database file" in \
        result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
