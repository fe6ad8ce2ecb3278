"""Imaging benchmark: C-STORE into Hygeia against Orthanc and a plain file copy, same run.

Generates ``--instances`` CT slices (new UIDs on pydicom's bundled ``CT_small.dcm``,
about 39 kB each, ``--per-study`` per study), then sends them with dcmtk's storescu
(``--sender``) over 1 and over ``--associations`` concurrent associations to:

* ``hygeia serve --dicom-port`` on each backend (``--backends``): every instance
  fsynced and indexed before its success status;
* Orthanc (the Debian package, default settings apart from its ports and folders,
  run from a generated configuration): the baseline of the issue's target (at
  least half of Orthanc's C-STORE rate);
* a plain copy of the same files into a folder with an fsync each (no network).

Prints instances/s and MB/s per target. The DICOMweb parts (STOW-RS, QIDO-RS p95,
WADO-RS MB/s) belong beside these once the DICOMweb mount exists; the index's
query speed over 100,000 instances is ``benchmarks/imaging_index.py``.

    python -m benchmarks.imaging [--instances 2000] [--associations 4]
        [--backends sqlite,postgresql] [--no-orthanc] [--sender dcmtk|pynetdicom]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE

from benchmarks.common import DEFAULT_PG, Server, drop_postgres_db, free_port, fresh_postgres_db

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"


def generate(folder: Path, count: int, per_study: int) -> list[Path]:
    dataset = pydicom.dcmread(str(get_testdata_file("CT_small.dcm", download=False)))
    folder.mkdir(parents=True)
    paths = []
    for number in range(count):
        if number % per_study == 0:
            study, series = generate_uid(), generate_uid()
            dataset.PatientID = f"BENCH{number // per_study:06d}"
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.InstanceNumber = number % per_study + 1
        path = folder / f"{number:06d}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def send_dcmtk(paths: list[Path], port: int, title: str, associations: int) -> float:
    """Seconds for ``associations`` dcmtk storescu processes to C-STORE ``paths``."""
    shares = [paths[i::associations] for i in range(associations)]
    began = time.perf_counter()
    senders = [subprocess.Popen(["storescu", "-aec", title, "-aet", "BENCH", "127.0.0.1",
                                 str(port), *map(str, share)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for share in shares]
    failures = [sender for sender in senders if sender.wait() != 0]
    took = time.perf_counter() - began
    if failures:
        error = failures[0].stderr.read() if failures[0].stderr is not None else b""
        raise RuntimeError(f"storescu failed: {error[:300]!r}")
    return took


def send(paths: list[Path], port: int, title: str, associations: int) -> float:
    """Seconds to C-STORE ``paths`` over ``associations`` concurrent associations."""
    datasets = [pydicom.dcmread(path) for path in paths]  # read before the clock starts
    shares = [datasets[i::associations] for i in range(associations)]
    errors: list[str] = []

    def one(share: list[pydicom.Dataset]) -> None:
        ae = AE(ae_title="BENCH")
        ae.add_requested_context(CT_IMAGE_STORAGE, EXPLICIT_LITTLE)
        assoc = ae.associate("127.0.0.1", port, ae_title=title)
        if not assoc.is_established:
            errors.append("association refused")
            return
        for dataset in share:
            status = assoc.send_c_store(dataset)
            if not status or status.Status != 0:
                errors.append(f"status {getattr(status, 'Status', None)}")
        assoc.release()

    threads = [threading.Thread(target=one, args=(share,)) for share in shares]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} C-STOREs failed: {errors[:3]}")
    return took


def copy_files(paths: list[Path], target: Path) -> float:
    target.mkdir()
    began = time.perf_counter()
    for path in paths:
        destination = target / path.name
        shutil.copyfile(path, destination)
        with open(destination, "rb+") as handle:
            os.fsync(handle.fileno())
    return time.perf_counter() - began


class Orthanc:
    def __init__(self, folder: Path) -> None:
        binary = shutil.which("Orthanc")
        if binary is None:
            raise RuntimeError("Orthanc is not installed (apt-get install orthanc)")
        self.http, self.port = free_port(), free_port()
        folder.mkdir()
        config = {"Name": "bench", "StorageDirectory": str(folder / "storage"),
                  "IndexDirectory": str(folder / "index"), "HttpPort": self.http,
                  "DicomPort": self.port, "DicomAet": "ORTHANC", "Plugins": [],
                  "RemoteAccessAllowed": False, "AuthenticationEnabled": False}
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.process = subprocess.Popen([binary, str(folder / "orthanc.json")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.http}/system").status_code == 200:
                    return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("Orthanc did not start") from None
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def report(name: str, count: int, size: int, seconds: float) -> None:
    print(f"  {name:<44} {count / seconds:8.0f} instances/s  "
          f"{size / seconds / 1e6:7.1f} MB/s  ({seconds:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--per-study", type=int, default=100)
    parser.add_argument("--associations", type=int, default=4)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL admin URL")
    parser.add_argument("--no-orthanc", action="store_true", help="skip the Orthanc baseline")
    parser.add_argument("--sender", choices=("dcmtk", "pynetdicom"), default="dcmtk",
                        help="dcmtk's storescu processes (default) or pynetdicom in this "
                             "process (whose sends wait on TCP acknowledgements: ~65 ms per "
                             "instance and association whatever the receiver)")
    args = parser.parse_args()
    sender = send_dcmtk if args.sender == "dcmtk" else send
    print("(measured on a machine shared with other work: numbers are under load)")
    with tempfile.TemporaryDirectory(prefix="hygeia-bench-imaging-") as scratch:
        root = Path(scratch)
        paths = generate(root / "source", args.instances, args.per_study)
        size = sum(path.stat().st_size for path in paths)
        print(f"{len(paths)} CT instances, {size / 1e6:.1f} MB, {args.per_study} per study")
        report("baseline: file copy + fsync", len(paths), size,
               copy_files(paths, root / "copy"))
        for associations in (1, args.associations):
            if not args.no_orthanc:
                orthanc = Orthanc(root / f"orthanc-{associations}")
                try:
                    report(f"baseline: Orthanc, {associations} association(s)", len(paths),
                           size, sender(paths, orthanc.port, "ORTHANC", associations))
                finally:
                    orthanc.stop()
            for backend in args.backends.split(","):
                name = f"hygeia_bench_dicom_{uuid.uuid4().hex[:8]}"
                url = f"sqlite:///{root}/{name}.db" if backend == "sqlite" else \
                    fresh_postgres_db(args.pg, name)
                port = free_port()
                server = Server(url, "--dicom-port", str(port), "--files",
                                str(root / f"{name}-files"))
                try:
                    report(f"Hygeia on {backend}, {associations} association(s)",
                           len(paths), size, sender(paths, port, "HYGEIA", associations))
                finally:
                    server.stop()
                    if backend != "sqlite":
                        drop_postgres_db(args.pg, name)


if __name__ == "__main__":
    main()
