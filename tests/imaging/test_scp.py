"""The DIMSE listener of a real ``hygeia serve --dicom-port``, driven by real peers:
pynetdicom's applications and dcmtk's (echoscu, storescu, findscu, getscu, movescu,
storescp)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE

from hygeia.imaging.archive import Archive
from hygeia.store import open_repository
from tests.conftest import free_port
from tests.imaging.conftest import (
    AE_TITLE,
    DicomServer,
    bundled,
    dcmtk,
    hygeia,
    imaging_study,
    make_instance,
    make_study,
    pynetdicom_app,
    run,
    unique,
    wait_for,
)


def dataset_bytes(path: Path) -> bytes:
    """A Part 10 file's dataset: what follows the file meta group (0002)."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM"
    group_length = int.from_bytes(data[140:144], "little")  # (0002,0000) UL, explicit VR
    return data[144 + group_length:]


def stored_path(dicom: DicomServer, sop_uid: str) -> Path:
    """The file the server's archive keeps for an instance (read beside the server)."""
    with open_repository(dicom.db_url) as repository:
        archive = Archive(repository, dicom.storage)
        record = archive.instance(sop_uid)
        assert record is not None
        return archive.path(record)


def find_images(dicom: DicomServer, **keys: str) -> list[Dataset]:
    """C-FIND at IMAGE level (Study Root) with pynetdicom as a library."""
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.2.2.1")
    assoc = ae.associate("127.0.0.1", dicom.port, ae_title=AE_TITLE)
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.SOPInstanceUID = ""
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    found = [identifier for status, identifier in
             assoc.send_c_find(query, "1.2.840.10008.5.1.4.1.2.2.1")
             if status is not None and status.Status == 0xFF00 and identifier is not None]
    assoc.release()
    return found


def test_c_echo_from_pynetdicom_and_dcmtk(dicom: DicomServer) -> None:
    ours = pynetdicom_app("echoscu", "127.0.0.1", str(dicom.port), "-aec", AE_TITLE, "-v")
    assert ours.returncode == 0 and "Success" in ours.stderr, ours.stderr
    theirs = run(dcmtk("echoscu"), "-v", "-aec", AE_TITLE, "127.0.0.1", str(dicom.port))
    assert theirs.returncode == 0, theirs.stderr
    assert "Received Echo Response (Success)" in theirs.stdout + theirs.stderr


def test_an_association_calling_another_ae_title_is_rejected(dicom: DicomServer) -> None:
    result = run(dcmtk("echoscu"), "-aec", "NOTHYGEIA", "127.0.0.1", str(dicom.port))
    assert result.returncode != 0
    assert "Called AE Title Not Recognized" in result.stdout + result.stderr


def test_pynetdicom_storescu_study_becomes_an_imaging_study_and_is_found(
        dicom: DicomServer, tmp_path: Path) -> None:
    patient = f"P{unique()}"
    study, paths = make_study(tmp_path / "s", 3, PatientID=patient,
                              AccessionNumber=f"A{unique()}")
    result = pynetdicom_app("storescu", "127.0.0.1", str(dicom.port), str(tmp_path / "s"),
                            "-aec", AE_TITLE, "-aet", "CT1", "-r", "-v")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Status: 0x0000") >= 3
    resource = imaging_study(dicom.client, study, instances=3)
    assert resource["numberOfSeries"] == 1 and resource["modality"][0]["code"] == "CT"
    assert {i["uid"] for i in resource["series"][0]["instance"]} == \
        {str(pydicom.dcmread(p).SOPInstanceUID) for p in paths}
    assert len(list((dicom.storage / "objects").rglob("*"))) >= 3
    found = pynetdicom_app("findscu", "127.0.0.1", str(dicom.port), "-aec", AE_TITLE, "-S",
                           "-k", "QueryRetrieveLevel=STUDY", "-k", f"PatientID={patient}",
                           "-k", "StudyInstanceUID=", "-k", "NumberOfStudyRelatedInstances=",
                           "-v")
    assert found.returncode == 0, found.stderr
    assert study in found.stderr and "[3]" in found.stderr


def test_dcmtk_storescu_and_findscu_at_every_level(dicom: DicomServer, tmp_path: Path) -> None:
    patient = f"P{unique()}"
    study, paths = make_study(tmp_path / "s", 2, "MR_small.dcm", PatientID=patient,
                              PatientName=f"Dcmtk^{patient}", StudyDate="20230405")
    sent = run(dcmtk("storescu"), "-aec", AE_TITLE, "-aet", "MR1", "127.0.0.1",
               str(dicom.port), *map(str, paths))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    imaging_study(dicom.client, study, instances=2)
    series_uid = str(pydicom.dcmread(paths[0]).SeriesInstanceUID)
    queries = [
        ("-P", ["QueryRetrieveLevel=PATIENT", f"PatientID={patient}", "PatientName",
                "NumberOfPatientRelatedInstances"], [patient, "Dcmtk^"]),
        ("-P", ["QueryRetrieveLevel=STUDY", f"PatientID={patient}", "StudyInstanceUID",
                "StudyDate=20230101-20231231", "ModalitiesInStudy"], [study, "MR"]),
        ("-S", ["QueryRetrieveLevel=STUDY", f"PatientName=dcmtk^{patient[:4]}*",
                "StudyInstanceUID"], [study]),
        ("-S", ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={study}",
                "SeriesInstanceUID", "Modality", "NumberOfSeriesRelatedInstances"],
         [series_uid, "[2"]),
        ("-S", ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={study}",
                f"SeriesInstanceUID={series_uid}", "SOPInstanceUID", "InstanceNumber"],
         [str(pydicom.dcmread(p).SOPInstanceUID) for p in paths]),
    ]
    for model, keys, expected in queries:
        args = [a for key in keys for a in ("-k", key)]
        found = run(dcmtk("findscu"), "-v", model, "-aec", AE_TITLE, *args, "127.0.0.1",
                    str(dicom.port))
        output = found.stdout + found.stderr
        assert found.returncode == 0, output
        for text in expected:
            assert text in output, (keys, output)
    nothing = run(dcmtk("findscu"), "-v", "-S", "-aec", AE_TITLE, "-k",
                  "QueryRetrieveLevel=STUDY", "-k", f"PatientID={patient}", "-k",
                  "StudyDate=19000101-19001231", "127.0.0.1", str(dicom.port))
    assert "Find Response: 1 (Pending)" not in nothing.stdout + nothing.stderr


def test_compressed_transfer_syntaxes_are_received_as_sent(dicom: DicomServer,
                                                           tmp_path: Path) -> None:
    for name in ("JPEG2000.dcm", "MR_small_RLE.dcm", "JPGExtended.dcm"):
        path = make_instance(tmp_path, name, PatientID=f"P{unique()}")
        original = pydicom.dcmread(path)
        sent = pynetdicom_app("storescu", "127.0.0.1", str(dicom.port), str(path), "-aec",
                              AE_TITLE, "-cx", "-v")
        assert sent.returncode == 0 and "Status: 0x0000" in sent.stderr, sent.stderr
        [image] = find_images(dicom, StudyInstanceUID=str(original.StudyInstanceUID))
        assert image.SOPInstanceUID == original.SOPInstanceUID


def test_c_get_returns_the_instances_in_the_stored_syntax(
        dicom: DicomServer, tmp_path: Path) -> None:
    study, paths = make_study(tmp_path / "s", 2, PatientID=f"P{unique()}")
    sent = pynetdicom_app("storescu", "127.0.0.1", str(dicom.port), str(tmp_path / "s"),
                          "-r", "-aec", AE_TITLE, "-xe")  # explicit VR little endian
    assert sent.returncode == 0, sent.stderr
    by_uid = {str(pydicom.dcmread(p).SOPInstanceUID): p for p in paths}
    out = tmp_path / "got"
    out.mkdir()
    # pynetdicom's getscu prefers implicit VR: the same dataset, re-encoded
    got = pynetdicom_app("getscu", "127.0.0.1", str(dicom.port), "-aec", AE_TITLE, "-S",
                         "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                         "-od", str(out), "-v")
    assert got.returncode == 0, got.stderr
    received = sorted(out.iterdir())
    assert len(received) == 2, got.stderr
    for path in received:
        dataset = pydicom.dcmread(path)
        original = pydicom.dcmread(by_uid[str(dataset.SOPInstanceUID)])
        assert (dataset.PatientID, dataset.StudyInstanceUID, dataset.PixelData) == \
            (original.PatientID, original.StudyInstanceUID, original.PixelData)
    # dcmtk's getscu accepts the stored (explicit VR) syntax
    dcmtk_out = tmp_path / "dcmtk"
    dcmtk_out.mkdir()
    theirs = run(dcmtk("getscu"), "-aec", AE_TITLE, "-S", "-k", "QueryRetrieveLevel=SERIES",
                 "-k", f"StudyInstanceUID={study}", "-k",
                 f"SeriesInstanceUID={pydicom.dcmread(paths[0]).SeriesInstanceUID}",
                 "-od", str(dcmtk_out), "127.0.0.1", str(dicom.port))
    assert theirs.returncode == 0, theirs.stdout + theirs.stderr
    files = list(dcmtk_out.iterdir())
    assert len(files) == 2
    for path in files:
        uid = str(pydicom.dcmread(path).SOPInstanceUID)
        stored = stored_path(dicom, uid)
        assert dataset_bytes(stored) == dataset_bytes(by_uid[uid])  # kept as sent
        retrieved = pydicom.dcmread(path)  # as dcmtk wrote it (test_scp_retrieve: bytes)
        assert retrieved.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert retrieved == pydicom.dcmread(stored)


def test_c_move_sends_to_a_registered_ae_title_only(dicom: DicomServer, tmp_path: Path) -> None:
    study, paths = make_study(tmp_path / "s", 2, PatientID=f"P{unique()}")
    assert run(dcmtk("storescu"), "-aec", AE_TITLE, "127.0.0.1", str(dicom.port),
               *map(str, paths)).returncode == 0
    out = tmp_path / "moved"
    out.mkdir()
    port = free_port()
    title = f"D{unique()}"[:16]
    receiver = subprocess.Popen([dcmtk("storescp"), "-aet", title, "-od", str(out),
                                 str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        refused = run(dcmtk("movescu"), "-v", "-S", "-aec", AE_TITLE, "-aem", title, "-k",
                      "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                      "127.0.0.1", str(dicom.port))
        assert "Refused: MoveDestinationUnknown" in refused.stdout + refused.stderr
        added = hygeia("imaging", "ae", "add", title, "127.0.0.1", str(port), "--db",
                       dicom.db_url)
        assert added.returncode == 0, added.stderr
        moved = run(dcmtk("movescu"), "-v", "-S", "-aec", AE_TITLE, "-aem", title, "-k",
                    "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                    "127.0.0.1", str(dicom.port))
        assert moved.returncode == 0, moved.stdout + moved.stderr
        files = wait_for(lambda: len(list(out.iterdir())) == 2 and list(out.iterdir()))
        by_uid = {str(pydicom.dcmread(p).SOPInstanceUID): p for p in paths}
        for path in files:
            moved = pydicom.dcmread(path)
            original = pydicom.dcmread(by_uid[str(moved.SOPInstanceUID)])
            assert (moved.StudyInstanceUID, moved.PixelData) == \
                (original.StudyInstanceUID, original.PixelData)
    finally:
        receiver.terminate()
        receiver.wait(10)


def test_a_malformed_dataset_gets_a_failure_status_and_nothing_is_stored(
        dicom: DicomServer, tmp_path: Path) -> None:
    dataset = pydicom.dcmread(make_instance(tmp_path))
    del dataset.StudyInstanceUID
    ae = AE(ae_title="BROKEN")
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", dicom.port, ae_title=AE_TITLE)
    assert assoc.is_established
    status = assoc.send_c_store(dataset)
    assoc.release()
    assert status.Status == 0xC000
    assert "no StudyInstanceUID" in status.ErrorComment
    assert find_images(dicom, SOPInstanceUID=str(dataset.SOPInstanceUID)) == []


SENDER = """
import os, sys, time
from io import BytesIO
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.pdu import P_DATA_TF
dataset = dcmread(sys.argv[1])
ae = AE(ae_title="DROPPER")
ae.add_requested_context(dataset.SOPClassUID, "1.2.840.10008.1.2.1")
assoc = ae.associate("127.0.0.1", int(sys.argv[2]), ae_title="HYGEIA")
assert assoc.is_established
request = C_STORE()
request.MessageID = 1
request.AffectedSOPClassUID = dataset.SOPClassUID
request.AffectedSOPInstanceUID = dataset.SOPInstanceUID
request.Priority = 2
request.DataSet = BytesIO(encode(dataset, False, True))
message = C_STORE_RQ()
message.primitive_to_message(request)
fragments = list(message.encode_msg(assoc.accepted_contexts[0].context_id, 4096))
sock = assoc.dul.socket.socket
for fragment in fragments[: len(fragments) // 2]:  # the command and half the dataset
    pdu = P_DATA_TF()
    pdu.from_primitive(fragment)
    sock.sendall(pdu.encode())
print("half sent", flush=True)
time.sleep(0.5)
os._exit(0)  # the connection drops with the dataset half sent
"""


def test_the_scp_survives_a_peer_that_drops_the_association_mid_transfer(
        dicom: DicomServer, tmp_path: Path) -> None:
    path = make_instance(tmp_path)
    uid = str(pydicom.dcmread(path).SOPInstanceUID)
    sender = subprocess.Popen([sys.executable, "-c", SENDER, str(path), str(dicom.port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert sender.stdout is not None
    assert sender.stdout.readline().strip() == b"half sent", sender.stderr
    assert sender.wait(10) == 0
    echo = pynetdicom_app("echoscu", "127.0.0.1", str(dicom.port), "-aec", AE_TITLE)
    assert echo.returncode == 0, echo.stderr
    assert find_images(dicom, SOPInstanceUID=uid) == []
    again = make_instance(tmp_path, PatientID=f"P{unique()}")
    assert pynetdicom_app("storescu", "127.0.0.1", str(dicom.port), str(again), "-aec",
                          AE_TITLE).returncode == 0
    assert len(find_images(dicom, SOPInstanceUID=str(pydicom.dcmread(again).SOPInstanceUID))
               ) == 1


def test_bundled_storage_classes_are_accepted(dicom: DicomServer) -> None:
    for name in ("rtplan.dcm", "SC_rgb.dcm", "US1_J2KR.dcm", "waveform_ecg.dcm"):
        result = pynetdicom_app("storescu", "127.0.0.1", str(dicom.port), str(bundled(name)),
                                "-aec", AE_TITLE, "-cx", "-v")
        assert result.returncode == 0 and "Status: 0x0000" in result.stderr, \
            (name, result.stderr)
