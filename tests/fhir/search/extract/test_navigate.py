from __future__ import annotations

from hygeia.fhir.search.extract.navigate import build_getter
from hygeia.fhir.search.extract.paths import Equals, Key, Nth, ResourceIs, TargetIs


def test_keys_flatten_arrays_and_skip_non_objects() -> None:
    getter = build_getter([Key("name"), Key("given")])
    assert getter is not None
    assert getter([{"name": [{"given": ["a", "b"]}, "junk", {"given": "c"}, {}]}]) == [
        "a",
        "b",
        "c",
    ]
    assert build_getter([]) is None


def test_filters() -> None:
    telecom = [{"system": "phone", "value": "1"}, {"system": "email", "value": "2"}]
    phone = build_getter([Key("telecom"), Equals("system", "phone")])
    assert phone is not None and phone([{"telecom": telecom}]) == [telecom[0]]
    first = build_getter([Key("telecom"), Nth(0)])
    assert first is not None and first([{"telecom": telecom}]) == [telecom[0]]
    patients = build_getter([TargetIs("Patient")])
    assert patients is not None
    assert patients([{"reference": "Patient/1"}, {"reference": "Group/1"}, "x"]) == [
        {"reference": "Patient/1"}
    ]
    compositions = build_getter([ResourceIs("Composition")])
    assert compositions is not None
    assert compositions([{"resourceType": "Composition"}, {"resourceType": "Patient"}]) == [
        {"resourceType": "Composition"}
    ]
