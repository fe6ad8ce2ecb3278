"""C-GET and C-MOVE send the stored file's dataset bytes unchanged when the peer takes
its stored transfer syntax, convert where pydicom can, and fail the sub-operation where
it cannot.

The instance is a bundled file pydicom would not write back byte for byte (it has
group length elements, which pydicom drops), stored over STOW-RS as sent; the peers
are pynetdicom as a library (so the wire bytes are seen before any file is written)
and dcmtk's movescu.
"""

from __future__ import annotations

import io
import random
import threading
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.dsutils import encode

from tests.conftest import free_port
from tests.imaging.conftest import AE_TITLE, DicomServer, bundled, dcmtk, hygeia, run, unique
from tests.imaging.test_scp import dataset_bytes, stored_path

CT = "1.2.840.10008.5.1.4.1.1.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
IMPLICIT_LITTLE = "1.2.840.10008.1.2"
DICOM = "application/dicom"


def renamed(name: str) -> tuple[bytes, Dataset]:
    """A bundled file's bytes with new Study, Series and SOP Instance UIDs of the same
    lengths (so every other byte, group lengths included, is the file's own)."""
    data = bundled(name).read_bytes()
    dataset = pydicom.dcmread(bundled(name))
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        old = str(getattr(dataset, keyword)).encode()
        prefix = old[:old.rindex(b".") + 1]
        digits = len(old) - len(prefix)
        assert digits >= 6, f"{keyword} of {name} leaves too few digits to vary"
        new = prefix + str(random.randrange(10 ** (digits - 1), 10 ** digits)).encode()
        data = data.replace(old, new)
    return data, pydicom.dcmread(io.BytesIO(data))


def stow(dicom: DicomServer, data: bytes) -> None:
    body = (b"--b\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n--b--\r\n")
    answer = dicom.client.post(f"http://127.0.0.1:{dicom.process.port}/dicomweb/studies",
                               content=body, headers={
        "Content-Type": f'multipart/related; type="{DICOM}"; boundary=b',
        "Accept": "application/dicom+json"})
    assert answer.status_code == 200, answer.text


def c_get(dicom: DicomServer, dataset: Dataset, sop_class: str, syntaxes: list[str]
          ) -> tuple[int, list[tuple[bytes, str]]]:
    """C-GET one instance, the receiver offering ``syntaxes``: the final status and the
    (dataset bytes, transfer syntax) of each C-STORE received, as on the wire."""
    received: list[tuple[bytes, str]] = []

    def store(event: Any) -> int:
        received.append((event.request.DataSet.getvalue(),
                         str(event.context.transfer_syntax)))
        return 0x0000

    ae = AE(ae_title="GETSCU")
    ae.add_requested_context(STUDY_ROOT_GET)
    ae.add_requested_context(sop_class, syntaxes)
    assoc = ae.associate("127.0.0.1", dicom.port, ae_title=AE_TITLE,
                         ext_neg=[build_role(sop_class, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, store)])
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = dataset.StudyInstanceUID
    query.SeriesInstanceUID = dataset.SeriesInstanceUID
    query.SOPInstanceUID = dataset.SOPInstanceUID
    statuses = [status.Status for status, _ in assoc.send_c_get(query, STUDY_ROOT_GET)
                if status is not None and "Status" in status]
    assoc.release()
    return statuses[-1], received


def test_the_file_is_one_pydicom_would_not_write_back_unchanged() -> None:
    """Else the byte checks below could pass with re-encoding too."""
    data, dataset = renamed("693_UNCR.dcm")
    assert encode(dataset, False, True) != data[len(data) - len(_after_meta(data)):]


def _after_meta(data: bytes) -> bytes:
    group_length = int.from_bytes(data[140:144], "little")
    return data[144 + group_length:]


def test_c_get_sends_the_stored_bytes_in_the_stored_syntax(dicom: DicomServer) -> None:
    data, dataset = renamed("693_UNCR.dcm")
    stow(dicom, data)
    stored = dataset_bytes(stored_path(dicom, str(dataset.SOPInstanceUID)))
    assert stored == _after_meta(data)
    status, received = c_get(dicom, dataset, CT, [IMPLICIT_LITTLE, EXPLICIT_LITTLE])
    assert status == 0x0000
    assert received == [(stored, EXPLICIT_LITTLE)]


def test_c_get_converts_to_an_uncompressed_syntax_the_peer_takes(dicom: DicomServer) -> None:
    data, dataset = renamed("693_UNCR.dcm")
    stow(dicom, data)
    status, received = c_get(dicom, dataset, CT, [IMPLICIT_LITTLE])
    assert status == 0x0000
    [(got, syntax)] = received
    assert syntax == IMPLICIT_LITTLE
    converted = read_dataset(io.BytesIO(got), is_implicit_VR=True, is_little_endian=True)
    assert converted.SOPInstanceUID == dataset.SOPInstanceUID
    assert converted.PixelData == dataset.PixelData


def test_c_get_of_a_compressed_file_to_an_uncompressed_peer_fails_the_sub_operation(
        dicom: DicomServer) -> None:
    data, dataset = renamed("explicit_VR-UN.dcm")  # JPEG 2000 Lossless CT
    stow(dicom, data)
    status, received = c_get(dicom, dataset, CT, [EXPLICIT_LITTLE, IMPLICIT_LITTLE])
    assert status == 0xA702  # every sub-operation failed
    assert received == []
    status, received = c_get(dicom, dataset, CT, [str(dataset.file_meta.TransferSyntaxUID)])
    assert status == 0x0000
    assert [got for got, _ in received] == [_after_meta(data)]


def test_c_move_sends_the_stored_bytes(dicom: DicomServer) -> None:
    data, dataset = renamed("693_UNCR.dcm")
    stow(dicom, data)
    received: list[bytes] = []
    arrived = threading.Event()

    def store(event: Any) -> int:
        received.append(event.request.DataSet.getvalue())
        arrived.set()
        return 0x0000

    title, port = f"M{unique()}"[:16], free_port()
    destination = AE(ae_title=title)
    destination.add_supported_context(CT, [EXPLICIT_LITTLE, IMPLICIT_LITTLE])
    server = destination.start_server(("127.0.0.1", port), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, store)])
    try:
        added = hygeia("imaging", "ae", "add", title, "127.0.0.1", str(port), "--db",
                       dicom.db_url)
        assert added.returncode == 0, added.stderr
        moved = run(dcmtk("movescu"), "-S", "-aec", AE_TITLE, "-aem", title,
                    "-k", "QueryRetrieveLevel=STUDY",
                    "-k", f"StudyInstanceUID={dataset.StudyInstanceUID}",
                    "127.0.0.1", str(dicom.port))
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert arrived.wait(15)
    finally:
        server.shutdown()
    assert received == [dataset_bytes(stored_path(dicom, str(dataset.SOPInstanceUID)))]
    assert received == [_after_meta(data)]
