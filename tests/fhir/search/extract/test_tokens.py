from __future__ import annotations

from hygeia.fhir.search.extract.tokens import (
    token_boolean,
    token_codeable_concept,
    token_coding,
    token_contact_point,
    token_identifier,
    token_primitive,
)
from hygeia.fhir.search.rows import IndexRows


def test_codeable_concept_codes_and_texts() -> None:
    rows = IndexRows()
    token_codeable_concept(
        "code",
        {
            "coding": [
                {"system": "s", "code": "c", "display": "Déjà Vu"},
                {"code": "c2"},
                {"display": "only"},
                "junk",
            ],
            "text": "  Some   TEXT ",
        },
        rows,
    )
    assert rows.tokens == [("code", "s", "c"), ("code", None, "c2")]
    assert rows.token_texts == [("code", "deja vu"), ("code", "only"), ("code", "some text")]


def test_identifier_of_type_and_text() -> None:
    rows = IndexRows()
    token_identifier(
        "identifier",
        {
            "system": "urn:mrn",
            "value": "42",
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"},
                    {"code": "LOCAL"},
                ],
                "text": "MRN",
            },
        },
        rows,
    )
    assert rows.tokens == [
        ("identifier", "urn:mrn", "42"),
        ("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203", "MR|42"),
        ("identifier:of-type", None, "LOCAL|42"),
    ]
    assert rows.token_texts == [("identifier", "mrn")]


def test_identifier_without_value_has_no_of_type_row() -> None:
    rows = IndexRows()
    token_identifier(
        "identifier", {"system": "urn:mrn", "type": {"coding": [{"code": "MR"}]}}, rows
    )
    assert rows.tokens == [("identifier", "urn:mrn", None)]


def test_primitives_booleans_contact_points_and_junk() -> None:
    rows = IndexRows()
    token_primitive("gender", "female", rows)
    token_primitive("gender", "", rows)
    token_boolean("active", False, rows)
    token_boolean("active", "false", rows)
    token_contact_point("phone", {"system": "phone", "value": "555"}, rows)
    token_coding("tag", {"system": ["not", "text"], "code": 3}, rows)
    assert rows.tokens == [
        ("gender", None, "female"),
        ("active", None, "false"),
        ("phone", None, "555"),
    ]
