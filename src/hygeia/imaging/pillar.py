"""The imaging pillar as the CLI finds it: its serve flags, start-up, commands and demo.

``install`` builds one :class:`~hygeia.imaging.archive.Archive` per serving
process (:func:`archive_of` finds it again), the ImagingStudy linker and, with
``--dicom-port``, the DIMSE listener; the DICOMweb mount is added here too.

Every ``hygeia`` command imports this module to build its flags, so it imports
pydicom and pynetdicom (through the archive, listener and mount) only inside
``install`` and ``demo``; the defaults come from :mod:`.settings`.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hygeia.imaging import tables  # noqa: F401  (registers the "imaging" migration stream)
from hygeia.imaging.commands import ImagingCommand
from hygeia.imaging.settings import (
    DEFAULT_AE_TITLE,
    DEFAULT_MAX_BODY_BYTES,
    LinkSettings,
    ScpSettings,
)
from hygeia.server.extensions import CliCommand, Host, PillarHost

if TYPE_CHECKING:
    from hygeia.imaging.archive import Archive

_ARCHIVES: dict[int, Archive] = {}  # by id of the host: what install() built
_PORTS: dict[int, tuple[str, int]] = {}


def archive_of(host: Host) -> Archive:
    """The archive :meth:`ImagingPillar.install` built for ``host``."""
    return _ARCHIVES[id(host)]


def storage_root(host: Host, options: Mapping[str, Any]) -> Path:
    """``--dicom-storage``, else ``dicom`` in the server's files folder (``--files``)."""
    chosen = options.get("dicom_storage")
    return Path(chosen) if chosen else host.files.root / "dicom"


class ImagingPillar:
    """DICOM storage and query (DIMSE, DICOMweb) linked to ImagingStudy resources."""

    name = "imaging"

    def serve_options(self, group: argparse._ArgumentGroup) -> None:
        scp = ScpSettings()
        link = LinkSettings()
        group.add_argument("--dicom-port", type=int, default=None, metavar="N",
                           help="receive and serve DICOM (C-ECHO, C-STORE, C-FIND, C-GET, "
                                "C-MOVE) on this port, on --host (default: off; 104 and "
                                "11112 are DICOM's registered ports)")
        group.add_argument("--dicom-ae-title", default=DEFAULT_AE_TITLE, metavar="TITLE",
                           help=f"this server's AE title (default {DEFAULT_AE_TITLE}); "
                                "associations calling another title are rejected")
        group.add_argument("--dicom-storage", default=None, metavar="DIR",
                           help="folder for the DICOM files (default: dicom in the --files "
                                "folder)")
        group.add_argument("--dicom-patient-system", default=None, metavar="URI",
                           help="the Patient.identifier system of PatientIDs from senders "
                                "without one of their own (hygeia imaging ae add "
                                "--patient-system); default: match the value in any system")
        group.add_argument("--dicom-max-associations", type=int,
                           default=scp.max_associations, metavar="N",
                           help="DICOM associations open at once; more are rejected "
                                f"(default {scp.max_associations})")
        group.add_argument("--dicom-timeout", type=float, default=scp.timeout,
                           metavar="SECONDS",
                           help="an association silent this long is aborted (default "
                                f"{scp.timeout:g})")
        group.add_argument("--dicomweb-max-body-mb", type=float,
                           default=DEFAULT_MAX_BODY_BYTES / 2**20, metavar="MB",
                           help="the largest STOW-RS body /dicomweb accepts, spooled to disk "
                                f"as it arrives (default {DEFAULT_MAX_BODY_BYTES / 2**20:g}, "
                                "4 GiB)")
        group.add_argument("--dicom-link-delay", type=float, default=link.quiet,
                           metavar="SECONDS",
                           help="a study's ImagingStudy is written once no instance arrived "
                                "for this long, or when its sender finishes, and at most "
                                f"once per this long (default {link.quiet:g})")

    def install(self, host: PillarHost, options: Mapping[str, Any]) -> None:
        from hygeia.imaging.archive import Archive
        from hygeia.imaging.dicomweb.mount import DicomWebMount
        from hygeia.imaging.linking import DeletedStudies, Linker
        from hygeia.imaging.scp import DicomListener

        archive = Archive(host.repository, storage_root(host, options))
        archive.blobs.clear_incoming()
        _ARCHIVES[id(host)] = archive
        quiet = max(0.1, float(options.get("dicom_link_delay", LinkSettings().quiet)))
        link = LinkSettings(quiet=quiet, default_system=options.get("dicom_patient_system"))
        linker = Linker(host, archive, link)
        host.add_listener(linker)
        host.add_event_consumer(DeletedStudies(host, archive))
        port = options.get("dicom_port")
        if port is not None:
            if not 0 <= int(port) <= 65535:
                raise ValueError(f"--dicom-port {port} is out of range: give a port from 1 "
                                 "to 65535")
            title = str(options.get("dicom_ae_title") or DEFAULT_AE_TITLE)
            if not 0 < len(title) <= 16:
                raise ValueError(f"--dicom-ae-title {title!r} must be 1 to 16 characters")
            settings = ScpSettings(
                ae_title=title,
                max_associations=max(1, int(options.get("dicom_max_associations", 20))),
                timeout=max(1.0, float(options.get("dicom_timeout", 60.0))))
            _PORTS[id(host)] = (host.settings.http.host, int(port))
            host.add_listener(DicomListener(host, archive, linker, host.settings.http.host,
                                            int(port), settings))
        # the DICOMweb mount (hygeia.imaging.dicomweb) is added here
        megabytes = float(options.get("dicomweb_max_body_mb") or DEFAULT_MAX_BODY_BYTES / 2**20)
        if megabytes <= 0:
            raise ValueError(f"--dicomweb-max-body-mb {megabytes:g} must be above 0")
        host.add_mount(DicomWebMount(host, archive, int(megabytes * 2**20)))

    def commands(self) -> Sequence[CliCommand]:
        return [ImagingCommand()]

    def demo(self, host: PillarHost, fhir_base: str) -> list[str]:
        from hygeia.imaging.demo import demo_lines

        return demo_lines(host, archive_of(host), fhir_base, _PORTS.get(id(host)))


PILLAR = ImagingPillar()
