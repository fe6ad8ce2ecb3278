from __future__ import annotations

import pytest

from hygeia.fhir.search.extract.text import normalise_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Zoë", "zoe"),
        ("  MÉNARD\t de\nla  Croix ", "menard de la croix"),
        ("Straße", "strasse"),
        ("Ångström", "angstrom"),
        ("ﬁnal", "final"),  # NFKD folds compatibility ligatures
        ("", ""),
    ],
)
def test_normalise_text(text: str, expected: str) -> None:
    assert normalise_text(text) == expected
    assert normalise_text(text) == expected  # memoised result is the same
