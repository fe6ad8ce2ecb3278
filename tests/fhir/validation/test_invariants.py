"""ext-1 and the contained-resource rules."""

from __future__ import annotations

from typing import Any

import pytest

from hygeia.fhir.outcome import Issue
from hygeia.fhir.validation import validate
from hygeia.fhir.validation.contained import check_contained
from hygeia.fhir.validation.invariants import check_extension


def run(check: Any, obj: dict[str, Any]) -> list[Issue]:
    issues: list[Issue] = []
    check(obj, "Patient", issues)
    return issues


@pytest.mark.parametrize(
    ("extension", "problems"),
    [
        ({"url": "u", "valueString": "x"}, 0),
        (
            {
                "url": "u",
                "_valueString": {"id": "a", "extension": [{"url": "v", "valueCode": "x"}]},
            },
            0,
        ),
        ({"url": "u", "extension": [{"url": "v", "valueInteger": 1}]}, 0),
        ({"url": "u"}, 1),
        ({"url": "u", "valueString": "x", "extension": [{"url": "v", "valueCode": "x"}]}, 1),
    ],
)
def test_ext_1(extension: dict[str, Any], problems: int) -> None:
    issues = validate({"resourceType": "Patient", "extension": [extension]})
    assert [i.expression for i in issues] == ["Patient.extension[0]"] * problems
    assert all(i.diagnostics.startswith("ext-1") for i in issues)


def test_ext_1_is_told_which_choices_were_seen() -> None:
    issues: list[Issue] = []
    check_extension({"url": "u"}, ("value", "valueString"), "Patient", issues)
    assert issues == []
    check_extension({"url": "u"}, None, "Patient", issues)
    assert len(issues) == 1


def test_contained_rules() -> None:
    assert run(check_contained, {"resourceType": "Organization", "id": "o"}) == []
    issues = run(
        check_contained,
        {
            "resourceType": "Organization",
            "contained": [],
            "meta": {"versionId": "1", "lastUpdated": "2020-01-01T00:00:00Z", "security": []},
        },
    )
    assert [i.expression for i in issues] == [
        "Patient.id",
        "Patient.contained",
        "Patient.meta.versionId",
        "Patient.meta.lastUpdated",
        "Patient.meta.security",
    ]
