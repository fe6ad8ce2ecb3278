from __future__ import annotations

from hygeia.fhir.search.extract.values import (
    number_primitive,
    quantity_money,
    quantity_quantity,
    uri_canonical,
    uri_primitive,
)
from hygeia.fhir.search.rows import IndexRows


def test_numbers() -> None:
    rows = IndexRows()
    for value in (3, 2.5, True, "4", 10**400):
        number_primitive("n", value, rows)
    assert rows.numbers == [("n", 3.0, 3.0), ("n", 2.5, 2.5)]


def test_quantities_and_money() -> None:
    rows = IndexRows()
    quantity_quantity(
        "q",
        {"value": 5, "system": "http://unitsofmeasure.org", "code": "mg", "unit": "milligram"},
        rows,
    )
    quantity_quantity("q", {"unit": "mg"}, rows)
    quantity_money("m", {"value": 1.25, "currency": "EUR"}, rows)
    quantity_money("m", {"value": 2}, rows)
    assert rows.quantities == [
        ("q", 5.0, 5.0, "http://unitsofmeasure.org", "mg", "milligram"),
        ("m", 1.25, 1.25, "urn:iso:std:iso:4217", "EUR", None),
        ("m", 2.0, 2.0, None, None, None),
    ]


def test_uris_and_canonicals() -> None:
    rows = IndexRows()
    uri_primitive("u", "http://x.org/a", rows)
    uri_canonical("p", "http://x.org/P|1.0", rows)
    uri_canonical("p", "http://x.org/Q", rows)
    assert rows.uris == [
        ("u", "http://x.org/a"),
        ("p", "http://x.org/P|1.0"),
        ("p", "http://x.org/P"),
        ("p", "http://x.org/Q"),
    ]
