"""The shipped package data is exactly what tools/generate_spec.py makes (never hand-edited)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[3]
SOURCE = REPO.parent / "shared" / "fhir-r4"
SHIPPED = REPO / "src" / "hygeia" / "fhir" / "spec" / "_generated"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_spec", REPO / "tools" / "generate_spec.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not SOURCE.is_dir(), reason="the official R4 definitions are not present")
def test_generated_files_are_up_to_date(tmp_path: Path) -> None:
    load_generator().main(["--source", str(SOURCE), "--out", str(tmp_path)])
    for made in sorted(tmp_path.glob("*.json.gz")):
        assert made.read_bytes() == (SHIPPED / made.name).read_bytes(), made.name


def test_document_reference_relationship_components_are_corrected() -> None:
    """R4 publishes the two component expressions swapped; the shipped data fixes them."""
    from hygeia.fhir.spec import search_parameters

    shipped = next(p for p in search_parameters()
                   if p["url"] == "http://hl7.org/fhir/SearchParameter/"
                                  "DocumentReference-relationship")
    assert [(c["code"], c["expression"]) for c in shipped["component"]] == [
        ("relatesto", "target"), ("relation", "code")]


def test_an_erratum_that_no_longer_applies_fails_loudly() -> None:
    generator = load_generator()
    url = "http://hl7.org/fhir/SearchParameter/DocumentReference-relationship"
    component = {"definition": "http://hl7.org/fhir/SearchParameter/DocumentReference-relatesto",
                 "expression": "somethingElse"}
    with pytest.raises(SystemExit, match="no longer applies"):
        generator._component_expression(url, component)
    assert generator._component_expression(url, {**component, "expression": "code"}) == "target"
