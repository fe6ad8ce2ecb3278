"""Shared parameters: rows stored once, and exactly the union of the rows they stand for."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hygeia.fhir.search.extract import extract_index
from hygeia.fhir.search.extract.shared import (
    filtered_parameters,
    shared_parameters,
    stored_codes,
    stored_sources,
)
from hygeia.fhir.search.parameters import SearchParameter, default_registry
from hygeia.fhir.search.rows import IndexRows

from .support import stored_resources, synthea_files


def test_observation_combo_parameters_share_their_parts() -> None:
    shared = shared_parameters(None, "Observation")
    assert shared["combo-code"] == ("code", "component-code")
    assert shared["combo-code-value-quantity"] == ("code-value-quantity",
                                                   "component-code-value-quantity")
    assert shared["combo-value-quantity"] == ("component-value-quantity", "value-quantity")
    assert "code" not in shared and "subject" not in shared
    assert stored_codes(None, "Observation", "combo-code:text") == ("code:text",
                                                                   "component-code:text")
    assert stored_codes(None, "Observation", "status") == ("status",)


def test_identical_parameters_share_the_first_code() -> None:
    assert shared_parameters(None, "Patient")["phonetic"] == ("name",)


def _renamed(rows: IndexRows, code: str, parts: tuple[str, ...]) -> dict[str, set[Any]]:
    """Rows of ``parts`` relabelled as ``code`` (composite groups dropped: they renumber)."""
    out: dict[str, set[Any]] = {}
    for field in IndexRows.__slots__:
        found = set()
        for row in getattr(rows, field):
            if row[0] in parts:
                found.add((code, *row[1:]) if field != "composites" else (code, *row[2:]))
        out[field] = found
    return out


@pytest.mark.parametrize("path", synthea_files(), ids=lambda path: path.name[:3])
def test_shared_rows_are_the_union_of_the_stored_rows(path: Path) -> None:
    """On real data, what a shared parameter would have stored equals its parts' rows."""
    checked = 0
    for resource in stored_resources(path):
        kind = resource["resourceType"]
        shared = shared_parameters(None, kind)
        stored = extract_index(resource)
        complete = extract_index(resource, complete=True)
        for code, parts in shared.items():
            assert not any(row[0] == code for field in IndexRows.__slots__
                           for row in getattr(stored, field)), f"{kind}.{code} was stored"
            assert _renamed(complete, code, (code,)) == _renamed(stored, code, parts)
            checked += 1
    assert checked > 100


def test_a_custom_parameter_replacing_a_part_stops_the_sharing() -> None:
    registry = default_registry().copy()
    registry.add(SearchParameter(url="http://example.org/sp/code", code="code",
                                 base=("Observation",), type="token",
                                 expression="Observation.code.coding"))
    assert "combo-code" not in shared_parameters(registry, "Observation")
    assert "combo-value-quantity" in shared_parameters(registry, "Observation")
    observation = {"resourceType": "Observation",
                   "code": {"coding": [{"system": "http://loinc.org", "code": "1-8"}]}}
    rows = extract_index(observation, registry)
    assert ("combo-code", "http://loinc.org", "1-8") in rows.tokens


def test_reference_parameters_narrowed_to_a_type_read_the_wider_rows() -> None:
    assert filtered_parameters(None, "Observation")["patient"] == ("subject", "Patient")
    assert filtered_parameters(None, "Encounter")["practitioner"] == ("participant",
                                                                      "Practitioner")
    assert stored_sources(None, "Observation", "patient") == (("subject", "Patient"),)
    # logical references carry no target type: their token rows stay the parameter's own
    assert stored_sources(None, "Observation", "patient:identifier") == (
        ("patient:identifier", None),)


@pytest.mark.parametrize("path", synthea_files(), ids=lambda path: path.name[:3])
def test_narrowed_rows_are_the_wider_rows_of_that_type(path: Path) -> None:
    checked = 0
    for resource in stored_resources(path):
        kind = resource["resourceType"]
        stored = extract_index(resource)
        complete = extract_index(resource, complete=True)
        for code, (wider, target) in filtered_parameters(None, kind).items():
            assert not [row for row in stored.references if row[0] == code]
            expected = {row[1:] for row in complete.references if row[0] == code}
            assert expected == {row[1:] for row in stored.references
                                if row[0] == wider and row[1] == target}
            checked += 1
    assert checked > 50


def _store_view(complete: IndexRows, kind: str) -> dict[str, Counter[Any]]:
    """What the store keeps, derived from the complete rows by the rules of
    :mod:`hygeia.fhir.search.extract.shared`: no rows of shared parameters nor of
    ``_id``/``_lastUpdated``, and no reference rows of filtered parameters."""
    skipped = {*shared_parameters(None, kind), "_id", "_lastUpdated"}
    narrowed = set(filtered_parameters(None, kind))
    view = {}
    for name in IndexRows.__slots__:
        view[name] = Counter(
            row for row in getattr(complete, name)
            if row[0].split(":")[0] not in skipped
            and not (name == "references" and row[0] in narrowed))
    return view


@pytest.mark.parametrize("path", synthea_files(), ids=lambda path: path.name[:3])
def test_stored_rows_are_the_complete_rows_less_shared_and_narrowed(path: Path) -> None:
    """The store's plan (filtered parameters extracting their identifier tokens alone)
    gives exactly the rows of the complete plan that the store keeps."""
    for resource in stored_resources(path):
        stored = extract_index(resource)
        view = _store_view(extract_index(resource, complete=True), resource["resourceType"])
        assert {name: Counter(getattr(stored, name)) for name in IndexRows.__slots__} == view


def test_a_filtered_parameter_keeps_its_logical_reference_tokens() -> None:
    observation = {"resourceType": "Observation", "status": "final",
                   "code": {"text": "x"},
                   "subject": {"reference": "Patient/p1", "type": "Patient",
                               "identifier": {"system": "urn:mrn", "value": "42"}},
                   "performer": [{"identifier": {"system": "urn:npi", "value": "7"},
                                  "type": "Practitioner"}]}
    stored = extract_index(observation)
    assert ("patient:identifier", "urn:mrn", "42") in stored.tokens
    assert ("subject:identifier", "urn:mrn", "42") in stored.tokens
    assert [row for row in stored.references if row[0] == "patient"] == []
    assert ("subject", "Patient", "p1", None, None) in stored.references
    view = _store_view(extract_index(observation, complete=True), "Observation")
    assert {name: Counter(getattr(stored, name)) for name in IndexRows.__slots__} == view
