"""The DICOM JSON model (PS3.18 F.2) of what DICOMweb answers.

Whole instances (WADO-RS metadata, QIDO ``includefield=all``) go through pydicom's
``Dataset.to_json_dict``; bulk data (pixel data, large binary elements) is left out
and named by a ``BulkDataURI`` instead. The STOW-RS answer is a small dataset
built here, element by element.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BULK_THRESHOLD = 1024  # binary elements at least this long become BulkDataURIs
# the VR of every attribute this module writes by tag
_VR = {"00081190": "UR", "00081150": "UI", "00081155": "UI", "00081197": "US",
       "00000902": "LO"}


def element(tag: str, value: Any) -> dict[str, Any]:
    """One attribute in DICOM JSON (``value`` None or empty: present without a value)."""
    vr = _VR.get(tag, "LO")
    item: dict[str, Any] = {"vr": vr}
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    values = [v for v in values if v is not None and v != ""]
    if not values:
        return item
    if vr == "PN":
        item["Value"] = [{"Alphabetic": str(v)} for v in values]
    elif vr in ("US", "UL", "SS", "SL"):
        item["Value"] = [int(v) for v in values]
    elif vr == "IS":
        item["Value"] = [int(v) if str(v).lstrip("-").isdigit() else v for v in values]
    else:
        item["Value"] = [str(v) for v in values]
    return item


def sequence(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}


def file_metadata(path: Path, bulk_uri: str) -> dict[str, Any]:
    """The DICOM JSON of a stored instance, without its file meta group and bulk data.

    Elements whose value is at least :data:`BULK_THRESHOLD` bytes of binary data
    (and the pixel data, always) are given as ``{"BulkDataURI": bulk_uri}``.
    """
    from pydicom import dcmread
    from pydicom.dataelem import DataElement

    dataset = dcmread(path, defer_size=BULK_THRESHOLD)

    def bulk(_: DataElement) -> str:
        return bulk_uri

    # an element whose value cannot be encoded is left out rather than failing the answer
    return dataset.to_json_dict(bulk_data_threshold=BULK_THRESHOLD,
                                bulk_data_element_handler=bulk, suppress_invalid_tags=True)


def failure_item(sop_class: str | None, sop_instance: str | None, reason: int,
                 comment: str) -> dict[str, Any]:
    """An item of FailedSOPSequence (0008,1198), with a human reason (Error Comment)."""
    item = {"00081150": element("00081150", sop_class),
            "00081155": element("00081155", sop_instance),
            "00081197": element("00081197", reason)}
    item["00000902"] = element("00000902", comment[:64])
    return item


def stored_item(sop_class: str, sop_instance: str, url: str) -> dict[str, Any]:
    """An item of ReferencedSOPSequence (0008,1199)."""
    return {"00081150": element("00081150", sop_class),
            "00081155": element("00081155", sop_instance),
            "00081190": element("00081190", url)}
