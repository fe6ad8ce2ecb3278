"""A bedside monitor's IHE PCD-01 message through python-hl7's MLLP client becomes
searchable FHIR over HTTP: the patient's vital signs by LOINC code, the monitor as a
Device, its Observations by device; a replay of the same readings stores nothing twice."""

from __future__ import annotations

from typing import Any

import httpx

from tests.devices.mllp.conftest import MllpServer, fixture_message, segment, send, unique

EUI64 = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"


def monitor_message(mrn: str, eui64: str, control_id: str) -> str:
    return fixture_message("oru_pcd01_monitor.hl7").replace("MRN-1001", mrn) \
        .replace("0123456789ABCDEF", eui64).replace("MON-0001", control_id)


def entries(client: httpx.Client, query: str) -> list[dict[str, Any]]:
    bundle = client.get(query).json()
    return [entry["resource"] for entry in bundle.get("entry", [])
            if entry.get("search", {}).get("mode", "match") == "match"]


def test_a_monitor_feed_becomes_searchable_fhir(mllp: MllpServer) -> None:
    mrn, eui64 = f"MRN-{unique()}", unique()[:8] + "ABCDEF01"
    ack = send(mllp.port, monitor_message(mrn, eui64, f"MON-{unique()}"))
    assert segment(ack, "MSA")[1] == "AA", ack
    client = mllp.process.client
    [patient] = entries(client, f"Patient?identifier=urn:hygeia:hl7v2:assigner:HOSP|{mrn}")
    [heart_rate] = entries(client, f"Observation?patient=Patient/{patient['id']}"
                                   "&code=http://loinc.org|8867-4")
    assert heart_rate["valueQuantity"]["value"] == 72
    assert heart_rate["valueQuantity"]["code"] == "/min"
    [monitor] = entries(client, f"Device?identifier={EUI64}|{eui64}")
    assert heart_rate["device"]["reference"] == f"Device/{monitor['id']}"
    [panel] = entries(client, f"Observation?patient=Patient/{patient['id']}"
                              "&code=http://loinc.org|85354-9")
    assert {c["code"]["coding"][-1]["code"] for c in panel["component"]} >= \
        {"8480-6", "8462-4"}
    by_device = entries(client, f"Observation?device=Device/{monitor['id']}&_count=100")
    assert len(by_device) >= 6

    replay = send(mllp.port, monitor_message(mrn, eui64, f"MON-{unique()}"))  # new MSH-10
    assert segment(replay, "MSA")[1] == "AA", replay
    again = entries(client, f"Observation?device=Device/{monitor['id']}&_count=100")
    assert sorted(o["id"] for o in again) == sorted(o["id"] for o in by_device)
    assert all(o["meta"]["versionId"] == "1" for o in again)  # not even a new version
