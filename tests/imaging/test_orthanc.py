"""Orthanc (the Debian package, run here with a generated configuration on free ports)
forwards a study to Hygeia by C-STORE, as a PACS routing to Hygeia would."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.imaging.conftest import (
    AE_TITLE,
    DicomServer,
    imaging_study,
    make_study,
    pynetdicom_app,
    unique,
)


@pytest.fixture
def orthanc(dicom: DicomServer, tmp_path: Path) -> Iterator[tuple[httpx.Client, int]]:
    binary = shutil.which("Orthanc")
    if binary is None:
        pytest.fail("Orthanc is not installed (apt-get install orthanc)")
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "hygeia-test", "StorageDirectory": str(tmp_path / "storage"),
        "IndexDirectory": str(tmp_path / "index"), "HttpPort": http_port,
        "DicomPort": dicom_port, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "Plugins": [], "DicomCheckCalledAet": False,
        "DicomModalities": {"hygeia": [AE_TITLE, "127.0.0.1", dicom.port]},
    }
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
    log = (tmp_path / "orthanc.log").open("wb")
    process = subprocess.Popen([binary, str(tmp_path / "orthanc.json")], stdout=log,
                               stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=60)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.get("/system").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("Orthanc did not start: " + (tmp_path / "orthanc.log").read_text())
            time.sleep(0.2)
        yield client, dicom_port
    finally:
        client.close()
        process.terminate()
        process.wait(15)
        log.close()


def test_orthanc_forwards_a_study_by_c_store(dicom: DicomServer, orthanc: tuple[httpx.Client, int],
                                             tmp_path: Path) -> None:
    client, orthanc_port = orthanc
    assert client.post("/modalities/hygeia/echo", content="{}").status_code == 200
    study, _ = make_study(tmp_path / "s", 4, PatientID=f"P{unique()}")
    sent = pynetdicom_app("storescu", "127.0.0.1", str(orthanc_port), str(tmp_path / "s"),
                          "-r", "-aec", "ORTHANC")
    assert sent.returncode == 0, sent.stderr
    [found] = client.post("/tools/lookup", content=study).json()
    assert found["Type"] == "Study"
    forwarded = client.post("/modalities/hygeia/store", content=found["ID"])
    assert forwarded.status_code == 200, forwarded.text
    resource = imaging_study(dicom.client, study, instances=4)
    assert resource["numberOfSeries"] == 1
