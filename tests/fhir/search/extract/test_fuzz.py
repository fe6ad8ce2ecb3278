"""Arbitrary and mutated JSON never makes extraction raise."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hygeia.fhir.search.extract import extract_index
from hygeia.fhir.search.extract.extractor import _MAY_REPEAT
from hygeia.fhir.search.rows import IndexRows

from .test_extractor import OBSERVATION, PATIENT

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "Patient/1",
            "#x",
            "urn:uuid:1",
            "2020-01-01",
            "2020-13-45T99:00:00Z",
            "http://x/Patient/1|2",
        ]
    ),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "value",
                    "code",
                    "system",
                    "coding",
                    "reference",
                    "start",
                    "end",
                    "family",
                    "given",
                    "text",
                    "type",
                    "identifier",
                    "display",
                    "unit",
                    "currency",
                    "event",
                    "repeat",
                    "boundsPeriod",
                    "resourceType",
                    "id",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    [
        "id",
        "meta",
        "identifier",
        "name",
        "telecom",
        "gender",
        "birthDate",
        "address",
        "subject",
        "code",
        "category",
        "component",
        "valueQuantity",
        "valueCodeableConcept",
        "effectivePeriod",
        "effectiveTiming",
        "deceasedBoolean",
        "deceasedDateTime",
        "performer",
        "status",
        "text",
        "contained",
        "extension",
        "link",
        "managingOrganization",
        "generalPractitioner",
        "valueString",
        "valueDateTime",
        "issued",
        "hasMember",
    ]
)
TYPES = st.sampled_from(
    [
        "Patient",
        "Observation",
        "Encounter",
        "Condition",
        "Bundle",
        "MolecularSequence",
        "QuestionnaireResponse",
        "Invoice",
    ]
)


def check(resource: Any) -> None:
    rows = extract_index(resource)
    assert isinstance(rows, IndexRows)
    for name in IndexRows.__slots__:
        found = getattr(rows, name)
        distinct = set(found)  # every row is hashable
        if name in _MAY_REPEAT:  # de-duplicated where repeats occur in practice (a repeated
            assert len(found) == len(distinct)  # date row, say, is harmless to queries)


@settings(max_examples=300, deadline=None)
@given(TYPES, st.dictionaries(KEYS, JSON, max_size=8))
def test_arbitrary_elements(kind: str, elements: dict[str, Any]) -> None:
    check({"resourceType": kind, **elements})


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([PATIENT, OBSERVATION]), st.data())
def test_mutated_resources(base: dict[str, Any], data: st.DataObject) -> None:
    resource = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(1, 4))):
        node: Any = resource
        path = data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=4))
        for step in path[:-1]:
            if isinstance(node, dict) and node:
                node = node[sorted(node)[step % len(node)]]
            elif isinstance(node, list) and node:
                node = node[step % len(node)]
        if isinstance(node, dict) and node:
            node[sorted(node)[path[-1] % len(node)]] = data.draw(JSON)
        elif isinstance(node, list) and node:
            node[path[-1] % len(node)] = data.draw(JSON)
    check(resource)


@given(JSON)
def test_any_json_value(value: Any) -> None:
    check(value if isinstance(value, dict) else {"resourceType": "Patient", "name": value})
