from __future__ import annotations

import pytest

from hygeia.fhir.search.extract.expression import (
    Child,
    Index,
    OfType,
    Path,
    PresenceTest,
    Unsupported,
    WhereEquals,
    WhereResolve,
    parse_expression,
    root_name,
    split_union,
)


def test_union_of_paths_with_roots() -> None:
    assert parse_expression("Patient.name.given | Practitioner.name.given") == [
        Path("Patient", (Child("name"), Child("given"))),
        Path("Practitioner", (Child("name"), Child("given"))),
    ]


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("(Observation.value as Quantity)", (Child("value"), OfType("Quantity"))),
        ("Condition.onset.as(Age)", (Child("onset"), OfType("Age"))),
        ("Observation.value.ofType(Period)", (Child("value"), OfType("Period"))),
        (
            "(Observation.value as CodeableConcept).text",
            (Child("value"), OfType("CodeableConcept"), Child("text")),
        ),
        (
            "Observation.subject.where(resolve() is Patient)",
            (Child("subject"), WhereResolve("Patient")),
        ),
        (
            "Patient.telecom.where(system='phone')",
            (Child("telecom"), WhereEquals("system", "phone")),
        ),
        ("Bundle.entry[0].resource", (Child("entry"), Index(0), Child("resource"))),
        ("Patient.name.first()", (Child("name"), Index(0))),
        (
            "Patient.extension('http://x/e').value",
            (Child("extension"), WhereEquals("url", "http://x/e"), Child("value")),
        ),
    ],
)
def test_step_shapes(text: str, steps: tuple[object, ...]) -> None:
    (path,) = parse_expression(text)
    assert isinstance(path, Path)
    assert path.steps == steps


def test_system_type_names_map_to_fhir_primitives() -> None:
    (path,) = parse_expression("value.as(DateTime)")
    assert isinstance(path, Path)
    assert path.root is None and path.steps == (Child("value"), OfType("dateTime"))


def test_resource_variable_and_relative_paths() -> None:
    (path,) = parse_expression("%resource.referenceSeq.chromosome")
    assert path == Path(None, (Child("referenceSeq"), Child("chromosome")), from_resource=True)
    assert parse_expression("code") == [Path(None, (Child("code"),))]


def test_presence_test() -> None:
    parsed = parse_expression("Patient.deceased.exists() and Patient.deceased != false")
    assert parsed == [PresenceTest(Path("Patient", (Child("deceased"),)))]


@pytest.mark.parametrize(
    "text",
    [
        "Patient.name.select(given)",
        "Patient.name.where(given.exists())",
        "Patient.deceased.exists() and Patient.active != false",
        "%context.name",
        "Patient.name[",
        "Patient.birthDate > @2020",
    ],
)
def test_other_fhirpath_is_refused(text: str) -> None:
    with pytest.raises(Unsupported):
        parse_expression(text)


def test_split_union_respects_brackets_and_strings() -> None:
    assert split_union("A.b | (C.d as X) | E.f.where(g='h|i')") == [
        "A.b",
        "(C.d as X)",
        "E.f.where(g='h|i')",
    ]
    assert root_name("(Observation.value as Quantity)") == "Observation"
