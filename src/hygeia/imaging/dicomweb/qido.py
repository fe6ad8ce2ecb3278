"""QIDO-RS query parameters (PS3.18 8.3.4) checked and turned into index filters.

Matching keys are given by keyword (``PatientID``) or tag (``00100020``) and matched
by the imaging index as DICOM does (PS3.4 C.2.2.2):

- ``PatientID``, ``AccessionNumber`` and the other text keys: exact, or wildcards
  (``*`` any run, ``?`` one character);
- UIDs: one, or a comma- or backslash-separated list;
- ``StudyDate``: a date ``20240131``, or a range ``20240101-20240131``, ``-20240131``,
  ``20240101-``;
- ``ModalitiesInStudy`` / ``Modality``: one modality or a list (``CT\\MR``);
- ``PatientName``: wildcards, case-insensitive; with ``fuzzymatching=true`` each word
  of the value matches the start of a word of the name (``joh do`` finds
  ``Doe^John``).

``limit`` (at most :data:`MAX_LIMIT`), ``offset`` and ``includefield`` (a keyword,
tag, or ``all``) shape the answer. Any other key is refused with a 400 naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hygeia.fhir.outcome import BadRequest

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000
MAX_VALUE_CHARS = 256

# keyword -> tag for the matching keys and the attributes answered by default
TAGS = {
    "PatientName": "00100010", "PatientID": "00100020", "PatientBirthDate": "00100030",
    "PatientSex": "00100040", "StudyInstanceUID": "0020000D", "StudyDate": "00080020",
    "StudyTime": "00080030", "AccessionNumber": "00080050", "ModalitiesInStudy": "00080061",
    "ReferringPhysicianName": "00080090", "StudyDescription": "00081030", "StudyID": "00200010",
    "NumberOfStudyRelatedSeries": "00201206", "NumberOfStudyRelatedInstances": "00201208",
    "SeriesInstanceUID": "0020000E", "Modality": "00080060", "SeriesNumber": "00200011",
    "SeriesDescription": "0008103E", "NumberOfSeriesRelatedInstances": "00201209",
    "BodyPartExamined": "00180015", "SOPClassUID": "00080016", "SOPInstanceUID": "00080018",
    "InstanceNumber": "00200013", "Rows": "00280010", "Columns": "00280011",
    "NumberOfFrames": "00280008", "RetrieveURL": "00081190",
    "TransferSyntaxUID": "00020010",
}
KEYWORDS = {tag: keyword for keyword, tag in TAGS.items()}
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DATE = re.compile(r"^\d{8}$")
_SHAPING = {"limit", "offset", "includefield", "fuzzymatching"}
# the keys the index matches on (hygeia.imaging index: STUDY_KEYS, SERIES_KEYS ...)
_MATCHING = {"PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyDate",
             "AccessionNumber", "StudyID", "StudyDescription", "ModalitiesInStudy",
             "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber",
             "SeriesDescription", "BodyPartExamined", "SOPInstanceUID", "SOPClassUID",
             "InstanceNumber"}


@dataclass(slots=True)
class QidoQuery:
    """What a QIDO-RS request asks for: ``filters`` are DICOM matching keys by keyword,
    with their values as sent (wildcards, ranges and UID lists kept for the index)."""

    filters: dict[str, str] = field(default_factory=dict)
    fuzzy: bool = False
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    include_all: bool = False
    include: list[str] = field(default_factory=list)  # extra tags to answer


def parse_qido(query: list[tuple[str, str]]) -> QidoQuery:
    """The QIDO-RS parameters of a request, or a 400 naming the parameter at fault."""
    result = QidoQuery()
    for raw_key, value in query:
        if len(value) > MAX_VALUE_CHARS:
            raise _bad(raw_key, f"its value is over {MAX_VALUE_CHARS} characters")
        key = raw_key if raw_key in _SHAPING else _keyword(raw_key)
        if key in _SHAPING:
            _shaping(result, key, value)
        elif key in _MATCHING:
            _matching(result, key, value)
        else:
            raise _bad(raw_key, "it is not a matching key this server supports ("
                       f"{', '.join(sorted(_MATCHING))})")
    return result


def _keyword(key: str) -> str:
    upper = key.upper()
    return KEYWORDS.get(upper, key) if re.fullmatch(r"[0-9A-F]{8}", upper) else key


def _shaping(result: QidoQuery, key: str, value: str) -> None:
    if key == "limit":
        result.limit = _integer(key, value, 1, MAX_LIMIT)
    elif key == "offset":
        result.offset = _integer(key, value, 0, MAX_OFFSET)
    elif key == "fuzzymatching":
        if value.lower() not in ("true", "false"):
            raise _bad(key, "it must be true or false")
        result.fuzzy = value.lower() == "true"
    else:
        for item in value.split(","):
            _include(result, item.strip())


def _include(result: QidoQuery, item: str) -> None:
    if item.lower() == "all":
        result.include_all = True
        return
    tag = TAGS.get(item) or (item.upper() if re.fullmatch(r"[0-9A-Fa-f]{8}", item) else None)
    if tag is None:
        tag = _dictionary_tag(item)
    if tag is None:
        raise _bad("includefield", f"{item[:64]!r} is neither a DICOM keyword nor a tag "
                   "(ggggeeee), nor 'all'")
    result.include.append(tag)


def _dictionary_tag(keyword: str) -> str | None:
    from pydicom.datadict import tag_for_keyword
    tag = tag_for_keyword(keyword)
    return None if tag is None else f"{tag:08X}"


def _matching(result: QidoQuery, key: str, value: str) -> None:
    value = value.strip()
    if key in ("StudyDate", "PatientBirthDate"):
        _date_range(key, value)
    elif key.endswith("UID"):
        for uid in (uid.strip() for uid in re.split(r"[,\\]", value) if uid.strip()):
            if not _UID.match(uid) or len(uid) > 64:
                raise _bad(key, f"{uid[:64]!r} is not a UID (digits and dots, at most 64)")
    elif key in ("Modality", "ModalitiesInStudy"):
        value = value.upper()
    if key in result.filters:
        raise _bad(key, "it is given twice")
    result.filters[key] = value


def _date_range(key: str, value: str) -> None:
    low, _, high = (piece.strip() for piece in value.partition("-"))
    for part in (low, high):
        if part and not _DATE.match(part):
            raise _bad(key, f"{value[:32]!r} is not a date (YYYYMMDD) or a range "
                       "(YYYYMMDD-YYYYMMDD, either end may be left open)")
    if not low and not high:
        raise _bad(key, "a range needs at least one end")


def _integer(key: str, value: str, low: int, high: int) -> int:
    if not value.isdigit() or not low <= int(value) <= high:
        raise _bad(key, f"it must be a whole number from {low} to {high}")
    return int(value)


def _bad(key: str, why: str) -> BadRequest:
    return BadRequest(f"The QIDO-RS parameter {key[:64]!r} is not valid: {why}.",
                      expression=key[:64])
