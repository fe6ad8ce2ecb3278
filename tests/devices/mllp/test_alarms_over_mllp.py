"""A monitor's alarm over MLLP becomes an alert of the core's alerting service (Flag,
Communication, acknowledgement Task), once while it persists; the next reading within
the device's alarm limits clears it."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.devices.mllp.conftest import MllpServer, fixture_message, segment, send, unique
from tests.devices.mllp.test_pcd01_over_mllp import entries, monitor_message


def alarm_message(mrn: str, eui64: str, control_id: str) -> str:
    return fixture_message("oru_pcd01_alarm.hl7").replace("MRN-1001", mrn) \
        .replace("0123456789ABCDEF", eui64).replace("MON-0002", control_id)


def wait_for(client: httpx.Client, query: str, check: Any, timeout: float = 30) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = entries(client, query)
        if check(found):
            return found
        assert time.monotonic() < deadline, f"{query} never satisfied the check: {found}"
        time.sleep(0.2)


def test_an_alarm_raises_one_alert_until_a_normal_reading_clears_it(mllp: MllpServer) -> None:
    mrn, eui64 = f"MRN-{unique()}", unique()[:8] + "ABCDEF02"
    client = mllp.process.client
    for _ in range(2):  # the alarm persists over two messages: still one alert
        ack = send(mllp.port, alarm_message(mrn, eui64, f"ALM-{unique()}"))
        assert segment(ack, "MSA")[1] == "AA", ack
    [patient] = entries(client, f"Patient?identifier=urn:hygeia:hl7v2:assigner:HOSP|{mrn}")
    subject = f"Patient/{patient['id']}"
    [flag] = wait_for(client, f"Flag?patient={subject}", lambda found: len(found) == 1)
    assert flag["status"] == "active"
    assert flag["author"]["reference"].startswith("Device/")
    [communication] = entries(client, f"Communication?subject={subject}")
    assert "Alarm on" in str(communication["payload"])
    assert communication["about"]  # the Flag and the reading

    ack = send(mllp.port, monitor_message(mrn, eui64, f"MON-{unique()}"))  # HR 72: normal
    assert segment(ack, "MSA")[1] == "AA", ack
    wait_for(client, f"Flag?patient={subject}",
             lambda found: [f["status"] for f in found] == ["inactive"])
