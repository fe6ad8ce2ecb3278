"""Values the index used to skip: string-typed dates, ranges, comparators, SampledData."""

from __future__ import annotations

from hygeia.fhir.search.extract import extract_index

from .support import only

DAY = 86_400_000_000
JAN_2020 = 1_577_836_800_000_000  # 2020-01-01T00:00:00Z


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
