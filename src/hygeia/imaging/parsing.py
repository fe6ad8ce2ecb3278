"""Reading a DICOM Part 10 file and refusing what the archive must not keep.

:func:`parse` reads the file once with pydicom (values over
:data:`DEFER_BYTES` are left on disk, so a 4 GiB STOW-RS part is not read into
memory) and returns a :class:`Parsed`: the UIDs, the transfer syntax and the
study, series and instance attributes the index keeps. It raises
:class:`Malformed` with a human reason, the same sentence a C-STORE failure
status and a STOW-RS 4xx carry, when the file:

- is not Part 10 (no ``DICM`` prefix or file meta group);
- names a transfer syntax pydicom does not know (or none);
- is truncated: an element's value runs past the end of the file, or an
  undefined-length element (a sequence, encapsulated pixel data) has no
  delimiter before the end;
- lacks SOP Class, SOP Instance, Study Instance or Series Instance UID, or has
  one that is not a valid UID (digits and dots, at most 64 characters) (the
  file meta group's copies are not checked: the dataset's are the ones indexed,
  and files whose meta group disagrees exist in the wild);
- is an image (it has ``Rows``) without its pixel data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import AllTransferSyntaxes

from hygeia.imaging.settings import is_uid

DEFER_BYTES = 1024 * 1024  # values longer stay on disk while the file is parsed
UNDEFINED_LENGTH = 0xFFFFFFFF
_KNOWN_SYNTAXES = frozenset(str(uid) for uid in AllTransferSyntaxes)

PATIENT_KEYWORDS = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
                    "PatientSex")
STUDY_KEYWORDS = (*PATIENT_KEYWORDS, "StudyInstanceUID", "StudyDate", "StudyTime",
                  "AccessionNumber", "StudyID", "StudyDescription", "ReferringPhysicianName")
SERIES_KEYWORDS = ("Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription",
                   "BodyPartExamined", "Laterality", "SeriesDate", "SeriesTime",
                   "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime")
INSTANCE_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns",
                     "BitsAllocated", "NumberOfFrames", "ContentDate", "ContentTime",
                     "ImageType")


class Malformed(ValueError):
    """The file cannot be archived; ``str(error)`` says why, in a sentence."""


@dataclass(frozen=True, slots=True)
class Parsed:
    """What the index needs of one instance (attribute groups as DICOM JSON)."""

    sop_class: str
    sop_instance: str
    study_uid: str
    series_uid: str
    transfer_syntax: str
    study: dict[str, Any]
    series: dict[str, Any]
    instance: dict[str, Any]

    def text(self, level: str, keyword: str) -> str:
        """An attribute's first value as text ('' when absent); names alphabetic."""
        return json_text(getattr(self, level), keyword)


def json_text(attrs: dict[str, Any], keyword: str) -> str:
    """The first value of ``keyword`` in DICOM JSON ``attrs`` as text ('' if absent)."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    element = attrs.get(f"{tag:08X}") if tag is not None else None
    values = (element or {}).get("Value") or []
    if not values:
        return ""
    first = values[0]
    if isinstance(first, dict):
        return str(first.get("Alphabetic", ""))
    return str(first)


def parse(path: Path) -> Parsed:
    """Read and check the Part 10 file at ``path`` (module docstring)."""
    size = path.stat().st_size
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = dcmread(path, defer_size=DEFER_BYTES)
            raw = list(dataset._dict.values())  # before any element is converted
        except InvalidDicomError as error:
            raise Malformed(f"This is not a DICOM Part 10 file: {error}") from error
        except (OSError, ValueError, KeyError, TypeError, EOFError) as error:
            raise Malformed(f"The DICOM file cannot be read: {error}") from error
    for warning in caught:
        if "End of file" in str(warning.message) or "delimiter" in str(warning.message):
            raise Malformed("The DICOM file is truncated: it ends inside an element.")
    _check_lengths(raw, size)
    syntax = str(getattr(dataset.file_meta, "TransferSyntaxUID", "") or "")
    if not syntax:
        raise Malformed("The file meta information has no Transfer Syntax UID (0002,0010).")
    if syntax not in _KNOWN_SYNTAXES:
        raise Malformed(f"The transfer syntax {syntax} is not one this archive knows.")
    uids = {keyword: _uid(dataset, keyword) for keyword in
            ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")}
    if "Rows" in dataset and not any(keyword in dataset for keyword in
                                     ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise Malformed("The image has Rows but no pixel data: the file is incomplete.")
    return Parsed(uids["SOPClassUID"], uids["SOPInstanceUID"], uids["StudyInstanceUID"],
                  uids["SeriesInstanceUID"], syntax, attributes(dataset, STUDY_KEYWORDS),
                  attributes(dataset, SERIES_KEYWORDS), attributes(dataset, INSTANCE_KEYWORDS))


def _check_lengths(raw: list[Any], size: int) -> None:
    for element in raw:
        if not isinstance(element, RawDataElement) or element.length == UNDEFINED_LENGTH:
            continue
        if element.value is None:  # deferred: still on disk
            if element.value_tell + element.length > size:
                raise Malformed(f"The DICOM file is truncated: element {element.tag} runs "
                                "past the end of the file.")
        elif len(element.value) != element.length:
            raise Malformed(f"The DICOM file is truncated: element {element.tag} is shorter "
                            "than its length says.")


def _uid(dataset: Dataset, keyword: str) -> str:
    try:
        value = str(dataset.get(keyword, "") or "").strip("\0 ")
    except (ValueError, TypeError) as error:
        raise Malformed(f"The {keyword} cannot be read: {error}") from error
    if not value:
        raise Malformed(f"The dataset has no {keyword}: every instance needs one.")
    if not is_uid(value):
        raise Malformed(f"The {keyword} {value!r} is not a valid DICOM UID.")
    return value


def attributes(dataset: Dataset, keywords: tuple[str, ...]) -> dict[str, Any]:
    """The ``keywords`` present in ``dataset`` as DICOM JSON (a value pydicom cannot
    decode is left out rather than refusing the instance)."""
    result: dict[str, Any] = {}
    for keyword in keywords:
        try:
            element = dataset.data_element(keyword)
            if element is None or element.is_empty:
                continue
            one = Dataset()
            one.add(element)
            result.update(one.to_json_dict())
        except (ValueError, TypeError, KeyError, AttributeError, LookupError):
            continue
    return orjson.loads(orjson.dumps(result))
