"""Fixtures of the imaging tests: a real ``hygeia serve --dicom-port`` per backend, an
archive on each backend, and DICOM files made from pydicom's bundled test files
(``get_testdata_file(..., download=False)``: never a download at test time)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from hygeia.imaging import tables
from hygeia.imaging.archive import Archive
from hygeia.store import Repository, open_repository, writing
from tests.conftest import BACKENDS, ServerProcess, backend_server, free_port

AE_TITLE = "HYGEIA"
LINK_DELAY = 0.5


def bundled(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    assert found is not None, f"{name} is not installed (pydicom / pydicom-data)"
    return Path(str(found))


def unique() -> str:
    return uuid.uuid4().hex[:10].upper()


def make_instance(folder: Path, source: str = "CT_small.dcm", *, study: str | None = None,
                  series: str | None = None, **attrs: Any) -> Path:
    """A copy of a bundled test file with new UIDs (or the given ones) and ``attrs`` set
    (DICOM keywords); its path."""
    dataset = pydicom.dcmread(bundled(source))
    dataset.StudyInstanceUID = study or generate_uid()
    dataset.SeriesInstanceUID = series or generate_uid()
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    for keyword, value in attrs.items():
        setattr(dataset, keyword, value)
    path = folder / f"{dataset.SOPInstanceUID}.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return path


def make_study(folder: Path, count: int, source: str = "CT_small.dcm", **attrs: Any
               ) -> tuple[str, list[Path]]:
    """``count`` instances of one new study and series; the study UID and the paths."""
    study, series = generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    paths = [make_instance(folder, source, study=study, series=series, InstanceNumber=n + 1,
                           **attrs) for n in range(count)]
    return study, paths


@dataclass
class DicomServer:
    process: ServerProcess
    port: int

    @property
    def client(self) -> httpx.Client:
        return self.process.client

    @property
    def db_url(self) -> str:
        return self.process.db_url

    @property
    def storage(self) -> Path:
        assert self.process.files is not None
        return Path(self.process.files) / "dicom"


@pytest.fixture(scope="package", params=BACKENDS)
def dicom(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[DicomServer]:
    port = free_port()
    with backend_server(request, tmp_path_factory, "dicom", "--dicom-port", str(port),
                        "--dicom-link-delay", str(LINK_DELAY),
                        "--dicom-timeout", "5") as process:
        yield DicomServer(process, port)


@pytest.fixture(params=BACKENDS)
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Archive]:
    """An empty archive on each backend (migrated, imaging tables emptied)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/archive.db"
    else:
        url = request.getfixturevalue("postgres_url")
    repository: Repository = open_repository(url, migrate=True)
    with writing(repository) as session:
        for table in tables.TABLES:
            session.execute(f"DELETE FROM {table}")
    try:
        yield Archive(repository, tmp_path / "dicom")
    finally:
        repository.close()


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A command (a real DICOM peer), its output captured."""
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def pynetdicom_app(app: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "pynetdicom", app, *args)


def hygeia(*args: str) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "hygeia.cli.main", *args)


def dcmtk(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"dcmtk's {tool} is not installed (scripts/test installs dcmtk)")
    return path


def wait_for(check: Any, timeout: float = 15.0, interval: float = 0.2) -> Any:
    """Poll ``check()`` until it returns something truthy; that value."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {check}")
        time.sleep(interval)


def imaging_study(client: httpx.Client, study_uid: str, *, instances: int | None = None
                  ) -> dict[str, Any]:
    """The ImagingStudy of ``study_uid`` once written (with ``instances`` when given)."""
    def found() -> dict[str, Any] | None:
        bundle = client.get("ImagingStudy", params={
            "identifier": f"urn:dicom:uid|urn:oid:{study_uid}"}).json()
        entries = bundle.get("entry") or []
        if len(entries) != 1:
            return None
        resource: dict[str, Any] = entries[0]["resource"]
        if instances is not None and resource.get("numberOfInstances") != instances:
            return None
        return resource
    result: dict[str, Any] = wait_for(found)
    return result
