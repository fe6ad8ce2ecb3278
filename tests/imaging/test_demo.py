"""``hygeia serve --demo`` with the imaging pillar: a CT study on a demo patient, and
lines that work as printed."""

from __future__ import annotations

import io
import shlex
import subprocess
from pathlib import Path

import httpx
from PIL import Image

from tests.conftest import ServerProcess


def test_the_demo_study_belongs_to_a_demo_patient_and_its_lines_work(tmp_path: Path) -> None:
    demo = ServerProcess(f"sqlite:///{tmp_path}/demo.db", "--demo", stdout=subprocess.PIPE)
    try:
        assert demo.client.get("Patient").json()["total"] == 2  # linked, none created
        root = f"http://127.0.0.1:{demo.port}"
        assert demo.process.stdout is not None
        printed: list[str] = []
        while len(printed) < 100 and "DICOM is off" not in (printed or [""])[-1]:
            printed.append(demo.process.stdout.readline().decode().strip())  # the introduction
        start = next(i for i, line in enumerate(printed) if line.startswith("Imaging pillar"))
        studies, qido, rendered = (shlex.split(line) for line in printed[start + 1:start + 4])
        patient = studies[-1].rsplit("patient=", 1)[1]
        bundle = httpx.get(studies[-1], timeout=10).json()
        study_uid = rendered[2].split("/studies/")[1].split("/")[0]
        ours = [entry["resource"] for entry in bundle["entry"]
                if f"urn:oid:{study_uid}" in
                [identifier["value"] for identifier in entry["resource"]["identifier"]]]
        assert [study["subject"]["reference"] for study in ours] == [f"Patient/{patient}"]
        assert ours[0]["numberOfInstances"] == 1
        answer = httpx.get(qido[2], headers={"Accept": "application/dicom+json"}, timeout=10)
        assert answer.status_code == 200 and len(answer.json()) == 1
        url = next(word for word in rendered if word.startswith(root))
        image = httpx.get(url, headers={"Accept": "image/png"}, timeout=10)
        assert image.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(image.content)).size == (128, 128)
    finally:
        demo.stop()
