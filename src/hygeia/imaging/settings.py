"""The imaging pillar's settings and defaults, importable without pydicom or pynetdicom.

Every ``hygeia`` command builds the serve flags' help from these defaults, so
this module (and :mod:`.pillar`, :mod:`.commands`, :mod:`.tables`) stays free
of the heavy DICOM libraries: importing pydicom pulls in numpy through its
pixel handlers and costs every CLI process about 0.3 s
(tests/imaging/test_lazy_imports.py holds this).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_AE_TITLE = "HYGEIA"
DEFAULT_MAX_BODY_BYTES = 4 * 1024 ** 3  # the largest STOW-RS body, spooled to disk
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def is_uid(value: str) -> bool:
    """A valid DICOM UID: digits in dot-separated groups without leading zeros, <= 64."""
    return 0 < len(value) <= 64 and _UID.match(value) is not None


@dataclass(frozen=True, slots=True)
class ScpSettings:
    """The DIMSE listener's AE title and limits (see :mod:`.scp`)."""

    ae_title: str = DEFAULT_AE_TITLE
    max_associations: int = 20
    timeout: float = 60.0
    max_pdu: int = 64 * 1024


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """When a pending study's ImagingStudy is written (see :mod:`.linking`)."""

    quiet: float = 3.0
    max_wait: float = 30.0
    poll: float = 0.5
    default_system: str | None = None  # --dicom-patient-system
