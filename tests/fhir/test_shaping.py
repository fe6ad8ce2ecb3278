"""_summary / _elements of a read: parsed once, applied to the stored JSON."""

from __future__ import annotations

import orjson
import pytest

from hygeia.fhir.outcome import BadRequest
from hygeia.fhir.shaping import read_subset, shape_stored

STORED = orjson.dumps({"resourceType": "Observation", "id": "1", "meta": {"versionId": "1"},
                       "status": "final", "code": {"text": "w"},
                       "valueQuantity": {"value": 1}, "note": [{"text": "n"}]})


def test_read_subset_takes_summary_and_elements_and_nothing_else() -> None:
    assert read_subset([("_summary", "true"), ("other", "x")]) == ("true", ())
    assert read_subset([("_elements", " code, value ,")]) == (None, ("code", "value"))
    assert read_subset([]) == (None, ())


@pytest.mark.parametrize("value", ["count", "TRUE", "", "x" * 10_000])
def test_read_subset_refuses_what_a_read_cannot_give(value: str) -> None:
    with pytest.raises(BadRequest) as raised:
        read_subset([("_summary", value)])
    issue = raised.value.issues[0]
    assert issue.expression == "_summary" and len(issue.diagnostics) < 200


def test_shape_stored_leaves_a_plain_read_alone() -> None:
    assert shape_stored(STORED, None, ()) is None
    assert shape_stored(STORED, "false", ()) is None


def test_shape_stored_keeps_the_asked_elements_and_tags_them() -> None:
    shaped = shape_stored(STORED, None, ("value",) * 5_000)
    assert shaped is not None
    assert set(shaped) == {"resourceType", "id", "meta", "valueQuantity"}
    assert shaped["meta"]["tag"][0]["code"] == "SUBSETTED"
