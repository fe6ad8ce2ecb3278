"""DICOMweb over a real ``hygeia serve``, driven by the dicomweb-client library.

One server per backend (SQLite, PostgreSQL); each test stores instances with new
UIDs (pydicom's test files, rewritten), so the tests do not see one another's.
"""

from __future__ import annotations

import io
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from requests.exceptions import HTTPError

from tests.api.smart import REDIRECT, BackendKey, backend_token, bearer, cli_json, user_token
from tests.conftest import BACKENDS, ServerProcess, _drop_database, backend_server

DICOM = "application/dicom"
PASSWORD = "correct horse battery"
PATIENT_SCOPES = "launch/patient openid fhirUser patient/ImagingStudy.rs patient/Patient.rs"


def sample(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    assert found is not None, name
    return Path(str(found))


def fresh(name: str, study: str | None = None, **changes: str) -> Dataset:
    """A pydicom test file with new UIDs (and the attributes ``changes`` sets)."""
    dataset = dcmread(sample(name))
    dataset.StudyInstanceUID = study or generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)
    return dataset


def part10(dataset: Dataset) -> bytes:
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def after_meta(data: bytes) -> bytes:
    """The bytes of a Part 10 file after its file meta group (0002)."""
    assert data[128:132] == b"DICM"
    group_length = int.from_bytes(data[140:144], "little")  # (0002,0000) UL, explicit VR
    return data[144 + group_length:]


def multipart(*files: bytes, boundary: str = "test-boundary") -> tuple[bytes, str]:
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
                    + data + b"\r\n" for data in files) + b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="{DICOM}"; boundary={boundary}'


def parts(response: httpx.Response) -> list[bytes]:
    """The parts of a multipart answer, split independently of the server's code."""
    boundary = re.search(r"boundary=\"?([^\";]+)", response.headers["content-type"])
    assert boundary is not None
    delimiter = b"\r\n--" + boundary.group(1).encode()
    pieces = (b"\r\n" + response.content).split(delimiter)[1:-1]
    return [piece.split(b"\r\n\r\n", 1)[1] for piece in pieces]


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    with backend_server(request, tmp_path_factory, "dicomweb", "--audit", "--max-body-mb",
                        "4", "--max-buffered-mb", "8", "--dicomweb-max-body-mb", "24"
                        ) as process:
        yield process


@pytest.fixture
def dicomweb(server: ServerProcess) -> DICOMwebClient:
    return DICOMwebClient(url=server.base.removesuffix("/fhir") + "/dicomweb")


def test_store_search_and_retrieve_byte_identical(server: ServerProcess,
                                                  dicomweb: DICOMwebClient) -> None:
    study = generate_uid()
    patient = f"P-{study[-8:]}"
    ct = fresh("CT_small.dcm", study, PatientID=patient, AccessionNumber=f"A{study[-6:]}",
               StudyDate="20240115")
    mr = fresh("MR_small_implicit.dcm", study, PatientID=patient, StudyDate="20240115")
    answer = dicomweb.store_instances([ct, mr], study_instance_uid=study)
    stored = {item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence}
    assert stored == {ct.SOPInstanceUID, mr.SOPInstanceUID}
    assert "FailedSOPSequence" not in answer
    assert answer.RetrieveURL.endswith(f"/dicomweb/studies/{study}")
    again = dicomweb.store_instances([ct])  # the same instance again: stored, once
    assert again.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ct.SOPInstanceUID

    [found] = dicomweb.search_for_studies(search_filters={"PatientID": patient})
    assert found["0020000D"]["Value"] == [study]
    assert found["00201208"]["Value"] == [2]
    assert sorted(found["00080061"]["Value"]) == ["CT", "MR"]
    assert found["00081190"]["Value"][0].endswith(f"/dicomweb/studies/{study}")
    series = dicomweb.search_for_series(study)
    assert {s["0020000E"]["Value"][0] for s in series} == {ct.SeriesInstanceUID,
                                                           mr.SeriesInstanceUID}
    instances = dicomweb.search_for_instances(study, ct.SeriesInstanceUID)
    assert [i["00080018"]["Value"][0] for i in instances] == [ct.SOPInstanceUID]

    # the dataset after the file meta group is byte for byte what was sent
    url = (f"{dicomweb.base_url}/studies/{study}/series/{mr.SeriesInstanceUID}"
           f"/instances/{mr.SOPInstanceUID}")
    whole = httpx.get(url, headers={"Accept": f'multipart/related; type="{DICOM}"; '
                                              "transfer-syntax=*"})
    assert whole.status_code == 200, whole.text
    [retrieved] = parts(whole)
    assert after_meta(retrieved) == after_meta(part10(mr))
    # through the library: the same instance as a dataset
    again = dicomweb.retrieve_instance(study, mr.SeriesInstanceUID, mr.SOPInstanceUID)
    assert again.SOPInstanceUID == mr.SOPInstanceUID
    assert (again.pixel_array == mr.pixel_array).all()
    study_parts = dicomweb.retrieve_study(study)
    assert {d.SOPInstanceUID for d in study_parts} == {ct.SOPInstanceUID, mr.SOPInstanceUID}


def test_default_transfer_syntax_is_explicit_little_endian(dicomweb: DICOMwebClient) -> None:
    mr = fresh("MR_small_implicit.dcm")
    dicomweb.store_instances([mr])
    url = (f"{dicomweb.base_url}/studies/{mr.StudyInstanceUID}/series/{mr.SeriesInstanceUID}"
           f"/instances/{mr.SOPInstanceUID}")
    response = httpx.get(url, headers={"Accept": f'multipart/related; type="{DICOM}"'})
    [data] = parts(response)
    converted = dcmread(io.BytesIO(data))
    assert converted.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert (converted.pixel_array == mr.pixel_array).all()
    refused = httpx.get(url, headers={"Accept": f'multipart/related; type="{DICOM}"; '
                                                "transfer-syntax=1.2.840.10008.1.2.4.50"})
    assert refused.status_code == 406
    assert "transfer-syntax=*" in refused.json()["issue"][0]["diagnostics"]


def test_queries_a_viewer_makes(dicomweb: DICOMwebClient) -> None:
    tag = generate_uid()[-10:]
    early = fresh("CT_small.dcm", PatientID=f"Q{tag}", PatientName=f"Smithers{tag}^Ann",
                  StudyDate="20200301", AccessionNumber=f"ACC{tag}")
    late = fresh("MR_small.dcm", PatientID=f"Q{tag}", PatientName=f"Smithers{tag}^Ann",
                 StudyDate="20230610")
    dicomweb.store_instances([early])
    dicomweb.store_instances([late])

    def studies(**filters: str) -> list[str]:
        return sorted(s["0020000D"]["Value"][0] for s in
                      dicomweb.search_for_studies(search_filters=filters))

    both = sorted([early.StudyInstanceUID, late.StudyInstanceUID])
    assert studies(PatientID=f"Q{tag}") == both
    assert studies(PatientID=f"Q{tag}", StudyDate="20200101-20201231") == [
        early.StudyInstanceUID]
    assert studies(PatientID=f"Q{tag}", StudyDate="20210101-") == [late.StudyInstanceUID]
    assert studies(PatientID=f"Q{tag}", ModalitiesInStudy="MR") == [late.StudyInstanceUID]
    assert studies(AccessionNumber=f"ACC{tag}") == [early.StudyInstanceUID]
    fuzzy = dicomweb.search_for_studies(fuzzymatching=True,
                                        search_filters={"PatientName": f"smithers{tag}"})
    assert sorted(s["0020000D"]["Value"][0] for s in fuzzy) == both
    assert studies(PatientName=f"SMITHERS{tag}*") == both
    page = dicomweb.search_for_studies(search_filters={"PatientID": f"Q{tag}"}, limit=1,
                                       offset=1)
    assert len(page) == 1 and page[0]["0020000D"]["Value"][0] == both[1]
    [with_field] = dicomweb.search_for_instances(
        early.StudyInstanceUID, fields=["PatientAge", "KVP"])
    assert with_field["00180060"]["Value"] == [float(early.KVP)]


def test_metadata_and_rendered(dicomweb: DICOMwebClient) -> None:
    ct = fresh("CT_small.dcm")
    dicomweb.store_instances([ct])
    metadata = dicomweb.retrieve_instance_metadata(
        ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID)
    assert metadata["00100020"]["Value"] == [ct.PatientID]
    assert "BulkDataURI" in metadata["7FE00010"]
    assert "00020010" not in metadata  # no file meta group in metadata
    study_metadata = dicomweb.retrieve_study_metadata(ct.StudyInstanceUID)
    assert [m["00080018"]["Value"][0] for m in study_metadata] == [ct.SOPInstanceUID]
    for media_type, format_ in (("image/png", "PNG"), ("image/jpeg", "JPEG")):
        picture = dicomweb.retrieve_instance_rendered(
            ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID,
            media_types=(media_type,))
        image = Image.open(io.BytesIO(picture))
        assert image.format == format_
        assert image.size == (ct.Columns, ct.Rows)


def test_malformed_instances_are_refused_with_a_reason_and_not_stored(
        server: ServerProcess, dicomweb: DICOMwebClient) -> None:
    good = fresh("CT_small.dcm")
    truncated = fresh("CT_small.dcm", good.StudyInstanceUID)
    body, content_type = multipart(part10(good), part10(truncated)[:20000], b"not dicom")
    response = httpx.post(f"{dicomweb.base_url}/studies", content=body,
                          headers={"Content-Type": content_type})
    assert response.status_code == 202, response.text
    answer = response.json()
    assert len(answer["00081199"]["Value"]) == 1
    failed = answer["00081198"]["Value"]
    assert len(failed) == 2
    assert all(item["00081197"]["Value"] == [0xC000] for item in failed)
    assert "truncated" in failed[0]["00000902"]["Value"][0]
    found = dicomweb.search_for_instances(good.StudyInstanceUID)
    assert [i["00080018"]["Value"][0] for i in found] == [good.SOPInstanceUID]

    only_bad, content_type = multipart(part10(truncated)[:20000])
    response = httpx.post(f"{dicomweb.base_url}/studies", content=only_bad,
                          headers={"Content-Type": content_type})
    assert response.status_code == 409
    elsewhere = fresh("CT_small.dcm")
    body, content_type = multipart(part10(elsewhere))
    response = httpx.post(f"{dicomweb.base_url}/studies/{good.StudyInstanceUID}", content=body,
                          headers={"Content-Type": content_type})
    assert response.status_code == 409
    assert "Study Instance UID" in response.json()["00081198"]["Value"][0]["00000902"][
        "Value"][0]
    assert response.headers["Warning"].startswith('299 hygeia "Part 1 was not stored')
    assert f"not {good.StudyInstanceUID} as the path says" in response.headers["Warning"]
    assert dicomweb.search_for_studies(
        search_filters={"StudyInstanceUID": elsewhere.StudyInstanceUID}) == []
    bare = fresh("CT_small.dcm")  # a part without headers is of the body's type
    response = httpx.post(f"{dicomweb.base_url}/studies", content=b"--x\r\n\r\n" +
                          part10(bare) + b"\r\n--x--\r\n", headers={
                              "Content-Type": f'multipart/related; type="{DICOM}"; boundary=x'})
    assert response.status_code == 200, response.text
    html = b"--x\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--x--\r\n"
    response = httpx.post(f"{dicomweb.base_url}/studies", content=html, headers={
        "Content-Type": f'multipart/related; type="{DICOM}"; boundary=x'})
    assert response.status_code == 409
    assert "text/html, not application/dicom" in response.headers["Warning"]
    for content, content_type, status in (
            (b"{}", "application/json", 415),
            (b"--x\r\nContent-Type: application/dicom\r\n\r\nabc", f"multipart/related; "
             f'type="{DICOM}"; boundary=x', 400),
            (b"", f'multipart/related; type="{DICOM}"; boundary=x', 400)):
        refused = httpx.post(f"{dicomweb.base_url}/studies", content=content,
                             headers={"Content-Type": content_type})
        assert refused.status_code == status, refused.text
        assert refused.json()["resourceType"] == "OperationOutcome"


def test_bodies_are_spooled_and_held_to_the_mounts_limit(dicomweb: DICOMwebClient) -> None:
    """The server holds at most 8 MB of bodies in memory (--max-buffered-mb 8, with FHIR
    bodies up to --max-body-mb 4); a 16 MB STOW-RS body is stored all the same (spooled
    to disk), and one over the DICOMweb limit (--dicomweb-max-body-mb 24) is refused
    with 413."""
    study = generate_uid()
    instances = [fresh("CT_small.dcm", study) for _ in range(2)]
    for dataset in instances:  # ~8 MB each: a large private element
        dataset.add_new(0x00091010, "OB", b"\x01" * (8 * 1024 * 1024))
    answer = dicomweb.store_instances(instances)
    assert len(answer.ReferencedSOPSequence) == 2
    [found] = dicomweb.search_for_studies(search_filters={"StudyInstanceUID": study})
    assert found["00201208"]["Value"] == [2]
    big = httpx.post(f"{dicomweb.base_url}/studies", content=b"x" * (25 * 1024 * 1024),
                     headers={"Content-Type": f'multipart/related; type="{DICOM}"; '
                                              "boundary=x"})
    assert big.status_code == 413
    assert "limit" in big.json()["issue"][0]["diagnostics"]


def peak_resident_mb(pid: int) -> float:
    """The largest resident size (VmHWM) any process of the tree under ``pid`` has had."""
    pids = [pid]
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        pids.append(int(child))
    peaks = []
    for one in pids:
        for line in Path(f"/proc/{one}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks)


def test_a_large_body_never_enters_the_servers_memory(tmp_path: Path) -> None:
    """96 MB of STOW-RS (two 48 MB instances) raises the serving process's peak resident
    size by far less than the body: it went to disk as it arrived, was scanned for
    boundaries a chunk at a time and copied into the archive by the kernel."""
    server = ServerProcess(f"sqlite:///{tmp_path}/big.db")
    try:
        base = server.base.removesuffix("/fhir") + "/dicomweb"
        assert httpx.get(f"{base}/studies").status_code == 200
        before = peak_resident_mb(server.process.pid)
        study = generate_uid()
        files = []
        for number in range(2):
            dataset = fresh("CT_small.dcm", study)
            dataset.add_new(0x00091010, "OB", bytes([number + 1]) * (48 * 1024 * 1024))
            files.append(part10(dataset))
        body, content_type = multipart(*files)
        del files
        stored = httpx.post(f"{base}/studies", content=body, timeout=300,
                            headers={"Content-Type": content_type})
        assert stored.status_code == 200, stored.text
        assert len(stored.json()["00081199"]["Value"]) == 2
        grown = peak_resident_mb(server.process.pid) - before
        assert grown < 32, f"the peak resident size grew by {grown:.0f} MB"
    finally:
        server.stop()


def test_a_chunked_body_is_stored_and_head_answers_without_one(
        dicomweb: DICOMwebClient) -> None:
    """A STOW-RS body sent chunked (no Content-Length, as a streaming uploader sends it)
    is spooled like any other; HEAD of a study answers its headers only."""
    ct = fresh("CT_small.dcm")
    body, content_type = multipart(part10(ct))

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start:start + 4096]

    response = httpx.post(f"{dicomweb.base_url}/studies", content=chunks(),
                          headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    assert response.request.headers.get("transfer-encoding") == "chunked"
    head = httpx.head(f"{dicomweb.base_url}/studies/{ct.StudyInstanceUID}")
    assert head.status_code == 200
    assert head.headers["content-type"].startswith("multipart/related")
    assert head.content == b""


def test_unknown_uids_and_paths(dicomweb: DICOMwebClient) -> None:
    with pytest.raises(HTTPError) as raised:
        dicomweb.retrieve_study(generate_uid())
    assert raised.value.response.status_code == 404
    assert dicomweb.search_for_studies(search_filters={"PatientID": "nobody-at-all"}) == []
    bad = httpx.get(f"{dicomweb.base_url}/studies", params={"StudyDate": "yesterday"})
    assert bad.status_code == 400
    assert bad.json()["issue"][0]["expression"] == ["StudyDate"]
    assert httpx.get(f"{dicomweb.base_url}/patients").status_code == 404
    xml = httpx.get(f"{dicomweb.base_url}/studies", headers={"Accept": "application/dicom+xml"})
    assert xml.status_code == 406
    assert "application/dicom+json" in xml.json()["issue"][0]["diagnostics"]
    assert httpx.delete(f"{dicomweb.base_url}/studies/1.2").status_code == 405


def test_every_request_is_audited(server: ServerProcess, dicomweb: DICOMwebClient) -> None:
    marker = f"AUDIT{generate_uid()[-10:]}"
    dicomweb.search_for_studies(search_filters={"PatientID": marker})
    events = server.client.get("AuditEvent", params={
        "subtype": "urn:hygeia:operation|dicomweb-qido", "_count": "1000"}).json()
    queries = [entity.get("description", "") for entry in events.get("entry", [])
               for entity in entry["resource"].get("entity", [])]
    assert any(marker in query for query in queries)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/auth.db"
        return
    url = request.getfixturevalue("postgres_url").rsplit("/", 1)[0] + \
        f"/hygeia_dicomweb_{uuid.uuid4().hex[:8]}"
    yield url
    _drop_database(url)


def linked(server: ServerProcess, study: str, headers: dict[str, str]) -> dict[str, Any]:
    """The ImagingStudy of ``study`` once the linker has written it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = server.client.get("ImagingStudy", headers=headers, params={
            "identifier": f"urn:dicom:uid|urn:oid:{study}"}).json()
        if found.get("entry"):
            resource: dict[str, Any] = found["entry"][0]["resource"]
            return resource
        time.sleep(0.2)
    raise AssertionError(f"no ImagingStudy for {study}")


def test_scopes_of_imaging_study_are_enforced(database: str, tmp_path: Path) -> None:
    """ImagingStudy.c stores, .rs reads; other scopes are refused; a patient's token
    reaches over DICOMweb exactly the studies its FHIR reads reach."""
    key = BackendKey(tmp_path)
    scopes = ("system/*.cruds", "system/AuditEvent.rs", "system/ImagingStudy.rs",
              "system/ImagingStudy.crs", "system/Patient.rs")
    clients = {scope: cli_json("auth", "client", "create", "--db", database, "--name", scope,
                               "--scopes", scope, "--jwks-file",
                               str(key.jwks_file))["client_id"] for scope in scopes}
    app = cli_json("auth", "client", "create", "--db", database, "--name", "Viewer",
                   "--scopes", PATIENT_SCOPES, "--redirect-uri", REDIRECT)["client_id"]
    server = ServerProcess(database, "--auth", "--secret-key-file",
                           str(tmp_path / "secret.key"), "--dicom-link-delay", "0.2")
    try:
        base = server.base.removesuffix("/fhir") + "/dicomweb"
        tokens = {scope: backend_token(server.base, clients[scope], key, scope
                                       ).json()["access_token"] for scope in scopes}
        admin = bearer(tokens["system/*.cruds"])
        ct = fresh("CT_small.dcm", PatientID="PID-A")
        body, content_type = multipart(part10(ct))
        assert httpx.get(f"{base}/studies").status_code == 401
        stow = {scope: httpx.post(f"{base}/studies", content=body,
                                  headers={"Content-Type": content_type, **bearer(token)})
                for scope, token in tokens.items() if scope in scopes[2:]}
        assert stow["system/ImagingStudy.rs"].status_code == 403
        assert "ImagingStudy.c" in stow["system/ImagingStudy.rs"].json()["issue"][0][
            "diagnostics"]
        assert stow["system/Patient.rs"].status_code == 403
        assert stow["system/ImagingStudy.crs"].status_code == 200, \
            stow["system/ImagingStudy.crs"].text
        reader = DICOMwebClient(url=base, headers=bearer(tokens["system/ImagingStudy.rs"]))
        [found] = reader.search_for_studies(
            search_filters={"StudyInstanceUID": ct.StudyInstanceUID})
        assert found["0020000D"]["Value"] == [ct.StudyInstanceUID]
        outsider = httpx.get(f"{base}/studies/{ct.StudyInstanceUID}/metadata",
                             headers=bearer(tokens["system/Patient.rs"]))
        assert outsider.status_code == 403

        # a patient's token: only the studies of that patient
        other = fresh("MR_small.dcm", PatientID="PID-B")
        DICOMwebClient(url=base, headers=admin).store_instances([other])
        subject = linked(server, ct.StudyInstanceUID, admin)["subject"]["reference"]
        linked(server, other.StudyInstanceUID, admin)
        cli_json("auth", "user", "create", "--db", database, "--username", "alice",
                 "--password-stdin", "--patient", subject.removeprefix("Patient/"),
                 stdin=PASSWORD + "\n")
        alice = user_token(server.base, app, "alice", PASSWORD, PATIENT_SCOPES)["access_token"]
        viewer = DICOMwebClient(url=base, headers=bearer(alice))
        seen = {s["0020000D"]["Value"][0] for s in viewer.search_for_studies()}
        assert seen == {ct.StudyInstanceUID}
        fhir = server.client.get("ImagingStudy", headers=bearer(alice)).json()
        assert [e["resource"]["subject"]["reference"] for e in fhir["entry"]] == [subject]
        assert viewer.retrieve_study_metadata(ct.StudyInstanceUID)
        hidden = httpx.get(f"{base}/studies/{other.StudyInstanceUID}/metadata",
                           headers=bearer(alice))
        assert hidden.status_code == 404
        assert viewer.search_for_studies(
            search_filters={"StudyInstanceUID": other.StudyInstanceUID}) == []
        assert viewer.search_for_instances(other.StudyInstanceUID) == []
        mine = httpx.post(f"{base}/studies", content=body,
                          headers={"Content-Type": content_type, **bearer(alice)})
        assert mine.status_code == 403
        auditor = bearer(tokens["system/AuditEvent.rs"])
        trail = server.client.get("AuditEvent", headers=auditor, params={
            "subtype": "urn:hygeia:operation|dicomweb-metadata", "outcome": "4"}).json()
        refusals = [entry["resource"] for entry in trail["entry"]]
        assert any(event["outcome"] == "4" and "no study" in event["outcomeDesc"] and
                   any(agent.get("who", {}).get("reference") == subject
                       for agent in event["agent"]) for event in refusals)
    finally:
        server.stop()
