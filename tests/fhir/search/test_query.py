from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hygeia.fhir.outcome import BadRequest
from hygeia.fhir.search.query import (
    ChainClause,
    HasClause,
    IdClause,
    ParameterClause,
    parse_criteria,
    parse_query,
)
from hygeia.fhir.search.values import (
    CompositeValue,
    OfTypeValue,
    QuantityValue,
    RangeValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    normalize,
    split_escaped,
)


def only_clause(resource_type: str, name: str, value: str) -> ParameterClause:
    clause = parse_query(resource_type, [(name, value)]).clauses[0]
    assert isinstance(clause, ParameterClause)
    return clause


def test_token_forms() -> None:
    clause = only_clause("Patient", "identifier", "s|c,|c2,s3|,c4")
    assert clause.values == (TokenValue("s", "c"), TokenValue("", "c2"), TokenValue("s3", None),
                             TokenValue(None, "c4"))


def test_escaping() -> None:
    assert split_escaped(r"a\,b,c\|d", ",") == ["a,b", "c|d"]
    assert only_clause("Patient", "identifier", r"urn:x|a\|b").values == (
        TokenValue("urn:x", "a|b"),)
    assert only_clause("Patient", "name", r"a\,b").values[0] == StringValue("a,b", "a,b")


def test_and_of_repeated_parameters() -> None:
    query = parse_query("Patient", [("_id", "a,b"), ("_id", "b")])
    assert query.clauses == [IdClause(("a", "b")), IdClause(("b",))]


def test_string_normalisation() -> None:
    assert normalize("  Ångström  MÜLLER ") == "angstrom muller"
    assert only_clause("Patient", "family", "Müller").values == (StringValue("Müller", "muller"),)


def test_number_precision_and_prefixes() -> None:
    (value,) = only_clause("RiskAssessment", "probability", "gt0.8").values
    assert isinstance(value, RangeValue) and value.prefix == "gt"
    assert (value.low, value.high) == pytest.approx((0.75, 0.85))
    (exact,) = only_clause("RiskAssessment", "probability", "100").values
    assert (exact.prefix, exact.low, exact.high) == ("eq", 99.5, 100.5)  # type: ignore[union-attr]


def test_date_prefix_and_range() -> None:
    (value,) = only_clause("Patient", "birthdate", "ge2020-02").values
    assert isinstance(value, RangeValue) and value.prefix == "ge"
    assert value.high - value.low == 29 * 86_400_000_000  # leap February


def test_quantity_forms() -> None:
    (full,) = only_clause("Observation", "value-quantity", "le5.4|http://unitsofmeasure.org|mg").values
    assert full == QuantityValue("le", 5.4, pytest.approx(5.35), pytest.approx(5.45),
                                 "http://unitsofmeasure.org", "mg")
    (bare,) = only_clause("Observation", "value-quantity", "5.4||mg").values
    assert isinstance(bare, QuantityValue) and (bare.system, bare.code) == (None, "mg")


def test_reference_forms() -> None:
    assert only_clause("Observation", "subject", "Patient/1").values == (
        ReferenceValue("Patient", "1", None),)
    assert only_clause("Observation", "subject", "1").values == (ReferenceValue(None, "1", None),)
    assert only_clause("Observation", "subject:Patient", "1").values == (
        ReferenceValue("Patient", "1", None),)
    absolute = only_clause("Observation", "subject", "http://x.org/fhir/Patient/1").values[0]
    assert absolute == ReferenceValue("Patient", "1", "http://x.org/fhir/Patient/1")


def test_composite_and_of_type() -> None:
    (value,) = only_clause("Observation", "code-value-quantity",
                           "http://loinc.org|8480-6$gt140").values
    assert isinstance(value, CompositeValue)
    assert value.parts[0] == TokenValue("http://loinc.org", "8480-6")
    assert isinstance(value.parts[1], QuantityValue) and value.parts[1].prefix == "gt"
    (typed,) = only_clause("Patient", "identifier:of-type", "http://t|MR|123").values
    assert typed == OfTypeValue("http://t", "MR", "123")


def test_chain_and_has() -> None:
    chain = parse_query("Observation", [("subject:Patient.name", "peter")]).clauses[0]
    assert isinstance(chain, ChainClause)
    assert chain.alternatives[0][0] == "Patient"
    nested = parse_query("Encounter", [("subject.organization.name", "x")]).clauses[0]
    assert isinstance(nested, ChainClause)
    has = parse_query("Patient", [("_has:Observation:patient:code", "1234")]).clauses[0]
    assert isinstance(has, HasClause) and has.source_type == "Observation"


def test_bad_modifiers_and_values_are_clear() -> None:
    with pytest.raises(BadRequest, match="not supported for date"):
        parse_query("Patient", [("birthdate:exact", "2020")])
    with pytest.raises(BadRequest, match="not a FHIR date"):
        parse_query("Patient", [("birthdate", "soon")])
    with pytest.raises(BadRequest, match="_has:Type:reference:parameter"):
        parse_query("Patient", [("_has:Observation:patient", "x")])


def test_unknown_parameters_ignored_or_strict() -> None:
    assert parse_query("Patient", [("shoe-size", "x")]).ignored
    with pytest.raises(BadRequest, match="not known"):
        parse_query("Patient", [("shoe-size", "x")], strict=True)


def test_result_parameters() -> None:
    query = parse_query("Observation", [("_sort", "-date,code"), ("_count", "5"),
                                        ("_include", "Observation:subject"),
                                        ("_revinclude:iterate", "Provenance:target"),
                                        ("_total", "none"), ("_elements", "code,subject")])
    options = query.options
    assert [(k.code, k.descending) for k in options.sort] == [("date", True), ("code", False)]
    assert options.count == 5 and options.total == "none"
    assert options.includes[0].parameter is not None and not options.includes[0].iterate
    assert options.revincludes[0].iterate
    assert options.elements == ("code", "subject")
    with pytest.raises(BadRequest, match="Cannot sort"):
        parse_query("Observation", [("_sort", "code-value-quantity")])


def test_criteria_must_name_a_parameter() -> None:
    with pytest.raises(BadRequest):
        parse_criteria("Patient", "")
    with pytest.raises(BadRequest):
        parse_criteria("Patient", "_count=1")


@given(st.text(max_size=20), st.sampled_from(
    ["identifier", "name", "birthdate", "general-practitioner", "_lastUpdated", "_id",
     "address-postalcode", "gender:not", "name:exact", "organization.name", "_has:X:y:z"]))
def test_parser_never_crashes(text: str, name: str) -> None:
    with contextlib.suppress(BadRequest):
        parse_query("Patient", [(name, text)])
