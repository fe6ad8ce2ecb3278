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


def test_component_columns_keep_order_and_cut_extra_values() -> None:
    assert component_columns(("a", 1, "b", 2, "c", "d", 3)) == ("a", "b", "c", 1, 2)
    assert component_columns((False, 0, 0.5)) == (False, None, None, 0, 0.5)
    assert component_columns(()) == (None,) * 5


def test_a_single_group_of_two_values_gives_the_rows_of_the_general_path() -> None:
    """Two rows of one group take a shortcut; a lone component of another parameter
    (never a row) sends the same group through the general path, for comparison."""
    lone = ("other", 0, 0, ("urn:x", "y"))
    cases = [
        [("code-value-quantity", 0, 0, (LOINC, "8480-6")),
         ("code-value-quantity", 0, 1, (150.0, 150.0, UCUM, "mm[Hg]", "mm[Hg]"))],
        [("code-value-concept", 3, 0, (LOINC, "1-8")), ("code-value-concept", 3, 1, (None, "x"))],
        [("a", 0, 0, (True,)), ("a", 0, 1, (1, 2))],
        # not one group of components 0 and 1: the general path decides
        [("a", 0, 1, ("x",)), ("a", 0, 0, ("y",))],
        [("a", 0, 0, ("x",)), ("a", 1, 1, ("y",))],
        [("a", 0, 0, ("x",)), ("b", 0, 1, ("y",))],
        [("a", 0, 0, ("x",)), ("a", 0, 0, ("y",))],
    ]
    for composites in cases:
        for pk in (None, 9):
            assert composite_rows(pk, "Observation", composites) == \
                composite_rows(pk, "Observation", [*composites, lone])
    assert len(composite_rows(9, "Observation", cases[0])[0]) == 2 + 3 * 5
