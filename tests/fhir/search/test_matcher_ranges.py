"""The in-memory matcher on number and quantity ranges: each prefix, by hand.

Stored values are closed ranges (a plain value is a point); the search value
brings its precision range for ``eq``/``ne`` and its exact value for the other
prefixes (see docs/guide/search.md, "Ranges and comparators").
"""

from __future__ import annotations

from typing import Any

import pytest

from hygeia.fhir.search.matcher import matches
from hygeia.fhir.search.query import parse_query

YEARS = {"system": "http://unitsofmeasure.org", "code": "a"}


def condition(**onset: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p"},
            **onset}


POINT = condition(onsetAge={"value": 40, **YEARS})
RANGE = condition(onsetRange={"low": {"value": 30, **YEARS}, "high": {"value": 50, **YEARS}})
FROM_60 = condition(onsetRange={"low": {"value": 60, **YEARS}})
UP_TO_10 = condition(onsetRange={"high": {"value": 10, **YEARS}})


def matched(resource: dict[str, Any], name: str, value: str) -> bool:
    return matches(parse_query(resource["resourceType"], [(name, value)]), resource)


@pytest.mark.parametrize(("value", "point", "range_", "from_60", "up_to_10"), [
    ("40", True, False, False, False),      # [39.5, 40.5) contains only the point
    ("4e1", True, False, False, False),     # [35, 45)
    ("ne40", False, True, True, True),
    ("gt45", False, True, True, False),     # the range reaches above 45
    ("ge50", False, True, True, False),
    ("lt35", False, True, False, True),
    ("le30", False, True, False, True),
    ("sa40", False, False, True, False),    # wholly above 40
    ("eb20", False, False, False, True),    # wholly below 20
    ("ap40", True, True, False, False),     # overlaps [36, 44]
    ("gt45|http://unitsofmeasure.org|a", False, True, True, False),
    ("gt45||mo", False, False, False, False),
])
def test_quantity_prefixes_against_points_and_ranges(
        value: str, point: bool, range_: bool, from_60: bool, up_to_10: bool) -> None:
    found = [matched(resource, "onset-age", value)
             for resource in (POINT, RANGE, FROM_60, UP_TO_10)]
    assert found == [point, range_, from_60, up_to_10]


def observation(**quantity: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "o", "status": "final",
            "code": {"text": "x"}, "valueQuantity": {"unit": "mg", **quantity}}


@pytest.mark.parametrize(("value", "expected"), [
    # stored:   <5     <=5    >=5    >5     5
    ("5",      (False, False, False, False, True)),
    ("ne5",    (True, True, True, True, False)),
    ("lt5",    (True, True, False, False, False)),
    ("le5",    (True, True, True, False, True)),
    ("ge5",    (False, True, True, True, True)),
    ("gt5",    (False, False, True, True, False)),
    ("gt4",    (True, True, True, True, True)),
    ("sa5",    (False, False, False, True, False)),
    ("eb5",    (True, False, False, False, False)),
    ("ap5",    (True, True, True, True, True)),
])
def test_comparators_are_open_ranges(value: str, expected: tuple[bool, ...]) -> None:
    stored = [observation(value=5, comparator=c) for c in ("<", "<=", ">=", ">")]
    stored.append(observation(value=5))
    assert tuple(matched(resource, "value-quantity", value) for resource in stored) == expected


def risk(**prediction: Any) -> dict[str, Any]:
    return {"resourceType": "RiskAssessment", "id": "r", "status": "final",
            "subject": {"reference": "Patient/p"}, "prediction": [prediction]}


@pytest.mark.parametrize(("value", "expected"), [
    ("0.3", True), ("0.30", True), ("0.25", False), ("3e-1", True),
    ("ge0.3", True), ("gt0.3", False), ("ge0.31", False), ("le0.3", True), ("lt0.3", False),
    ("sa0.29", True), ("eb0.31", True), ("ap0.32", True), ("ap0.35", False), ("ne0.3", False),
])
def test_plain_numbers_keep_their_exact_semantics(value: str, expected: bool) -> None:
    """A point compares as before ranges existed: ``eq``/``ne`` by the search value's
    precision, the other prefixes by its exact value."""
    assert matched(risk(probabilityDecimal=0.3), "probability", value) is expected


@pytest.mark.parametrize(("value", "expected"), [
    ("0.3", False), ("ap0.3", True), ("gt0.35", True), ("lt0.25", True), ("ge0.4", True),
    ("gt0.4", False), ("sa0.1", True), ("sa0.2", False), ("eb0.5", True), ("ne0.3", True),
])
def test_a_range_under_a_number_parameter(value: str, expected: bool) -> None:
    stored = risk(probabilityRange={"low": {"value": 0.2}, "high": {"value": 0.4}})
    assert matched(stored, "probability", value) is expected


def test_sampled_data_matches_as_the_envelope_of_its_samples() -> None:
    stored = {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"},
              "valueSampledData": {"origin": {"value": 100, "code": "mm[Hg]"}, "period": 10,
                                   "factor": 2, "dimensions": 1, "data": "1 5 -3 E"}}
    found = {value: matched(stored, "value-quantity", value)
             for value in ("gt105", "gt110", "lt95", "eq100", "ap100", "eb111", "100||mm[Hg]")}
    assert found == {"gt105": True, "gt110": False, "lt95": True, "eq100": False,
                     "ap100": True, "eb111": True, "100||mm[Hg]": False}


def test_composite_component_with_a_comparator() -> None:
    stored = {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"},
              "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "a"}]},
                             "valueQuantity": {"value": 5, "comparator": "<"}}]}
    found = {value: matched(stored, "component-code-value-quantity", f"http://loinc.org|a${value}")
             for value in ("lt5", "le4", "ge5", "5", "gt4")}
    assert found == {"lt5": True, "le4": True, "ge5": False, "5": False, "gt4": True}
