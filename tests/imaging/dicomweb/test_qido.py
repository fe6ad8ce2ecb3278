"""QIDO-RS parameters: checked, named by keyword or tag, turned into index filters."""

from __future__ import annotations

import pytest

from hygeia.fhir.outcome import BadRequest
from hygeia.imaging.dicomweb.qido import MAX_LIMIT, parse_qido


def test_keys_by_keyword_or_tag_become_filters() -> None:
    query = parse_qido([("PatientID", "P1"), ("00080061", "ct"), ("StudyDate", "20240101-"),
                        ("AccessionNumber", "A*"), ("limit", "5"), ("offset", "10"),
                        ("fuzzymatching", "true"), ("includefield", "StudyDescription,00101010")])
    assert query.filters == {"PatientID": "P1", "ModalitiesInStudy": "CT",
                             "StudyDate": "20240101-", "AccessionNumber": "A*"}
    assert (query.limit, query.offset, query.fuzzy) == (5, 10, True)
    assert query.include == ["00081030", "00101010"]


def test_includefield_all() -> None:
    assert parse_qido([("includefield", "all")]).include_all


@pytest.mark.parametrize(("key", "value", "words"), [
    ("StudyDate", "2024", "not a date"),
    ("StudyDate", "-", "at least one end"),
    ("StudyInstanceUID", "1.2.x", "not a UID"),
    ("limit", "0", "whole number"),
    ("limit", str(MAX_LIMIT + 1), "whole number"),
    ("offset", "-1", "whole number"),
    ("fuzzymatching", "maybe", "true or false"),
    ("includefield", "NoSuchKeyword", "neither a DICOM keyword"),
    ("PatientWeight", "70", "not a matching key"),
    ("PatientID", "x" * 300, "over 256"),
])
def test_bad_parameters_are_a_400_naming_them(key: str, value: str, words: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_qido([(key, value)])
    assert words in str(raised.value)
    assert key in str(raised.value)


def test_a_key_given_twice_is_refused() -> None:
    with pytest.raises(BadRequest, match="twice"):
        parse_qido([("PatientID", "a"), ("00100020", "b")])
