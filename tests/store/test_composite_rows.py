"""Composite index rows: one per combination of a group's component values."""

from __future__ import annotations

from hygeia.store.hashing import param_hash
from hygeia.store.sql import component_columns, composite_rows

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def test_one_row_per_combination_of_component_values() -> None:
    rows = composite_rows(7, "Observation", [
        ("code-value-quantity", 0, 0, (LOINC, "8480-6")),
        ("code-value-quantity", 0, 0, ("urn:local", "SYS")),
        ("code-value-quantity", 0, 1, (150.0, 150.0, UCUM, "mm[Hg]", "mm[Hg]")),
        ("code-value-quantity", 1, 0, (LOINC, "8462-4")),  # a lone component: no row
    ])
    param = param_hash("Observation", "code-value-quantity")
    empty = (None,) * 5
    assert rows == [
        (7, param, LOINC, "8480-6", None, None, None,
         UCUM, "mm[Hg]", "mm[Hg]", 150.0, 150.0, *empty),
        (7, param, "urn:local", "SYS", None, None, None,
         UCUM, "mm[Hg]", "mm[Hg]", 150.0, 150.0, *empty),
    ]


def test_three_components_fill_every_slot_and_more_are_skipped() -> None:
    three = [("window", 0, 0, ("urn:seq", "NC_1")), ("window", 0, 1, (10.0, 10.0)),
             ("window", 0, 2, (20.0, 20.0))]
    (row,) = composite_rows(1, "MolecularSequence", three)
    assert row[2:] == ("urn:seq", "NC_1", None, None, None, None, None, None, 10.0, 10.0,
                       None, None, None, 20.0, 20.0)
    assert composite_rows(1, "MolecularSequence", [*three, ("window", 0, 3, (1.0, 1.0))]) == []


def test_component_columns_put_numbers_apart_from_texts() -> None:
    assert component_columns((1.5, 2.5, UCUM, "mg", None)) == (UCUM, "mg", None, 1.5, 2.5)
    assert component_columns((True,)) == (True, None, None, None, None)
