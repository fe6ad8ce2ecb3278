from __future__ import annotations

import pytest

from hygeia.fhir.search.extract.normalisers import normaliser_for
from hygeia.fhir.search.extract.references import reference_resource
from hygeia.fhir.search.extract.tokens import token_codeable_concept


def test_table() -> None:
    assert normaliser_for("token", "CodeableConcept") is token_codeable_concept
    assert normaliser_for("reference", "Composition") is reference_resource


@pytest.mark.parametrize(
    ("param_type", "fhir_type"),
    [("date", "Age"), ("date", "Range"), ("token", "Quantity"), ("special", "string")],
)
def test_unindexed_combinations(param_type: str, fhir_type: str) -> None:
    assert normaliser_for(param_type, fhir_type) is None
