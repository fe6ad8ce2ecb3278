"""Values the index used to skip: string-typed dates, ranges, comparators, SampledData."""

from __future__ import annotations

import math

import pytest

from hygeia.fhir.search.extract import extract_index
from hygeia.fhir.search.extract.ranges import sampled_bounds
from hygeia.fhir.search.rows import MAX_NUMBER, MIN_NUMBER

from .support import only

DAY = 86_400_000_000
JAN_2020 = 1_577_836_800_000_000  # 2020-01-01T00:00:00Z
UCUM = "http://unitsofmeasure.org"


def test_date_parameters_parse_string_elements_holding_a_date() -> None:
    valid = extract_index({"resourceType": "Immunization", "occurrenceString": "2020-01"})
    assert only(valid.dates, "date") == {("date", JAN_2020, JAN_2020 + 31 * DAY)}
    free_text = extract_index({"resourceType": "Immunization", "occurrenceString": "spring 2020"})
    assert only(free_text.dates, "date") == set()
    procedure = extract_index({"resourceType": "Procedure", "performedString": "2020-01-01"})
    assert only(procedure.dates, "date") == {("date", JAN_2020, JAN_2020 + DAY)}
    plan = extract_index({"resourceType": "CarePlan", "activity": [
        {"detail": {"status": "scheduled", "scheduledString": "2020-01-02"}},
        {"detail": {"status": "scheduled", "scheduledString": "every other day"}}]})
    assert only(plan.dates, "activity-date") == {
        ("activity-date", JAN_2020 + DAY, JAN_2020 + 2 * DAY)}


def test_procedure_performed_age_and_range_are_not_dates() -> None:
    """An age needs the patient's birth date, another resource: deliberately not indexed."""
    aged = extract_index({"resourceType": "Procedure",
                          "performedAge": {"value": 40, "code": "a"}})
    assert only(aged.dates, "date") == set()


def test_quantity_comparators_are_open_ranges() -> None:
    def value_rows(quantity: dict[str, object]) -> set[tuple[object, ...]]:
        rows = extract_index({"resourceType": "Observation", "valueQuantity": quantity})
        return {row[1:3] for row in only(rows.quantities, "value-quantity")}

    below = math.nextafter(5.0, -math.inf)
    assert value_rows({"value": 5, "comparator": "<"}) == {(MIN_NUMBER, below)}
    assert value_rows({"value": 5, "comparator": "<="}) == {(MIN_NUMBER, 5.0)}
    assert value_rows({"value": 5, "comparator": ">="}) == {(5.0, MAX_NUMBER)}
    assert value_rows({"value": 5, "comparator": ">"}) == {
        (math.nextafter(5.0, math.inf), MAX_NUMBER)}
    assert value_rows({"value": 5}) == {(5.0, 5.0)}
    assert value_rows({"value": 5, "comparator": "ad"}) == set()  # not an R4 comparator


def test_ranges_under_quantity_parameters() -> None:
    years = {"system": UCUM, "code": "a", "unit": "years"}
    rows = extract_index({"resourceType": "Condition",
                          "onsetRange": {"low": {"value": 30, **years},
                                         "high": {"value": 50, **years}},
                          "abatementRange": {"low": {"value": 60, **years}}})
    assert set(rows.quantities) == {
        ("onset-age", 30.0, 50.0, UCUM, "a", "years"),
        ("abatement-age", 60.0, MAX_NUMBER, UCUM, "a", "years"),
    }
    upper_only = extract_index({"resourceType": "Condition",
                                "onsetRange": {"high": {"value": 10, "code": "a"}}})
    assert upper_only.quantities == [("onset-age", MIN_NUMBER, 10.0, None, "a", None)]


def test_ranges_that_cannot_be_compared_are_skipped() -> None:
    for onset in ({"low": {"value": 5}, "high": {"value": 4}},  # low above high
                  {"low": {"value": 1, "code": "a"}, "high": {"value": 2, "code": "mo"}},
                  {"low": {"unit": "a"}}, {}):
        rows = extract_index({"resourceType": "Condition", "onsetRange": onset})
        assert rows.quantities == [], onset


def test_range_under_a_number_parameter() -> None:
    rows = extract_index({"resourceType": "RiskAssessment", "prediction": [
        {"probabilityDecimal": 0.3},
        {"probabilityRange": {"low": {"value": 0.2, "unit": "%"}, "high": {"value": 0.4}}}]})
    assert set(rows.numbers) == {("probability", 0.3, 0.3), ("probability", 0.2, 0.4)}


def test_range_in_a_composite_component() -> None:
    context = {"code": {"system": "http://terminology.hl7.org/CodeSystem/usage-context-type",
                        "code": "age"},
               "valueRange": {"low": {"value": 18, "code": "a"},
                              "high": {"value": 65, "code": "a"}}}
    rows = extract_index({"resourceType": "ValueSet", "status": "active",
                          "useContext": [context]})
    assert only(rows.quantities, "context-quantity") == {
        ("context-quantity", 18.0, 65.0, None, "a", None)}
    assert (("context-type-quantity", 0, 1, (18.0, 65.0, None, "a", None))
            in rows.composites)


def test_comparator_in_a_composite_component() -> None:
    rows = extract_index({"resourceType": "Observation", "component": [
        {"code": {"coding": [{"system": "http://loinc.org", "code": "x"}]},
         "valueQuantity": {"value": 5, "comparator": ">="}}]})
    assert (("component-code-value-quantity", 0, 1, (5.0, MAX_NUMBER, None, None, None))
            in rows.composites)


def test_sampled_data_is_the_envelope_of_its_samples() -> None:
    sampled = {"origin": {"value": 100, "system": UCUM, "code": "mm[Hg]", "unit": "mmHg"},
               "period": 10, "factor": 2, "dimensions": 1, "data": "1 5 -3 E"}
    rows = extract_index({"resourceType": "Observation", "valueSampledData": sampled})
    assert only(rows.quantities, "value-quantity") == {
        ("value-quantity", 94.0, 110.0, UCUM, "mm[Hg]", "mmHg")}


@pytest.mark.parametrize(("data", "limits", "bounds"), [
    ("1 2 3", {}, (1.0, 3.0)),
    ("2 U", {}, (2.0, MAX_NUMBER)),
    ("2 L", {}, (MIN_NUMBER, 2.0)),
    ("L", {"lowerLimit": 1}, (MIN_NUMBER, 1.0)),  # below the detection limit of 1
    ("U", {"upperLimit": 9}, (9.0, MAX_NUMBER)),
    ("L", {}, (MIN_NUMBER, MAX_NUMBER)),  # below a limit nobody stated
    ("E E", {}, None),
    ("x nan inf", {}, None),
    ("", {}, None),
])
def test_sampled_data_bounds(data: str, limits: dict[str, float],
                             bounds: tuple[float, float] | None) -> None:
    value = {"origin": {"value": 0}, "period": 1, "dimensions": 1, "data": data, **limits}
    assert sampled_bounds(value) == bounds


def test_sampled_data_without_origin_or_data_is_skipped() -> None:
    assert sampled_bounds({"period": 1, "dimensions": 1, "data": "1"}) is None
    assert sampled_bounds({"origin": {"value": 1}, "period": 1, "dimensions": 1}) is None
    assert sampled_bounds("1 2") is None


def test_group_characteristic_value_indexes_only_token_values() -> None:
    """Group-value, the component's definition, is a token over CodeableConcept|boolean:
    a Quantity, Range or Reference characteristic is not a token and gives no row."""
    code = {"coding": [{"system": "http://snomed.info/sct", "code": "397669002"}]}
    rows = extract_index({"resourceType": "Group", "type": "person", "actual": True,
                          "characteristic": [
                              {"code": code, "exclude": False,
                               "valueRange": {"low": {"value": 18}}},
                              {"code": code, "exclude": False, "valueBoolean": True}]})
    assert only(rows.composites, "characteristic-value") == {
        ("characteristic-value", 1, 0, ("http://snomed.info/sct", "397669002")),
        ("characteristic-value", 1, 1, (None, "true")),
    }
