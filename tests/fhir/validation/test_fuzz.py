"""The validator reports problems; it never raises, whatever it is given."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hygeia.fhir.outcome import Issue
from hygeia.fhir.validation import validate

FIXTURES = Path(__file__).parent.parent.parent / "fixtures"


def _sample_resources() -> list[dict[str, Any]]:
    path = sorted((FIXTURES / "synthea").glob("*.json.gz"))[0]
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        bundle = json.load(handle)
    seen: dict[str, dict[str, Any]] = {}
    for entry in bundle["entry"]:
        seen.setdefault(entry["resource"]["resourceType"], entry["resource"])
    return list(seen.values())


RESOURCES = _sample_resources()
KEYS = st.sampled_from(
    [
        "resourceType",
        "id",
        "extension",
        "url",
        "valueString",
        "reference",
        "value",
        "coding",
        "_given",
        "given",
        "contained",
        "text",
        "div",
        "status",
        "system",
        "code",
        "x",
    ]
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.sampled_from(["Patient", "Patient/1", "#x", "2020-02-30", ""]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=25,
)


def check(value: Any) -> None:
    issues = validate(value)
    assert isinstance(issues, list)
    assert all(isinstance(issue, Issue) and issue.diagnostics for issue in issues)


@given(JSON)
def test_arbitrary_json_never_crashes(value: Any) -> None:
    check(value)


@given(
    st.sampled_from(sorted(spec_name for spec_name in {r["resourceType"] for r in RESOURCES})),
    st.dictionaries(KEYS | st.text(max_size=8), JSON, max_size=4),
)
def test_resource_with_random_elements_never_crashes(name: str, elements: dict[str, Any]) -> None:
    check({"resourceType": name, **elements})


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_paths(value, (*prefix, index)))
    return found


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.data())
def test_mutated_valid_resources_never_crash(data: st.DataObject) -> None:
    resource = copy.deepcopy(data.draw(st.sampled_from(RESOURCES)))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [path for path in _paths(resource) if path]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = resource
        for step in path[:-1]:
            parent = parent[step]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(JSON)
    check(resource)
